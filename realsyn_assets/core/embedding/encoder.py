"""open_clip image/text encoder behind one small, lazy interface.

Why a wrapper: every embedding stage (dedup, retrieval, balance sampling, evaluation) needs the
same three things — L2-normalised float32 vectors, a stable identity string that changes exactly
when the weights change (recorded in the embeddings' metadata, used as the bootstrap asset's data
version when a configured encoder replaces it, and as a cache key for encoded prompts), and a
guarantee that nothing touches the network unless the user explicitly asked for a hub download.

Weight resolution, in order:
  1. ``checkpoint`` — a local file (open_clip format, a plain state dict, ``{"state_dict": ...}``,
     or the output of :func:`realsyn_assets.core.training.clip.train_clip`);
  2. ``pretrained`` — an open_clip pretrained tag (downloads from the hub; only on request);
  3. neither — random weights created once with a fixed seed by :func:`ensure_local_weights`,
     saved to ``weights_dir`` and always loaded from that file afterwards.

Model configs live in :mod:`.configs`, torch settings in :mod:`.runtime`, image reading in
:mod:`.images`. torch and open_clip are imported inside functions so importing this module stays
cheap.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realsyn_assets.core.embedding.configs import model_config, register_model_configs
from realsyn_assets.core.embedding.images import (
    ImagePathDataset,
    UnreadableImageError,
    collate_images,
    fetch_single_threaded,
    worker_init_single_thread,
)
from realsyn_assets.core.embedding.runtime import (
    ENCODER_DEVICE_FIELD,
    atomic_torch_save,
    autocast_context,
    quiet_transformers,
    resolve_device,
    torch_threads,
)

if TYPE_CHECKING:
    import torch

LOCAL_WEIGHTS_SEED = 0


def ensure_local_weights(model_name: str, path: Path | str, seed: int = LOCAL_WEIGHTS_SEED) -> Path:
    """Create random weights for ``model_name`` once (deterministic for ``seed``), then reuse them.

    Why a file and not "seed at load time": the file pins the weights even if a later torch
    release changes its initialisers, and every process (Dagster runs, workers) loads the same
    bytes. Creation is atomic; two racing processes write identical content.
    """
    path = Path(path)
    if path.is_file():
        return path
    register_model_configs(model_name)
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]):  # do not disturb the caller's RNG stream
        torch.manual_seed(seed)
        with quiet_transformers():
            model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    state = {
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "model_name": model_name,
        "seed": seed,
        "kind": "local-random",
    }
    atomic_torch_save(state, path)
    return path


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha1(path: str | Path) -> str:
    """sha1 of a file, cached on (path, size, mtime) because checkpoints can be gigabytes."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = _sha1_file(p)
    return _sha_cache[key]


@dataclass(frozen=True)
class EncoderSpec:
    model_name: str = "realsyn-tiny"
    pretrained: str | None = None  # open_clip pretrained tag (hub download; only when asked)
    checkpoint: str | None = None  # local checkpoint path (open_clip format or train.py output)
    device: str = "auto"  # auto -> cuda if available else cpu
    precision: str = "fp32"  # fp32 | fp16 | bf16 (autocast on cuda; fp32 on cpu)
    batch_size: int = 64
    num_workers: int = 0  # DataLoader workers for image decode (overlaps decode with compute)
    num_threads: int | None = None  # torch threads while encoding; None = torch default


@dataclass
class _Loaded:
    model: Any
    preprocess: Callable
    tokenizer: Callable
    device: str


