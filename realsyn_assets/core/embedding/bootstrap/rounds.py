"""Bootstrap training in rounds: round 1 on the mined pairs, later rounds on pairs re-selected
(or retrieved) with the model of the round before."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from realsyn_assets.core.embedding.bootstrap.pairs import reselect_pairs, retrieved_pairs
from realsyn_assets.core.embedding.bootstrap.trainer import BootstrapTrainer
from realsyn_assets.core.training.clip import TrainSample

SELECTIONS = ("mined", "reselect", "retrieved", "reselect+retrieved")


@dataclass(frozen=True)
class RoundPlan:
    """One bootstrap round: which pairs to train on, and how long.

    select "mined": every nearby sentence (round 1); "reselect": each image's ``keep`` best
    nearby sentences under the model so far; "retrieved": its ``keep`` best sentences of the
    whole corpus (the pipeline's own retrieval, self-training); "reselect+retrieved": both.
    """

    epochs: int
    objective: str = "mil"
    select: str = "mined"
    keep: int = 1


@dataclass
class RoundResult:
    """What one round trained on, its per-step losses and its wall time."""

    plan: RoundPlan
    pairs: list[TrainSample]
    losses: list[float]
    seconds: float


def round_plans(
    epochs: int,
    objective: str = "mil",
    rounds: int = 1,
    refine_epochs: int = 0,
    refine_select: str = "reselect",
    keep: int = 1,
) -> list[RoundPlan]:
    """Round 1 on every mined pair for ``epochs``, then ``rounds - 1`` rounds of ``refine_epochs``
    on pairs chosen by ``refine_select`` (at least one round)."""
    return [RoundPlan(epochs, objective)] + [
        RoundPlan(refine_epochs, objective, refine_select, keep) for _ in range(max(1, rounds) - 1)
    ]


def run_rounds(
    trainer: BootstrapTrainer,
    samples: Sequence[TrainSample],
    plans: Sequence[RoundPlan],
    corpus_texts: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    after_round: Callable[[int, RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Train round after round, re-selecting the pairs with the model of the previous round.

    ``after_round(index, result)`` runs after each round (e.g. to score intermediate models).
    """
    say = log or (lambda _msg: None)
    results: list[RoundResult] = []
    for index, plan in enumerate(plans, start=1):
        if plan.select not in SELECTIONS:
            raise ValueError(f"select {plan.select!r} not in {SELECTIONS}")
        t0 = time.perf_counter()
        if plan.select == "mined" or index == 1:
            pairs = list(samples)
        elif plan.select == "reselect":
            pairs = reselect_pairs(trainer, samples, keep=plan.keep)
        elif plan.select == "retrieved":
            pairs = retrieved_pairs(trainer, samples, corpus_texts, keep=plan.keep)
        else:
            near = reselect_pairs(trainer, samples, keep=plan.keep)
            far = retrieved_pairs(trainer, samples, corpus_texts, keep=plan.keep)
            pairs = [
                TrainSample(a.image_path, list(dict.fromkeys(a.texts + b.texts)))
                for a, b in zip(near, far, strict=True)
            ]
        say(f"round {index}: {plan.select} pairs, {plan.objective}, {plan.epochs} epochs")
        losses = trainer.fit(pairs, plan.epochs, objective=plan.objective, log=log)
        results.append(RoundResult(plan, pairs, losses, time.perf_counter() - t0))
        if after_round is not None:
            after_round(index, results[-1])
    return results
