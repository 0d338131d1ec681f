"""Perplexity scorers (core/semantic_filter/ngram.py, gpt2.py) and the perplexity window
(core/semantic_filter/perplexity.py)."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from realsyn_assets.core.semantic_filter.gpt2 import (
    LM_EXTRA_HINT,
    GPT2Scorer,
    batched_perplexity,
    torch_token_logprobs,
)
from realsyn_assets.core.semantic_filter.ngram import NGramScorer, ngram_tokens
from realsyn_assets.core.semantic_filter.perplexity import (
    PAPER_PPL_WINDOW,
    PAPER_SEMANTIC_KEEP_FRACTION,
    REJECT_PERPLEXITY_HIGH,
    REJECT_PERPLEXITY_LOW,
    PerplexityScorer,
    calibrate_window,
    perplexity_keep_fraction,
    window_rejection,
    window_rejections,
)
from realsyn_assets_tests.conftest import SHARED_DATA

WIKI = SHARED_DATA / "wikipedia_raycharles_interleaved" / "docs.jsonl"

SUBJECTS = ["the dog", "a small boy", "the old man", "my sister", "a young girl", "the band"]
VERBS = ["runs across", "walks along", "plays near", "sits beside", "waits under", "jumps over"]
PLACES = ["the green field", "a wooden bridge", "the quiet river", "the busy street", "a tall tree"]
TAILS = ["in the morning", "after school", "with a red ball", "on a sunny day", "at night"]


def _corpus(n: int = 1500, seed: int = 0) -> list[str]:
    """Fluent sentences from a small grammar (a realistic word order the model can learn)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(PLACES)} "
        f"{rng.choice(TAILS)}."
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _corpus()


@pytest.fixture(scope="module")
def model(corpus) -> NGramScorer:
    return NGramScorer.fit(corpus)


# --------------------------------------------------------------------------- n-gram model


def test_tokens_are_lowercased_with_digits_folded():
    assert ngram_tokens("In 1959, Charles’s band PLAYED.") == [
        "in",
        "0000",
        ",",
        "charles's",
        "band",
        "played",
        ".",
    ]


def test_fluent_sentence_beats_its_shuffled_words(corpus, model):
    rng = random.Random(1)
    fluent = corpus[:50]
    shuffled = []
    for s in fluent:
        words = s.rstrip(".").split()
        rng.shuffle(words)
        shuffled.append(" ".join(words) + ".")
    p_fluent = model.perplexity(fluent, exclude_self=True)
    p_shuffled = model.perplexity(shuffled)
    assert np.all(np.isfinite(p_fluent)) and np.all(np.isfinite(p_shuffled))
    assert np.mean(p_fluent < p_shuffled) >= 0.95
    assert np.median(p_shuffled) > 3 * np.median(p_fluent)