class Encoder:
    """Lazy open_clip encoder: nothing heavy happens until the first encode / model access."""

    def __init__(self, spec: EncoderSpec, weights_dir: Path | str):
        if spec.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        autocast_context("cpu", spec.precision)  # validates the precision string early
        self.spec = spec
        self.weights_dir = Path(weights_dir)
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Encoder({self.source}, model={self.spec.model_name})"

    # ---- cheap descriptors (no model load) -------------------------------------------------
    @property
    def local_weights_path(self) -> Path:
        return self.weights_dir / f"{self.spec.model_name}-seed{LOCAL_WEIGHTS_SEED}.pt"

    @property
    def source(self) -> str:
        if self.spec.checkpoint:
            return f"checkpoint:{self.spec.checkpoint}"
        if self.spec.pretrained:
            return f"pretrained:{self.spec.pretrained}"
        return f"local-random:{self.local_weights_path}"

    @property
    def identity(self) -> str:
        """Stable name of model + weights; changes exactly when the embeddings would change.

        checkpoint -> sha1 of the file (not its path: moving a file keeps embeddings valid);
        pretrained -> the tag; local random -> seed + hash of the architecture config, which
        is what determines those weights (computed without creating the file, so asking is
        cheap). Precision and batch size are deliberately excluded: they change embeddings only
        at rounding level.
        """
        name = self.spec.model_name
        if self.spec.checkpoint:
            ckpt = Path(self.spec.checkpoint)
            if not ckpt.is_file():
                raise FileNotFoundError(f"encoder checkpoint not found: {ckpt}")
            return f"{name}|checkpoint|sha1:{file_sha1(ckpt)[:16]}"
        if self.spec.pretrained:
            return f"{name}|pretrained:{self.spec.pretrained}"
        cfg = model_config(name)
        cfg_hash = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        return f"{name}|local-random|seed{LOCAL_WEIGHTS_SEED}|cfg:{cfg_hash}"

    @property
    def dim(self) -> int:
        try:
            cfg = model_config(self.spec.model_name)
        except Exception:  # hf-hub:/local-dir: names need a download or a dir; ask the model
            cfg = None
        if cfg and "embed_dim" in cfg:
            return int(cfg["embed_dim"])
        return int(self.encode_texts([""]).shape[1])

    @property
    def device(self) -> str:
        return self._load().device

    # ---- loading --------------------------------------------------------------------------
    def _weights_file(self) -> Path | None:
        if self.spec.checkpoint:
            ckpt = Path(self.spec.checkpoint)
            if not ckpt.is_file():
                raise FileNotFoundError(f"encoder checkpoint not found: {ckpt}")
            return ckpt
        if self.spec.pretrained:
            return None
        return ensure_local_weights(self.spec.model_name, self.local_weights_path)

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._create()
        return self._loaded

    def _create(self) -> _Loaded:
        register_model_configs(self.spec.model_name)
        import open_clip

        device = resolve_device(self.spec.device, ENCODER_DEVICE_FIELD)
        name = self.spec.model_name
        weights = self._weights_file()
        pretrained = str(weights) if weights is not None else self.spec.pretrained
        try:
            with quiet_transformers():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained, device=device
                )
        except RuntimeError as exc:
            if weights is None:
                raise
            hint = (
                "delete it to re-create random weights for the current config"
                if not self.spec.checkpoint
                else "checkpoint saved for a different model?"
            )
            raise RuntimeError(
                f"could not load weights {weights} into model {name!r} ({hint}): {exc}"
            ) from exc
        model.eval()
        tokenizer = open_clip.get_tokenizer(name)
        return _Loaded(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device)

    def model_and_transforms(self) -> tuple[torch.nn.Module, Callable, Callable]:
        """(model, preprocess_val, tokenizer) for reuse in training / evaluation code."""
        loaded = self._load()
        return loaded.model, loaded.preprocess, loaded.tokenizer

    # ---- encoding -------------------------------------------------------------------------
    @staticmethod
    def _batches(n_batches: int, it: Iterable, progress: bool, desc: str) -> Iterable:
        from tqdm.auto import tqdm

        return tqdm(it, total=n_batches, desc=desc, unit="batch", disable=not progress)

    def encode_images(self, paths: Sequence[str | Path], progress: bool = False) -> np.ndarray:
        """float32 (N, dim), L2-normalised. Raises :class:`UnreadableImageError` naming the file.

        Callers pass only validated images; a bad file here is a bug upstream, so we fail loudly
        rather than return a zero row that would silently poison nearest-neighbour search.
        """
        import torch
        from torch.utils.data import DataLoader

        loaded = self._load()
        n = len(paths)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        dataset = ImagePathDataset(paths, loaded.preprocess)
        workers = max(0, int(self.spec.num_workers))
        pinned = loaded.device.startswith("cuda")  # page-locked batches copy asynchronously
        loader = DataLoader(
            dataset,
            batch_size=self.spec.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate_images,
            worker_init_fn=worker_init_single_thread if workers else None,
            pin_memory=pinned,
        )
        chunks: list[np.ndarray] = []
        n_batches = (n + self.spec.batch_size - 1) // self.spec.batch_size
        # Workers already decode on one thread each (worker_init_single_thread); in-process
        # decoding must be told to, or it runs on the model's thread pool.
        batches = loader if workers else fetch_single_threaded(loader)
        with (
            torch_threads(self.spec.num_threads),
            torch.inference_mode(),
            autocast_context(loaded.device, self.spec.precision),
        ):
            for images, errors in self._batches(n_batches, batches, progress, "images"):
                if errors:
                    i, reason = errors[0]
                    raise UnreadableImageError(dataset.paths[i], reason)
                feats = loaded.model.encode_image(images.to(loaded.device, non_blocking=pinned))
                chunks.append(_normalise(feats))
        return np.concatenate(chunks, axis=0)

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 (N, dim), L2-normalised; the tokenizer truncates at the context length."""
        import torch

        loaded = self._load()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = self.spec.batch_size
        starts = range(0, len(texts), bs)
        chunks: list[np.ndarray] = []
        with (
            torch_threads(self.spec.num_threads),
            torch.inference_mode(),
            autocast_context(loaded.device, self.spec.precision),
        ):
            for s in self._batches(len(starts), starts, progress, "texts"):
                tokens = loaded.tokenizer(texts[s : s + bs]).to(loaded.device)
                chunks.append(_normalise(encode_text_trimmed(loaded.model, tokens)))
        return np.concatenate(chunks, axis=0)


def is_pretrained_text_tower(model: Any) -> bool:
    """True for open_clip's Hugging Face text tower (transformer + pooler + projection)."""
    text = getattr(model, "text", None)
    return all(hasattr(text, name) for name in ("transformer", "pooler", "proj", "config"))


