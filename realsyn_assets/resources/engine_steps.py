"""Units of work the engine runs (in process or as Ray tasks) that need models built where they
run: the synthesis of one shard (tag vocabulary, captions, fusion). Everything in a job is a
plain value or a picklable factory, so a Ray worker rebuilds the encoder, captioner and
generator itself -- once per worker process where their loaders cache (encoder, vLLM engines) --
and hands back plain results; the asset does the reads, writes and metadata.

The factories for a Ray engine are module-level functions over configuration values
(`remote_makers`); for the local engine the asset passes its resources' own `get` methods, so a
run without a cluster builds exactly what it built before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from realsyn_assets.core.generation import synthesis
from realsyn_assets.core.generation.captioners import CAPTION_PROMPT_VERSION, CaptionInput
from realsyn_assets.core.generation.clients import make_generator
from realsyn_assets.core.generation.tags import cached_tag_vocabulary
from realsyn_assets.resources.encoder import load_encoder


@dataclass(frozen=True)
class Makers:
    """How the worker gets its models: `encoder()`, `captioner()` (None = no captions) and
    `generator(encoder)`."""

    encoder: Callable[[], Any]
    captioner: Callable[[], Any]
    generator: Callable[[Any], Any]


@dataclass(frozen=True)
class VocabularyJob:
    """The tag vocabulary: mined from `members` (the clustered sentences), prompts embedded by
    the encoder, cached in `cache_dir` (shared by every shard)."""

    members: Path
    cache_dir: Path
    prompt: str
    size: int
    user_tags: list[str]


@dataclass(frozen=True)
class SynthesisJob:
    inputs: synthesis.ShardInputs
    makers: Makers
    vocabulary: VocabularyJob
    cfg: synthesis.StepConfig  # prompt version and encoder identity are filled in by the worker
    default_prompt_version: str


@dataclass
class SynthesisOutcome:
    result: synthesis.ShardResult
    vocabulary_size: int
    generator: tuple[str, str]  # backend name, model
    captioner: tuple[str, str]  # backend, model; ("none", "") without captioner
    prompt_version: str
    encoder_identity: str


def synthesize_shard(job: SynthesisJob) -> SynthesisOutcome:
    """Build the models, the tag vocabulary and the shard's synthetic texts."""
    enc = job.makers.encoder()
    voc = job.vocabulary
    vocab, tag_vecs = cached_tag_vocabulary(
        voc.members, voc.cache_dir, enc, prompt=voc.prompt, size=voc.size, user_tags=voc.user_tags
    )
    cap = job.makers.captioner()
    gen = job.makers.generator(enc)
    version = getattr(gen, "prompt_version", None) or job.default_prompt_version
    cfg = replace(job.cfg, prompt_version=version, encoder_identity=enc.identity)
    result = synthesis.run_shard(
        job.inputs, cap, CaptionInput, CAPTION_PROMPT_VERSION, gen, enc, vocab, tag_vecs, cfg
    )
    return SynthesisOutcome(
        result=result,
        vocabulary_size=len(vocab),
        generator=(gen.name, gen.model),
        captioner=(cap.backend, cap.model) if cap is not None else ("none", ""),
        prompt_version=version,
        encoder_identity=enc.identity,
    )


def _captioner_from_fields(fields: dict[str, Any] | None, offline_path: str):
    if fields is None:
        return None
    from realsyn_assets.resources.captioner import CaptionerResource

    return CaptionerResource(**fields).get(offline_path=Path(offline_path))


def _generator_from_options(backend: str, options: dict[str, Any], encoder: Any):
    return make_generator(backend, encoder=encoder, **options)


def remote_makers(
    encoder_spec: Any,
    weights_dir: str,
    captioner_fields: dict[str, Any] | None,
    offline_captioner: str,
    generator_backend: str,
    generator_options: dict[str, Any],
) -> Makers:
    """Factories over plain configuration: the encoder spec and weights folder, the captioner
    resource's field values (None = no captioner), the generator backend and its options."""
    return Makers(
        encoder=functools.partial(load_encoder, encoder_spec, weights_dir),
        captioner=functools.partial(_captioner_from_fields, captioner_fields, offline_captioner),
        generator=functools.partial(_generator_from_options, generator_backend, generator_options),
    )