def _corpus_with_names(n: int, seed: int) -> list[str]:
    """Grammar sentences plus rare names, so that count-of-counts (and hence the discounts) look
    like real text and do not hinge on one sentence."""
    rng = random.Random(seed)
    names = [f"zed{rng.randrange(10**6)}" for _ in range(n // 2)]
    return [f"{s[:-1]} with {rng.choice(names)}." for s in _corpus(n, seed)]


def test_leave_one_out_equals_refitting_without_the_sentence():
    corpus = _corpus_with_names(600, seed=3) + ["A purple giraffe juggles seven lemons quietly."]
    model = NGramScorer.fit(corpus)
    loo = model.perplexity(corpus, exclude_self=True)
    for i in (0, 17, len(corpus) - 1):
        refit = NGramScorer.fit(corpus[:i] + corpus[i + 1 :])
        expected = refit.perplexity([corpus[i]])[0]
        # identical counts and vocabulary; only the discounts (count-of-counts) differ slightly
        assert loo[i] == pytest.approx(expected, rel=0.01), i


def test_scoring_seen_text_in_sample_inflates_probability():
    corpus = _corpus(400, seed=5) + ["A purple giraffe juggles seven lemons quietly."]
    model = NGramScorer.fit(corpus)
    unique = len(corpus) - 1
    in_sample = model.perplexity([corpus[unique]])[0]
    held_out = model.perplexity([corpus[unique]], exclude_self=True)[0]
    assert held_out > 20 * in_sample  # its n-grams exist only because of itself


def test_fit_perplexity_equals_fit_then_leave_one_out(corpus, model):
    fused_model, fused = NGramScorer.fit_perplexity(corpus)
    separate = model.perplexity(corpus, exclude_self=True)
    np.testing.assert_allclose(fused, separate, rtol=1e-12)
    assert fused_model.vocab == model.vocab


def test_repetitive_boilerplate_scores_low_and_garbage_high():
    corpus = _corpus(800, seed=7) + ["All songs written by Ray Charles except as indicated."] * 30
    model, ppl = NGramScorer.fit_perplexity(corpus)
    boiler = ppl[-1]
    fluent = np.median(ppl[:800])
    garbage = model.perplexity(["Qzx vlorp the brindle wug snarf 88 zzt."])[0]
    assert boiler < fluent < garbage


def test_lone_surrogates_survive_fit_save_and_load(tmp_path):
    broken = "The caf\udce9 serves coffee."
    model = NGramScorer.fit([broken, "The dog runs."])
    loaded = NGramScorer.load(model.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.perplexity([broken]), model.perplexity([broken]))


def test_bad_input_gives_nan_not_a_crash(model):
    ppl = model.perplexity(["", "   ", None, "...", "The dog runs across the green field."])
    assert np.isnan(ppl[0]) and np.isnan(ppl[1]) and np.isnan(ppl[2])
    assert np.isfinite(ppl[3]) and np.isfinite(ppl[4])  # punctuation is a token
    assert model.perplexity([]).shape == (0,)


def test_orders_and_validation(corpus):
    for order in (1, 2, 3):
        m = NGramScorer.fit(corpus, order=order)
        assert m.order == order and np.all(np.isfinite(m.perplexity(corpus[:5])))
    unigram = NGramScorer.fit(corpus, order=1).perplexity(corpus[:200], exclude_self=True)
    trigram = NGramScorer.fit(corpus, order=3).perplexity(corpus[:200], exclude_self=True)
    assert np.median(trigram) < np.median(unigram)  # context helps on fluent text
    with pytest.raises(ValueError):
        NGramScorer.fit(corpus, order=4)


def test_min_count_maps_rare_words_to_unk(corpus):
    m = NGramScorer.fit(corpus + ["A purple giraffe."], min_count=2)
    assert "giraffe" not in m.vocab and "dog" in m.vocab


def test_save_load_round_trip(tmp_path, corpus, model):
    path = model.save(tmp_path / "sub" / "ngram.npz")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["ngram.npz"]  # no temp file left
    loaded = NGramScorer.load(path)
    assert loaded.vocab == model.vocab and loaded.order == model.order
    sample = corpus[:100] + ["Something the model never saw before."]
    np.testing.assert_array_equal(loaded.perplexity(sample), model.perplexity(sample))
    np.testing.assert_array_equal(
        loaded.perplexity(sample[:100], exclude_self=True),
        model.perplexity(sample[:100], exclude_self=True),
    )
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError):
        NGramScorer.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ValueError):
        NGramScorer.load(tmp_path / "other.npz")


def test_ngram_is_a_perplexity_scorer(model):
    assert isinstance(model, PerplexityScorer)
    assert model.name == "ngram3"


def test_fit_and_score_speed(corpus):
    sentences = corpus * 4  # 6,000 sentences
    start = time.process_time()
    m = NGramScorer.fit(sentences)
    m.perplexity(sentences, exclude_self=True)
    rate = len(sentences) / max(time.process_time() - start, 1e-9)
    # >= 20k sentences/s (fit + score) measured on an idle core; slack for loaded machines
    assert rate > 5_000, rate


# --------------------------------------------------------------------------- window