def pretrained_tower_pooled(text: Any, tokens: torch.Tensor) -> torch.Tensor:
    """A Hugging Face text tower's pooled features (before its projection), padding cut.

    The tower masks padding, so dropping the columns that are padding in every row gives the
    same result as its own forward pass on the full 77-token context.
    """
    mask = (tokens != text.config.pad_token_id).long()
    length = max(1, int(mask.sum(dim=1).max()))
    tokens, mask = tokens[:, :length], mask[:, :length]
    return text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)


def encode_text_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` (unnormalised) without the trailing padding of the fixed context.

    Sentences are ~10-30 tokens of a 77-token context, so most of the work is padding.
    open_clip's own tower is causal and pools at the end-of-text token, so the padding after it
    never reaches the pooled feature; a Hugging Face tower masks it. Same output either way (the
    tests check both), at a fraction of the cost.
    """
    import torch

    if is_pretrained_text_tower(model):
        return model.text.proj(pretrained_tower_pooled(model.text, tokens))
    if not hasattr(model, "token_embedding"):  # other custom text towers: no shortcut
        return model.encode_text(tokens)
    length = max(1, int((tokens != 0).sum(dim=1).max()))
    text = tokens[:, :length]
    x = model.token_embedding(text)
    x = x + model.positional_embedding[:length]
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


def _normalise(feats: torch.Tensor) -> np.ndarray:
    """Normalise in float32 after any autocast, so norms are exactly 1 at fp32 precision."""
    arr = feats.float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
