"""`realsyn bench captions`: the bootstrap encoder trained on human-captioned photos (Flickr8k).

Each photo with its captions is a tiny document (the captions are the text next to the image),
so this measures what the bootstrap can learn from real pixels and real language, not only from
the procedural demo corpus. Training uses the `train` split photos; image -> caption recall@1/5/10
is measured on held-out `dev` photos against all their captions, next to random weights and
chance. The `bootstrap_encoder` asset records the same figures as `captions_*` metadata when its
`caption_benchmark` config names such a folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realsyn_assets.core.embedding.bootstrap.trainer import BootstrapTrainer
from realsyn_assets.core.evaluation import chance_recall, retrieval_recall
from realsyn_assets.core.training.clip import TrainConfig, TrainSample

RECALL_KS = (1, 5, 10)


def load_caption_corpus(root: Path | str) -> list[dict]:
    """Flickr8k-style ``captions.jsonl`` rows (image path made absolute), or [] if absent."""
    path = Path(root) / "captions.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["image"] = str(Path(root) / row["image"])
            rows.append(row)
    return rows


def caption_retrieval_benchmark(
    root: Path | str,
    config: TrainConfig,
    epochs: int = 10,
    objective: str = "mil",
    train_split: str = "train",
    test_split: str = "dev",
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train the bootstrap encoder on ``train_split`` photos, score it on ``test_split`` photos.

    Image -> caption recall ``r_at_{1,5,10}`` of the trained model and (``random_`` prefix) of
    its random initial weights. Chance for R@5: the brief's ``k * m / n`` (m own captions of n)
    as ``chance_r_at_5`` and the exact ``1 - C(n-m, k)/C(n, k)`` as ``chance_exact_r_at_5``.
    Empty dict when the data is absent.
    """
    rows = load_caption_corpus(root)
    train = [r for r in rows if r.get("flickr8k_split", r.get("split")) == train_split]
    test = [r for r in rows if r.get("flickr8k_split", r.get("split")) == test_split]
    if not train or not test:
        return {}
    t0 = time.perf_counter()
    trainer = BootstrapTrainer([r["image"] for r in train + test], config)
    texts = [c for r in test for c in r["captions"]]
    owner = np.array([i for i, r in enumerate(test) for _ in r["captions"]])
    per_image = max(1, round(len(texts) / len(test)))
    test_paths = [r["image"] for r in test]

    def recalls(prefix: str) -> dict[str, float]:
        iv, tv = trainer.encode_images(test_paths), trainer.encode_texts(texts)
        recall = retrieval_recall(iv, tv, owner, ks=RECALL_KS)
        return {f"{prefix}r_at_{k}": recall[f"i2t_R@{k}"] for k in RECALL_KS}

    result: dict[str, float] = {
        "train_images": len(train),
        "test_images": len(test),
        "test_captions": len(texts),
        **recalls("random_"),
    }
    samples = [TrainSample(r["image"], list(r["captions"])) for r in train]
    losses = trainer.fit(samples, epochs, objective=objective, log=log)
    tenth = max(1, len(losses) // 10)
    result.update(recalls(""))
    result.update(
        {
            "chance_r_at_5": 5 * per_image / len(texts),
            "chance_exact_r_at_5": chance_recall(len(test), per_image, 5),
            "loss_first": float(np.mean(losses[:tenth])),
            "loss_last": float(np.mean(losses[-tenth:])),
            "steps": len(losses),
            "seconds": time.perf_counter() - t0,
        }
    )
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench captions", description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="folder with a Flickr8k-style captions.jsonl")
    p.add_argument("--model", default="realsyn-tiny", help="open_clip model config to train")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--objective", choices=("mil", "sample"), default="mil")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch default")
    p.add_argument("--device", default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else sys.argv[1:])
    if not (args.root / "captions.jsonl").is_file():
        print(f"no captions.jsonl in {args.root}", file=sys.stderr)
        return 2
    config = TrainConfig(
        model_name=args.model,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        num_threads=args.threads or None,
    )
    result = caption_retrieval_benchmark(
        args.root,
        config,
        epochs=args.epochs,
        objective=args.objective,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(json.dumps({"model": args.model, "epochs": args.epochs, **result}, indent=2))
    return 0