def test_calibrate_window_keeps_the_reference_fraction():
    rng = np.random.default_rng(0)
    ppl = np.exp(rng.normal(4.0, 1.0, 20_000))
    low, high = calibrate_window(ppl, 0.6)
    kept = np.mean((ppl >= low) & (ppl <= high))
    assert kept == pytest.approx(0.6, abs=0.002)
    assert np.mean(ppl < low) == pytest.approx(0.2, abs=0.002)  # symmetric tails by default
    low2, high2 = calibrate_window(ppl, 0.6, low_tail_share=0.25)
    assert np.mean(ppl < low2) == pytest.approx(0.1, abs=0.002)
    assert low2 < low and high2 < high
    # NaN (unscorable) entries are ignored
    low3, high3 = calibrate_window(np.r_[ppl, [np.nan] * 100], 0.6)
    assert (low3, high3) == (low, high)
    assert calibrate_window(ppl) == calibrate_window(ppl, PAPER_SEMANTIC_KEEP_FRACTION)


def test_calibrate_window_validation():
    with pytest.raises(ValueError):
        calibrate_window([1.0, 2.0], 0.0)
    with pytest.raises(ValueError):
        calibrate_window([1.0, 2.0], 0.5, low_tail_share=1.5)
    with pytest.raises(ValueError):
        calibrate_window([np.nan], 0.5)


def test_keep_fraction_accounts_for_the_entropy_filter():
    assert PAPER_SEMANTIC_KEEP_FRACTION == pytest.approx(1.16 / 1.82)
    assert perplexity_keep_fraction(1.0) == pytest.approx(1.16 / 1.82)
    assert perplexity_keep_fraction(0.8) == pytest.approx(1.16 / 1.82 / 0.8)
    assert perplexity_keep_fraction(0.5) == 1.0
    with pytest.raises(ValueError):
        perplexity_keep_fraction(0.0)


def test_window_rejection_boundaries_are_inclusive():
    low, high = PAPER_PPL_WINDOW
    assert (low, high) == (30.0, 200.0)
    assert window_rejection(30.0, low, high) is None
    assert window_rejection(200.0, low, high) is None
    assert window_rejection(29.999, low, high) == REJECT_PERPLEXITY_LOW
    assert window_rejection(200.001, low, high) == REJECT_PERPLEXITY_HIGH
    assert window_rejection(float("nan"), low, high) == REJECT_PERPLEXITY_HIGH
    values = [10.0, 30.0, 100.0, 200.0, 500.0, float("nan")]
    assert window_rejections(values, low, high) == [window_rejection(v, low, high) for v in values]


# --------------------------------------------------------------------------- GPT-2


def test_gpt2_scorer_without_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails even if installed
    with pytest.raises(ImportError, match=r"realsyn_assets\[lm\]"):
        GPT2Scorer("gpt2-large")
    assert "realsyn_assets[lm]" in LM_EXTRA_HINT


