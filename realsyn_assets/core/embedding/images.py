"""Reading images for the encoder: decode with a clear error, a DataLoader dataset over paths.

torch is imported inside functions so importing this stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from realsyn_assets.core.embedding.runtime import torch_threads


class UnreadableImageError(ValueError):
    """An image file that cannot be opened or decoded; names the file."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot read image {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_rgb(path: str | Path):
    """Open and fully decode an image as RGB, raising :class:`UnreadableImageError` on failure."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decode now so truncated files fail here, not inside the transform
            return im.convert("RGB")
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UnreadableImageError(path, f"{type(exc).__name__}: {exc}") from exc


class ImagePathDataset:
    """Map-style dataset over image paths (plain class: DataLoader needs only len/getitem).

    Errors are returned, not raised, so that with worker processes the main process can raise
    one clean :class:`UnreadableImageError` instead of a wrapped worker traceback.
    """

    def __init__(self, paths: Sequence[str | Path], preprocess: Callable):
        self.paths = [str(p) for p in paths]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(load_rgb(self.paths[i])), None
        except UnreadableImageError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a transform failing on a strange image
            return i, None, f"{type(exc).__name__}: {exc}"


def collate_images(items):
    """DataLoader collate for :class:`ImagePathDataset`: (stacked tensors, []) or (None, errors)."""
    import torch

    errors = [(i, err) for i, _, err in items if err is not None]
    if errors:
        return None, errors
    return torch.stack([t for _, t, _ in items]), []


def worker_init_single_thread(_worker_id: int) -> None:
    """DataLoader workers decode images; one torch thread each avoids oversubscribing cores."""
    import torch

    torch.set_num_threads(1)


def fetch_single_threaded(loader: Iterable) -> Iterator:
    """Yield the loader's batches, producing each one on a single torch thread.

    Why: preprocessing is many tiny tensor ops per image (resize, to-tensor, normalise). On
    the model's multi-threaded pool every op wakes and syncs all threads, which on a busy small
    machine makes decoding several times slower than on one thread. The model keeps its own
    threads. (DataLoader workers are no cure on small CPU machines: a worker process takes a
    core from the model.)
    """
    it = iter(loader)
    while True:
        with torch_threads(1):
            batch = next(it, None)
        if batch is None:
            return
        yield batch
