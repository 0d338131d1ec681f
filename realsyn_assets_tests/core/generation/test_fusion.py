"""Tests for the fusion step of core/generation: prompt, cleaning and offline fusion (the model
backends: test_fusion_backends.py)."""

from __future__ import annotations

import pytest

from realsyn_assets.core.generation.cleaning import clean_generation
from realsyn_assets.core.generation.offline import OfflineFusionGenerator
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FusionInput,
    build_chat_messages,
    build_fusion_prompt,
)

ITEM = FusionInput(
    realistic_text="my puppy max loves the waves at carmel beach in 2 0 1 9 , it 's his spot",
    caption="a dog running on the beach",
    tags=["dog", "beach", "ocean", "sand"],
)


# ---------------------------------------------------------------------------------------------
# prompt
# ---------------------------------------------------------------------------------------------


def test_prompt_contains_instruction_and_three_inputs():
    prompt = build_fusion_prompt(ITEM)
    assert prompt.startswith(FUSION_INSTRUCTION)
    assert ITEM.realistic_text in prompt
    assert "a dog running on the beach" in prompt
    assert "dog, beach, ocean, sand" in prompt
    # the instruction states the paper's requirements (own wording)
    low = FUSION_INSTRUCTION.lower()
    for phrase in ("single", "tags", "do not add", "do not just join"):
        assert phrase in low


def test_prompt_marks_missing_inputs():
    prompt = build_fusion_prompt(FusionInput("some text here", None, []))
    assert "Machine caption: (none)" in prompt
    assert "Tags: (none)" in prompt


def test_chat_messages_shape():
    msgs = build_chat_messages(ITEM)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == FUSION_INSTRUCTION
    user = msgs[1]["content"]
    assert ITEM.realistic_text in user and "a dog running on the beach" in user
    assert "ocean" in user
    custom = build_chat_messages(ITEM, instruction="Merge.")
    assert custom[0]["content"] == "Merge."


# ---------------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            'Sure! Here is the caption:\n\n"A dog runs on Carmel beach."',
            "A dog runs on Carmel beach.",
        ),
        ("Caption: A red bus in London.", "A red bus in London."),
        ("**Fused sentence:** a dog on sand.", "a dog on sand."),
        ("  A   cat\n sits  on a mat.  ", "A cat"),  # first non-empty line only
        (
            "A man in St. Louis walks home. Note: I merged the inputs.",
            "A man in St. Louis walks home.",
        ),
        ("“A lighthouse at dusk.”", "A lighthouse at dusk."),
        ("Here is the merged sentence:", ""),
        ("", ""),
    ],
)
def test_clean_generation_cases(raw, expected):
    assert clean_generation(raw) == expected


def test_clean_generation_collapses_whitespace_and_truncates():
    assert clean_generation("a  b\tc   d") == "a b c d"
    long = " ".join(f"w{i}" for i in range(200))
    out = clean_generation(long, max_words=10)
    assert out.split() == [f"w{i}" for i in range(10)]
    assert len(clean_generation(long).split()) == 77


# ---------------------------------------------------------------------------------------------
# offline generator
# ---------------------------------------------------------------------------------------------


def test_offline_is_deterministic_and_fuses_inputs():
    g = OfflineFusionGenerator()
    a = g.generate([ITEM, ITEM])
    b = OfflineFusionGenerator().generate([ITEM])
    assert a[0] == a[1] == b[0]
    out = a[0]
    assert out.startswith("My puppy max")  # without an encoder the realistic text is the frame
    assert "carmel" in out and "puppy" in out and "2019" in out  # realistic details kept
    assert "it's" in out  # BPE-style "it 's" repaired
    assert "dog" in out and "ocean" in out  # new tags are added
    assert out.count("beach") == 1  # tags already mentioned are not repeated
    assert out.endswith(".") and "\n" not in out


def test_offline_adds_at_most_two_new_tags():
    item = FusionInput("a quiet street at night", "a car parked", ["car", "tree", "lamp", "moon"])
    out = OfflineFusionGenerator().generate([item])[0]
    assert "car" in out and "tree" in out and "lamp" not in out


@pytest.mark.parametrize(
    "item",
    [
        FusionInput("the eiffel tower at night ( paris )", None, []),
        FusionInput("", "a photo of a red car parked on a street.", []),
        FusionInput("", None, ["cat", "sofa"]),
        FusionInput("", None, []),
        FusionInput("   ", "", ["", "  "]),
    ],
)
def test_offline_never_empty(item):
    out = OfflineFusionGenerator().generate([item])[0]
    assert out.strip() and out.endswith(".")


def test_offline_fallbacks_use_available_input():
    g = OfflineFusionGenerator()
    assert g.fuse(FusionInput("the eiffel tower at night ( paris )", None, [])) == (
        "The eiffel tower at night (paris)."
    )
    assert g.fuse(FusionInput("", "a photo of a red car.", [])) == "A red car."
    assert "cat" in g.fuse(FusionInput("", None, ["cat"]))


def test_offline_respects_word_budget():
    item = FusionInput(" ".join(["word"] * 150), "a caption here", ["zebra"])
    out = OfflineFusionGenerator(max_words=30).fuse(item)
    assert len(out.split()) <= 30
    assert "zebra" in out  # tags survive truncation of the details


# ---------------------------------------------------------------------------------------------
# the model backends are tested in test_fusion_backends.py
# ---------------------------------------------------------------------------------------------


def test_modules_import_no_heavy_dependency():
    import ast
    from pathlib import Path

    from realsyn_assets.core import generation

    for path in Path(generation.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:  # module level only: vllm must be imported lazily
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module.split(".")[0])
        assert not top & {"vllm", "dagster", "torch", "openai", "requests"}, path.name