def test_gpt2_scorer_math_and_batching_with_injected_model():
    seen: list[list[list[int]]] = []

    def tokenize(text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def token_logprobs(batch: list[list[int]]) -> list[np.ndarray]:
        seen.append(batch)
        # p(token) = 1 / (token value + 1): a different, known probability per token
        return [-np.log(np.asarray(seq[1:], dtype=float) + 1.0) for seq in batch]

    sentences = ["a bb ccc", "", "dddd", "x yy", None, "zz zz zz zz zz"]
    scorer = GPT2Scorer(tokenize=tokenize, token_logprobs=token_logprobs, bos_id=0, batch_size=2)
    assert isinstance(scorer, PerplexityScorer)
    ppl = scorer.perplexity(sentences)
    for s, value in zip(sentences, ppl, strict=True):
        toks = tokenize(s) if isinstance(s, str) else []
        if not toks:
            assert math.isnan(value)
        else:  # Eq. 2: exp of the mean negative log-probability over all t tokens
            assert value == pytest.approx(math.exp(np.mean(np.log(np.asarray(toks) + 1.0))))
    assert all(seq[0] == 0 for batch in seen for seq in batch)  # context token first
    assert all(len(batch) <= 2 for batch in seen)
    again = GPT2Scorer(tokenize=tokenize, token_logprobs=token_logprobs, bos_id=0, batch_size=5)
    np.testing.assert_allclose(again.perplexity(sentences), ppl)
    with pytest.raises(ValueError):
        GPT2Scorer(tokenize=tokenize)


def test_batched_perplexity_checks_the_model_output():
    def wrong(batch):
        return [np.zeros(1) for _ in batch]

    with pytest.raises(ValueError):
        batched_perplexity(["a b c d"], lambda s: [1, 2, 3, 4], wrong, bos_id=0)


def test_torch_logprobs_padding_does_not_change_results():
    torch = pytest.importorskip("torch")

    class TinyCausalLM(torch.nn.Module):
        """Each position sees only itself and earlier ones (a cumulative mean of embeddings)."""

        def __init__(self, vocab: int = 11, dim: int = 8) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.emb = torch.nn.Parameter(torch.randn(vocab, dim, generator=gen))
            self.out = torch.nn.Parameter(torch.randn(dim, vocab, generator=gen))

        def forward(self, input_ids, attention_mask):
            x = self.emb[input_ids]
            steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[None, :, None]
            return SimpleNamespace(logits=(x.cumsum(1) / steps) @ self.out)

    lm = TinyCausalLM()
    seqs = [[0, 3, 5, 7, 2], [0, 4], [0, 9, 9, 1]]
    batched = torch_token_logprobs(lm, seqs, pad_id=10, device="cpu")
    for seq, lp in zip(seqs, batched, strict=True):
        single = torch_token_logprobs(lm, [seq], pad_id=10, device="cpu")[0]
        np.testing.assert_allclose(lp, single, rtol=1e-6, atol=1e-6)
        ids = torch.tensor([seq])
        logits = lm(ids, torch.ones_like(ids)).logits[0, :-1]
        manual = torch.log_softmax(logits, -1)[torch.arange(len(seq) - 1), ids[0, 1:]]
        np.testing.assert_allclose(lp, manual.detach().numpy(), rtol=1e-6, atol=1e-6)
        assert lp.shape == (len(seq) - 1,)
    scorer = GPT2Scorer(
        tokenize=lambda s: [int(c) for c in s if c.isdigit()],
        token_logprobs=lambda b: torch_token_logprobs(lm, b, 10, "cpu"),
        bos_id=0,
        batch_size=2,
    )
    ppl = scorer.perplexity(["3 5 7 2", "4", "9 9 1"])
    expected = [math.exp(-float(np.mean(lp))) for lp in batched]
    np.testing.assert_allclose(ppl, expected, rtol=1e-6)


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not WIKI.exists(), reason="shared Wikipedia sample not available")
def test_wikipedia_window_calibration():
    from realsyn_assets.core.text.sentences import sentence_rejection, split_sentences

    sentences = []
    with WIKI.open() as fh:
        for line in fh:
            for text in json.loads(line)["texts"]:
                if text:
                    sentences += [s for s in split_sentences(text) if sentence_rejection(s) is None]
    model, ppl = NGramScorer.fit_perplexity(sentences)
    in_sample = model.perplexity(sentences)
    assert np.median(ppl) > 4 * np.median(in_sample)  # measured 57.6 vs 6.2
    low, high = calibrate_window(ppl)
    assert 2.0 < low < 30.0 and 100.0 < high < 2000.0  # measured (7.0, 388)
    kept = np.mean((ppl >= low) & (ppl <= high))
    assert kept == pytest.approx(PAPER_SEMANTIC_KEEP_FRACTION, abs=0.01)
    # the lowest perplexities are templated lines: each shares its first four tokens with
    # another line (track listings, "All songs written by ..."); the highest almost never do
    prefix = Counter(tuple(ngram_tokens(s)[:4]) for s in sentences)
    order = np.argsort(ppl)

    def templated(idx):
        return np.mean([prefix[tuple(ngram_tokens(sentences[i])[:4])] > 1 for i in idx])

    assert templated(order[:30]) >= 0.9  # measured 1.0
    assert templated(order[-300:]) <= 0.05  # measured 0.003
