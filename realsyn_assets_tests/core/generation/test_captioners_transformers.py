"""The transformers captioner backend on tiny image-to-text models built here (random weights,
locally built tokenizers, no hub): BLIP with its processor, and a VisionEncoderDecoder folder
that has only an image processor and a tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from realsyn_assets.core.generation.captioners import CaptionError, CaptionInput, make_captioner
from realsyn_assets.core.generation.captioning_backends import TransformersCaptioner
from realsyn_assets_tests.vllm_cpu.tiny_blip2 import TINY_VIT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = "a red green blue square circle on the of with background image".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = {w: i for i, w in enumerate(SPECIAL + WORDS)}
COLOURS = [(230, 20, 20), (20, 210, 30), (20, 30, 220)]


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(dict(VOCAB), unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _build_blip(out: Path) -> Path:
    torch.manual_seed(0)
    init = 0.5  # large random weights, so that different pixels give different words
    cfg = transformers.BlipConfig(
        vision_config={**TINY_VIT, "initializer_range": init},
        text_config={
            "vocab_size": len(VOCAB),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": VOCAB["[CLS]"],
            "eos_token_id": VOCAB["[SEP]"],
            "sep_token_id": VOCAB["[SEP]"],
            "pad_token_id": VOCAB["[PAD]"],
            "initializer_range": init,
        },
        projection_dim=32,
        initializer_range=init,
    )
    transformers.BlipForConditionalGeneration(cfg).eval().save_pretrained(out)
    tokenizer = transformers.BertTokenizerFast(
        tokenizer_object=_word_tokenizer(),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    images = transformers.BlipImageProcessor(size={"height": 32, "width": 32})
    transformers.BlipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def _build_vision_encoder_decoder(out: Path) -> Path:
    torch.manual_seed(1)
    encoder = transformers.ViTConfig(**TINY_VIT, initializer_range=0.5)
    decoder = transformers.GPT2Config(
        vocab_size=len(VOCAB),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=VOCAB["[CLS]"],
        eos_token_id=VOCAB["[SEP]"],
        pad_token_id=VOCAB["[PAD]"],
        initializer_range=0.5,
    )
    cfg = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    cfg.decoder_start_token_id = VOCAB["[CLS]"]
    cfg.pad_token_id = VOCAB["[PAD]"]
    cfg.eos_token_id = VOCAB["[SEP]"]
    model = transformers.VisionEncoderDecoderModel(config=cfg).eval()
    model.generation_config.decoder_start_token_id = VOCAB["[CLS]"]
    model.generation_config.pad_token_id = VOCAB["[PAD]"]
    model.generation_config.eos_token_id = VOCAB["[SEP]"]
    model.save_pretrained(out)
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=_word_tokenizer(),
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(out)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory) -> Path:
    return _build_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


def _images(folder: Path, colours) -> list[CaptionInput]:
    folder.mkdir(exist_ok=True)
    items = []
    for i, colour in enumerate(colours):
        path = folder / f"img{i}.png"
        Image.new("RGB", (48, 40), colour).save(path)
        items.append(CaptionInput(image_path=path, vector=None))
    return items


def _spy_generate(cap: TransformersCaptioner) -> list[int]:
    """Record the batch size of every `generate` call the captioner makes."""
    sizes: list[int] = []
    real = cap._net.generate

    def generate(**inputs):
        sizes.append(int(inputs["pixel_values"].shape[0]))
        return real(**inputs)

    cap._net.generate = generate
    return sizes


def test_blip_captions_in_batches_in_order(blip_dir, tmp_path):
    cap = make_captioner("transformers", model=str(blip_dir), device="cpu", batch_size=3)
    assert isinstance(cap, TransformersCaptioner) and cap.backend == "transformers"
    assert cap.model.startswith("tiny-blip@")
    items = _images(tmp_path / "imgs", [*COLOURS, COLOURS[0]])
    sizes = _spy_generate(cap)
    captions = cap.caption(items)
    assert sizes == [3, 1]
    assert all(isinstance(c, str) and c and "\n" not in c for c in captions)
    assert set(" ".join(captions).split()) <= set(WORDS)
    assert captions[0] == captions[3]  # same pixels, same caption
    assert len(set(captions[:3])) == 3  # the caption depends on the pixels
    one_by_one = [cap.caption([item])[0] for item in items]
    assert one_by_one == captions  # batching keeps each caption with its image


def test_model_identity_follows_the_weights(blip_dir, tmp_path):
    same = make_captioner("transformers", model=str(blip_dir), device="cpu")
    other = make_captioner("transformers", model=str(blip_dir), device="cpu", dtype="float32")
    assert same.model == other.model
    copy = tmp_path / "tiny-blip"
    copy.mkdir()
    for f in blip_dir.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the weights
    weights.write_bytes(bytes(data))
    changed = make_captioner("transformers", model=str(copy), device="cpu")
    assert changed.model != same.model


def test_prompted_model_drops_the_echoed_prompt(blip_dir, tmp_path):
    cap = make_captioner("transformers", model=str(blip_dir), device="cpu", prompt="a")
    (caption,) = cap.caption(_images(tmp_path / "imgs", COLOURS[:1]))
    assert isinstance(caption, str)
    assert set(caption.split()) <= set(WORDS)


def test_unreadable_image_is_a_per_item_failure(blip_dir, tmp_path):
    items = _images(tmp_path / "imgs", COLOURS[:2])
    bad = tmp_path / "imgs" / "bad.png"
    bad.write_bytes(b"\x89PNG but truncated")
    items.insert(1, CaptionInput(image_path=bad, vector=None))
    strict = make_captioner("transformers", model=str(blip_dir), device="cpu")
    with pytest.raises(CaptionError, match="bad.png"):
        strict.caption(items)
    lenient = make_captioner("transformers", model=str(blip_dir), device="cpu", on_error="none")
    captions = lenient.caption(items)
    assert captions[1] is None and isinstance(captions[0], str) and isinstance(captions[2], str)
    assert list(lenient.last_errors) == [1]


def test_vision_encoder_decoder_without_processor_config(tmp_path):
    model_dir = _build_vision_encoder_decoder(tmp_path / "tiny-ved")
    cap = make_captioner("transformers", model=str(model_dir), device="cpu", batch_size=2)
    captions = cap.caption(_images(tmp_path / "imgs", COLOURS))
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert set(" ".join(captions).split()) <= set(WORDS)
