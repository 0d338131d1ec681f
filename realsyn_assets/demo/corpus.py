"""Built-in demo corpus: small, deterministic, OBELICS-layout interleaved documents with known noise.

Why it exists: `realsyn demo` and the tests need a corpus that runs the whole pipeline offline in
seconds and lets every stage be *scored*. So every item is synthetic and labelled:

* images are drawn procedurally (a concept = colour x shape, on a background scene, 1-5 objects),
* every sentence is written from templates, so we know which concept it describes,
* each noise class the filters must meet is injected at a known fraction (~3-8% each):
  tiny / extreme-aspect / corrupt / exact-duplicate / near-duplicate images, and boilerplate /
  URL / emoji / too-short / too-long / exact-duplicate / near-duplicate sentences.

Layout under ``root``::

    shard-000.jsonl ... shard-{n-2}.jsonl   one JSON document per line, image paths
    shard-{n-1}.parquet                      same documents, images embedded as bytes
    images/                                  the image files (jpg, png, bin)
    ground_truth.json                        what every image / sentence / document is
    README.md                                a few lines for humans
    manifest.json                            parameters + file sizes, written last (reuse check)

Ground truth, two levels (like the pipeline, which ids content):

* ``images`` (image_id -> record) and ``sentences`` (sentence_id -> record) hold the *first*
  occurrence of each content id, with ``count`` = how often it occurs. Their ``noise`` is
  the item's intrinsic noise (``tiny``, ``url``, ``near_duplicate_of:<id>`` ...), null if clean.
* Occurrences carry their own noise: ``documents[*].images[*].noise`` and
  ``documents[*].texts[*].sentences[*].noise``. A repeat of earlier content is tagged there
  (``exact_duplicate_of:<image_id>`` / ``exact_duplicate``), because a repeat has the same id as
  its original and so cannot be told apart at the id level. ``image_files`` lists every file,
  so byte-identical copies saved under another name are tagged ``exact_duplicate_of:<id>``.

Determinism: one ``random.Random(seed)`` drives the plan; every image is drawn from its own
derived seed; nothing depends on time, paths or dict/set iteration order of unseeded data.
With the same Pillow/libjpeg/pyarrow the same seed gives byte-identical files.

Sentence splitting: each text block is sentences joined by single spaces, each ending in
``.``, ``!`` or ``?``, without abbreviations, so a Punkt splitter recovers them exactly.
Note ``ids.normalise_text`` case-folds: a sentence differing from another only by case has the
same id, so case-only variants are emitted as *exact* duplicates; near-duplicate sentences
always change a word or the punctuation.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFile

from realsyn_assets.core import ids

GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_NAME = "ground_truth.json"
URL_PREFIX = "https://demo.realsyn.invalid/doc/"

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------
# fmt: off

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "blue": (30, 75, 225),
    "green": (25, 165, 55),
    "yellow": (250, 215, 30),
    "purple": (135, 45, 185),
    "orange": (248, 135, 20),
    "black": (18, 18, 18),
    "white": (250, 250, 250),
}
_COLOUR_WORDS: dict[str, list[str]] = {
    "red": ["red", "crimson", "scarlet", "cherry-red"],
    "blue": ["blue", "cobalt", "sapphire", "navy"],
    "green": ["green", "emerald", "leaf-green", "jade"],
    "yellow": ["yellow", "lemon", "canary", "mustard"],
    "purple": ["purple", "violet", "plum", "mauve"],
    "orange": ["orange", "tangerine", "apricot", "amber"],
    "black": ["black", "ebony", "jet-black", "charcoal"],
    "white": ["white", "ivory", "snow-white", "chalk-white"],
}
SHAPES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring"]
_SHAPE_WORDS: dict[str, list[tuple[str, str]]] = {
    "circle": [("circle", "circles"), ("disc", "discs"), ("dot", "dots"), ("ball", "balls")],
    "square": [("square", "squares"), ("block", "blocks"), ("tile", "tiles"), ("box", "boxes")],
    "triangle": [("triangle", "triangles"), ("wedge", "wedges"), ("pyramid", "pyramids")],
    "star": [
        ("star", "stars"), ("five-pointed star", "five-pointed stars"), ("starburst", "starbursts"),
    ],
    "cross": [("cross", "crosses"), ("plus sign", "plus signs"), ("plus shape", "plus shapes")],
    "ring": [("ring", "rings"), ("hoop", "hoops"), ("loop", "loops"), ("halo", "halos")],
}
CONCEPTS: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
SCENES: list[str] = ["sky", "grass", "sea", "night", "sand", "plain"]
_SCENE_PHRASES: dict[str, list[str]] = {
    "sky": [
        "against a clear blue sky", "high in the sky", "across a bright sky",
        "beneath drifting clouds",
    ],
    "grass": ["on the grass", "across a green meadow", "in a grassy field", "on a sunny lawn"],
    "sea": ["above the waves", "over the open sea", "on the calm water", "along the shoreline"],
    "night": [
        "against the night sky", "in the darkness", "under a starry sky", "through the dark night",
    ],
    "sand": ["on the sandy shore", "across a sandy beach", "among the dunes", "on the warm beach"],
    "plain": [
        "on a plain grey background", "against an empty backdrop", "on a simple studio backdrop",
        "in front of a bare grey screen",
    ],
}
# (3rd person singular, plural, -ing, base): every describing sentence uses one of these.
_VERBS: list[tuple[str, str, str, str]] = [
    ("floats", "float", "floating", "float"), ("drifts", "drift", "drifting", "drift"),
    ("hovers", "hover", "hovering", "hover"), ("glows", "glow", "glowing", "glow"),
    ("sparkles", "sparkle", "sparkling", "sparkle"), ("rests", "rest", "resting", "rest"),
    ("sits", "sit", "sitting", "sit"), ("lies", "lie", "lying", "lie"),
    ("shines", "shine", "shining", "shine"), ("tumbles", "tumble", "tumbling", "tumble"),
    ("spins", "spin", "spinning", "spin"), ("bobs", "bob", "bobbing", "bob"),
    ("dances", "dance", "dancing", "dance"),
    ("stands out", "stand out", "standing out", "stand out"),
    ("is scattered", "are scattered", "scattered", "be scattered"),
]
ACTION_VERB_FORMS: frozenset[str] = frozenset(
    word
    for forms in _VERBS
    for form in forms
    for word in form.split()
    if word not in {"out", "is", "are", "be"}
)
_COUNT_WORDS: dict[int, list[str]] = {
    1: ["a single", "one", "a lone"],
    2: ["two", "a pair of"],
    3: ["three"],
    4: ["four"],
    5: ["five"],
}

# Templates. Fields: cnt (count phrase), col, noun (number agrees with count), v (verb agreeing),
# ing, base, scene. The first letter is capitalised afterwards.
_IMAGE_TEMPLATES = [
    "{cnt} {col} {noun} {v} {scene}.", "In this picture, {cnt} {col} {noun} {v} {scene}.",
    "The photo shows {cnt} {col} {noun} {ing} {scene}.",
    "Here you can see {cnt} {col} {noun} {ing} {scene}.",
    "We spotted {cnt} {col} {noun} {ing} {scene} on our last trip.",
    "Look closely and you will notice {cnt} {col} {noun} {ing} {scene}.",
    "This image captures {cnt} {col} {noun} that {v} {scene}.",
    "In the shot below, {cnt} {col} {noun} {v} {scene}.",
    "Our favourite frame has {cnt} {col} {noun} {ing} {scene}.",
    "{cnt} {col} {noun} {v} {scene} in this snapshot.",
]
_FOLLOW_TEMPLATES = [
    "Notice how the {col} {noun} {v} {scene}.",
    "You can almost watch the {col} {noun} {base} {scene}.",
    "Even from far away, the {col} {noun} {v} {scene}.",
    "Every {col} {noun1} seems to {base} {scene}.",
    "In the afternoon light the {col} {noun} {v} {scene}.",
]
_CROSS_TEMPLATES = [
    "Elsewhere on this page, {cnt} {col} {noun} {v} {scene}.",
    "As the other photo here shows, {cnt} {col} {noun} {v} {scene}.",
    "Scroll through this page and you will find {cnt} {col} {noun} {ing} {scene}.",
    "In another picture on this page, {cnt} {col} {noun} {v} {scene}.",
]
_OTHER_TEMPLATES = [
    "Last summer we also saw {cnt} {col} {noun} {ing} {scene}.",
    "Readers often send us photos where {cnt} {col} {noun} {v} {scene}.",
    "In a future post, we will show {cnt} {col} {noun} {ing} {scene}.",
    "A friend once photographed {cnt} {col} {noun} {ing} {scene}.",
    "Next month we hope to capture {cnt} {col} {noun} {ing} {scene}.",
]
_TITLE_TEMPLATES_2 = [
    "A gallery of {col} {noun} and {col2} {noun2}.", "Notes on {col} {noun} and {col2} {noun2}.",
    "Our week with {col} {noun} and {col2} {noun2}.", "Comparing {col} {noun} with {col2} {noun2}.",
]
_TITLE_TEMPLATES_1 = [
    "Why we love {col} {noun}!", "Spotting {col} {noun} {scene}.",
    "How do you photograph {col} {noun}?", "The quiet charm of {col} {noun}.",
    "Everything about {col} {noun}.",
]
_GENERIC_SUBJECTS = [
    "our editor", "a local artist", "the museum guide", "my neighbour", "the photography club",
    "our youngest reader", "a visiting teacher", "the gallery owner", "our small team",
    "a retired sailor", "the café owner", "a curious student", "my grandmother", "the night guard",
]
_GENERIC_VERBS = [
    "photographed", "described", "collected", "sketched", "arranged", "discussed", "catalogued",
    "visited", "painted", "recorded", "admired", "printed", "mapped", "restored",
]
_GENERIC_OBJECTS = [
    "the old harbour", "a quiet village plaza", "hundreds of postcards", "the market stalls",
    "an abandoned lighthouse", "the morning crowds", "a row of wooden boats", "the city library",
    "several paper lanterns", "the mountain trail", "a stack of vintage maps",
    "the botanical garden", "the railway station", "a pile of handwritten letters",
]
_GENERIC_TIMES = [
    "last spring", "every weekend", "before sunrise", "during the summer festival",
    "after a long stretch of rain", "on a windy afternoon", "in early autumn",
    "during the holiday season", "just before closing time", "on a foggy morning",
    "late in the evening", "during the winter break",
]
_GENERIC_TEMPLATES = [
    "{Subj} {verb} {obj} {time}.", "{Time}, {subj} {verb} {obj}.",
    "Many readers asked how {subj} {verb} {obj} {time}.",
    "We still remember how {subj} {verb} {obj} {time}.",
    "It took a while, but {subj} finally {verb} {obj} {time}.",
    "Nobody expected that {subj} {verb} {obj} {time}.",
]
_TOO_LONG_CONNECTORS = [
    ", and", ", while", ", because", ", so", ", although", ", and then", ", but",
]

BOILERPLATE: list[str] = [
    "Subscribe to our newsletter for weekly updates.", "All rights reserved.",
    "This website uses cookies to improve your experience.",
    "By continuing to browse the site you agree to our use of cookies.",
    "Share this page on social media.", "Click here to accept all cookies.",
    "Sign up now and never miss a post!", "Follow us on every platform for more inspiration.",
    "Copyright 2024 Demo Media Group.", "Privacy policy and terms of service apply.",
    "Leave a comment below and tell us what you think!", "Posted in Uncategorized.",
    "Skip to main content.", "Log in to see your saved items.",
    "Did you find this article helpful?", "Please enable JavaScript to view the comments.",
]
SHORT_FRAGMENTS: list[str] = [
    "Home.", "Menu.", "Read more.", "Next page.", "Gallery.", "Comments.", "Top.", "Contact us.",
    "Archive.", "Print.", "Search.", "Sitemap.", "Related posts.", "Previous.", "Tags.", "Reply.",
]
_EMOJI = ["😍", "🌊", "⭐", "🔥", "👍", "🎉", "😂", "❤️", "🌈", "☀️", "🙌", "✨", "📸", "😎"]
_DOMAINS = [
    "example.com", "example.org", "shapes.example", "photo-blog.example.net", "gallery.example",
    "www.example.net", "pictures.example.com",
]
_SLUG_WORDS = [
    "gallery", "photos", "shapes", "colour", "weekend", "story", "post", "blog", "album", "trip",
]
_URL_TEMPLATES_CONCEPT = [
    "More photos of {col} {noun} are available at {url}.",
    "Visit {url} to see {cnt} {col} {noun} {ing} {scene}.",
    "We found {cnt} {col} {noun} {ing} {scene} on {url} yesterday.",
]
_URL_TEMPLATES_PLAIN = [
    "Read the full story at {url}.", "Check out {url} for the complete gallery.",
    "Source: {url} with permission.", "Download the printable version from {url} today.",
]

# fmt: on
# One-word swaps that keep the meaning: used for near-duplicate sentences.
_SWAPS: dict[str, list[str]] = {}
for _words in _COLOUR_WORDS.values():
    for _w in _words:
        _SWAPS[_w] = [x for x in _words if x != _w]
for _pairs in _SHAPE_WORDS.values():
    _single = [p for p in _pairs if " " not in p[0]]
    for _sg, _pl in _single:
        _SWAPS[_sg] = [s for s, _ in _single if s != _sg]
        _SWAPS[_pl] = [p for _, p in _single if p != _pl]
_SWAPS.update(
    {
        "photo": ["picture", "snapshot"],
        "picture": ["photo", "image"],
        "image": ["picture", "photo"],
        "spotted": ["saw", "noticed"],
        "favourite": ["favorite"],
        "notice": ["see", "spot"],
        "calm": ["quiet", "still"],
        "bright": ["sunny", "brilliant"],
        "clear": ["cloudless"],
        "empty": ["blank"],
        "simple": ["basic"],
        "warm": ["hot"],
        "last": ["recent"],
        "old": ["ancient"],
        "quiet": ["calm", "sleepy"],
        "small": ["tiny", "little"],
        "still": ["really", "truly"],
        "finally": ["eventually"],
        "often": ["regularly"],
    }
)
_SWAPS = {word: alternatives for word, alternatives in _SWAPS.items() if alternatives}

# --------------------------------------------------------------------------------------------
# Noise budgets (fractions of image slots / sentence occurrences)
# --------------------------------------------------------------------------------------------

_IMAGE_NOISE_FRACTIONS = {
    "exact_duplicate": 0.06,
    "near_duplicate": 0.055,
    "tiny": 0.05,
    "extreme_aspect": 0.045,
    "corrupt": 0.045,
    "png": 0.035,  # not noise: normal images in PNG (palette / RGBA) to exercise decoding
}
_SENTENCE_NOISE_FRACTIONS = {
    "boilerplate": 0.05,
    "url": 0.045,
    "emoji": 0.045,
    "too_short": 0.045,
    "too_long": 0.04,
    "exact_duplicate": 0.05,
    "near_duplicate": 0.05,
}
IMAGE_NOISE_CLASSES = ("tiny", "extreme_aspect", "corrupt", "exact_duplicate", "near_duplicate")
SENTENCE_NOISE_CLASSES = tuple(_SENTENCE_NOISE_FRACTIONS)


def noise_class(tag: str | None) -> str | None:
    """``near_duplicate_of:<id>`` -> ``near_duplicate``; other tags unchanged."""
    if tag is None:
        return None
    base = tag.split(":", 1)[0]
    return base[: -len("_of")] if base.endswith("_of") else base


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCorpus:
    root: Path
    shard_paths: list[Path]  # in shard order
    ground_truth_path: Path


@dataclass
class GroundTruth:
    """Labels of the demo corpus; see the module docstring for the two levels (id / occurrence)."""

    images: dict[str, dict]  # image_id -> record of its first occurrence
    sentences: dict[str, dict]  # sentence_id -> record of its first occurrence
    documents: list[dict]
    image_files: list[dict] = field(default_factory=list)  # one per file under images/
    params: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def image_concept(self, image_id: str) -> str | None:
        rec = self.images.get(image_id)
        return rec["concept"] if rec else None

    def sentence_concept(self, sentence_id: str) -> str | None:
        rec = self.sentences.get(sentence_id)
        return rec["concept"] if rec else None

    def describes(self, image_id: str, sentence_id: str) -> bool:
        """True when both have the same non-null concept."""
        concept = self.image_concept(image_id)
        return concept is not None and concept == self.sentence_concept(sentence_id)

    def image_noise(self, image_id: str) -> str | None:
        """Intrinsic noise of the image content; repeats are tagged per slot (image_slots)."""
        rec = self.images.get(image_id)
        return rec["noise"] if rec else None

    def sentence_noise(self, sentence_id: str) -> str | None:
        """Intrinsic noise of the sentence; repeats are tagged per occurrence (sentence_occurrences)."""
        rec = self.sentences.get(sentence_id)
        return rec["noise"] if rec else None

    def image_slots(self) -> Iterator[dict]:
        """Every image slot of every document, in corpus order, with its occurrence noise."""
        for doc in self.documents:
            for slot in doc["images"]:
                yield {"document": doc["id"], "shard": doc["shard"], **slot}

    def sentence_occurrences(self) -> Iterator[dict]:
        """Every emitted sentence, in corpus order, with its occurrence noise."""
        for doc in self.documents:
            for block in doc["texts"]:
                for sent in block["sentences"]:
                    yield {
                        "document": doc["id"],
                        "shard": doc["shard"],
                        "position": block["position"],
                        **sent,
                    }


def load_ground_truth(root_or_file: Path | str) -> GroundTruth:
    path = Path(root_or_file)
    if path.is_dir():
        path = path / GROUND_TRUTH_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    return GroundTruth(
        images=data["images"],
        sentences=data["sentences"],
        documents=data["documents"],
        image_files=data.get("image_files", []),
        params=data.get("params", {}),
        summary=data.get("summary", {}),
    )


def generate_demo_corpus(
    root: Path | str, n_docs: int = 240, n_shards: int = 4, seed: int = 0
) -> DemoCorpus:
    """Write the corpus under root (atomic per file; if root already holds a corpus made with the same
    parameters, reuse it and return quickly)."""
    if n_docs < 1 or n_shards < 1:
        raise ValueError("n_docs and n_shards must be >= 1")
    if n_shards > n_docs:
        raise ValueError(f"n_shards ({n_shards}) > n_docs ({n_docs}): every shard needs a document")
    root = Path(root)
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_docs": n_docs,
        "n_shards": n_shards,
        "seed": seed,
    }
    corpus = DemoCorpus(root, _shard_paths(root, n_shards), root / GROUND_TRUTH_NAME)
    old_manifest = _read_manifest(root)
    if old_manifest is not None and _manifest_matches(root, old_manifest, params):
        return corpus

    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)  # a half-rewritten corpus is never "complete"
    plan = _Planner(n_docs, n_shards, seed).build()
    written = _write_corpus(root, plan, params)
    if old_manifest is not None:  # remove files of a previous corpus that this one does not have
        for rel in old_manifest.get("files", {}):
            if rel not in written and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
                (root / rel).unlink(missing_ok=True)
    manifest = {"params": params, "files": written}
    _atomic_write(root / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return corpus


# --------------------------------------------------------------------------------------------
# Plan: documents, image specs, sentences
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _ImageSpec:
    key: int
    kind: str  # clean | png | tiny | extreme_aspect | corrupt | near_duplicate | copy
    concept: str | None
    scene: str | None
    count: int | None
    width: int | None
    height: int | None
    seed: int
    ext: str
    quality: int = 85
    png_mode: str | None = None
    corrupt_kind: str | None = None  # truncated | random_bytes | empty
    near_kind: str | None = None  # requality | resize | crop
    source: _ImageSpec | None = None
    doc_index: int = -1  # document of the slot that created this file
    doc_shard: int = -1
    dup_used: bool = False  # already the source of a duplicate (prefer fresh sources)
    data: bytes = b""
    image_id: str = ""

    @property
    def name(self) -> str:
        return f"images/im{self.key:05d}.{self.ext}"


@dataclass(eq=False)
class _Slot:
    spec: _ImageSpec
    reference_dup: bool = False  # the same file as an earlier slot (exact duplicate by reference)


@dataclass(eq=False)
class _Sent:
    text: str
    kind: str  # title describe follow cross other generic boilerplate url emoji too_short too_long
    #            exact_duplicate near_duplicate
    concept: str | None = None
    image: _ImageSpec | None = None
    noise: str | None = None  # intrinsic noise class (near_duplicate resolved to a tag later)
    source: _Sent | None = None


@dataclass(eq=False)
class _Doc:
    index: int
    shard: int
    n_images: int
    topics: list[str]
    slots: list[_Slot] = field(default_factory=list)
    blocks: list[list[_Sent] | _Slot] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        return f"demo-{self.index:06d}"


@dataclass
class _Plan:
    docs: list[_Doc]
    specs: list[_ImageSpec]
    n_shards: int


def _shard_paths(root: Path, n_shards: int) -> list[Path]:
    paths = [root / f"shard-{i:03d}.jsonl" for i in range(n_shards - 1)]
    return paths + [root / f"shard-{n_shards - 1:03d}.parquet"]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def _n_words(text: str) -> int:
    return len(text.split())


class _Block(list):
    """A text block that may carry a ``footer`` flag (plain lists cannot take attributes)."""


def _spec_count(specs: list[_ImageSpec], kind: str) -> int:
    return sum(1 for s in specs if s.kind == kind)


class _Planner:
    """Decides everything (documents, images, sentences, noise) before any pixel is drawn."""

    def __init__(self, n_docs: int, n_shards: int, seed: int):
        self.n_docs, self.n_shards, self.seed = n_docs, n_shards, seed
        self.rng = random.Random(f"realsyn-demo/{seed}")
        self.specs: list[_ImageSpec] = []
        self.used_text: set[str] = set()

    # -- top level ---------------------------------------------------------------------------

    def build(self) -> _Plan:
        rng = self.rng
        docs = []
        for i in range(self.n_docs):
            shard = i * self.n_shards // self.n_docs
            n_images = rng.choices([1, 2, 3, 4], weights=[0.1, 0.25, 0.3, 0.35])[0]
            topics = rng.sample(CONCEPTS, rng.choice([1, 2, 2, 3]))
            docs.append(_Doc(i, shard, n_images, topics))
        self._plan_images(docs)
        for doc in docs:
            self._compose(doc)
        self._inject_sentence_noise(docs)
        return _Plan(docs, self.specs, self.n_shards)

    # -- images ------------------------------------------------------------------------------

    def _new_spec(self, kind: str, concept: str | None, **kw) -> _ImageSpec:
        rng = self.rng
        spec = _ImageSpec(
            key=len(self.specs),
            kind=kind,
            concept=concept,
            scene=kw.pop("scene", rng.choice(SCENES) if concept else None),
            count=kw.pop(
                "count",
                rng.choices([1, 2, 3, 4, 5], weights=[3, 3, 2, 1.5, 1])[0] if concept else None,
            ),
            width=kw.pop("width", None),
            height=kw.pop("height", None),
            seed=rng.getrandbits(48),
            ext=kw.pop("ext", "jpg"),
            quality=rng.randint(78, 92),
            **kw,
        )
        if (
            spec.width is None
            and kind not in ("copy", "near_duplicate")
            and spec.corrupt_kind not in ("random_bytes", "empty")
        ):
            spec.width, spec.height = self._normal_size()
        self.specs.append(spec)
        return spec

    def _normal_size(self) -> tuple[int, int]:
        w = self.rng.randint(160, 320)
        lo, hi = max(160, -(-w * 10 // 17)), min(320, w * 10 // 6)
        return w, self.rng.randint(lo, hi)

    def _plan_images(self, docs: list[_Doc]) -> None:
        rng = self.rng
        slots = [(d.index, j) for d in docs for j in range(d.n_images)]
        total = len(slots)
        order = slots[:]
        rng.shuffle(order)
        budget = {k: max(1, round(f * total)) for k, f in _IMAGE_NOISE_FRACTIONS.items()}
        if sum(budget.values()) > total // 2:  # tiny corpora: keep most slots clean
            budget = {k: (1 if i < total // 2 else 0) for i, k in enumerate(budget)}
        shard_of = {d.index: d.shard for d in docs}
        kind_of: dict[tuple[int, int], str] = {}
        needs = {  # where a class may go: duplicates need an earlier original
            "exact_duplicate": lambda s: shard_of[s[0]] > 0 if self.n_shards > 1 else s[0] > 0,
            "near_duplicate": lambda s: s[0] > 0,
        }
        for kind, n in budget.items():
            ok = needs.get(kind, lambda s: True)
            chosen = [s for s in order if s not in kind_of and ok(s)][:n]
            for s in chosen:
                kind_of[s] = kind
        n_corrupt = 0
        for doc in docs:
            for j in range(doc.n_images):
                kind = kind_of.get((doc.index, j), "clean")
                if kind == "corrupt":
                    n_corrupt += 1
                doc.slots.append(self._make_slot(doc, kind, n_corrupt))

    def _pick_concept(self, doc: _Doc) -> str:
        return self.rng.choice(doc.topics) if self.rng.random() < 0.8 else self.rng.choice(CONCEPTS)

    def _make_slot(self, doc: _Doc, kind: str, n_corrupt: int) -> _Slot:
        rng = self.rng
        if kind in ("exact_duplicate", "near_duplicate"):
            if kind == "exact_duplicate" and self.n_shards > 1:
                pool = [s for s in self._clean_specs() if s.doc_shard < doc.shard]
            else:
                pool = [s for s in self._clean_specs() if s.doc_index < doc.index]
            if pool:
                unused = [s for s in pool if not s.dup_used] or pool
                source = rng.choice(unused)
                source.dup_used = True
                if kind == "exact_duplicate":
                    if rng.random() < 0.6:
                        return _Slot(source, reference_dup=True)
                    spec = self._new_spec(
                        "copy",
                        source.concept,
                        scene=source.scene,
                        count=source.count,
                        width=source.width,
                        height=source.height,
                        ext=source.ext,
                        source=source,
                    )
                else:
                    near_kind = ("requality", "resize", "crop")[
                        _spec_count(self.specs, "near_duplicate") % 3
                    ]
                    spec = self._new_spec(
                        "near_duplicate",
                        source.concept,
                        scene=source.scene,
                        count=source.count,
                        source=source,
                        near_kind=near_kind,
                    )
                self._tag(spec, doc)
                return _Slot(spec)
            kind = "clean"
        concept = self._pick_concept(doc)
        if kind == "tiny":
            short = rng.randint(24, 90)
            long_ = int(short * rng.uniform(1.0, 1.5))
            w, h = (short, long_) if rng.random() < 0.5 else (long_, short)
            spec = self._new_spec("tiny", concept, width=w, height=h)
        elif kind == "extreme_aspect":
            short = rng.randint(100, 140)
            long_ = int(short * rng.uniform(3.4, 5.5))
            w, h = (long_, short) if rng.random() < 0.7 else (short, long_)
            spec = self._new_spec("extreme_aspect", concept, width=w, height=h)
        elif kind == "corrupt":
            # exactly one empty file (all empty files share one id), only in a jsonl shard: an
            # empty bytes value in parquet reads as an empty slot, not as a broken image
            if n_corrupt == 2 and doc.shard < self.n_shards - 1:
                spec = self._new_spec("corrupt", None, corrupt_kind="empty", ext="bin")
            elif n_corrupt % 3 == 0:
                spec = self._new_spec("corrupt", None, corrupt_kind="random_bytes")
            else:
                spec = self._new_spec("corrupt", concept, corrupt_kind="truncated")
        elif kind == "png":
            spec = self._new_spec("png", concept, ext="png", png_mode=rng.choice(["P", "RGBA"]))
        else:
            spec = self._new_spec("clean", concept)
        self._tag(spec, doc)
        return _Slot(spec)

    @staticmethod
    def _tag(spec: _ImageSpec, doc: _Doc) -> None:
        spec.doc_index, spec.doc_shard = doc.index, doc.shard

    def _clean_specs(self) -> list[_ImageSpec]:
        return [s for s in self.specs if s.kind in ("clean", "png")]

    # -- sentences -----------------------------------------------------------------------------

    def _fresh(self, make: Callable[[], str]) -> str:
        """A text not emitted before (retry), so accidental exact duplicates stay rare."""
        text = make()
        for _ in range(60):
            if ids.normalise_text(text) not in self.used_text:
                break
            text = make()
        self.used_text.add(ids.normalise_text(text))
        return text

    def _fields(self, concept: str, count: int, scene: str) -> dict[str, str]:
        rng = self.rng
        colour, shape = concept.split(" ")
        sg, pl = rng.choice(_SHAPE_WORDS[shape])
        verb = rng.choice(_VERBS)
        plural = count > 1
        return {
            "cnt": rng.choice(_COUNT_WORDS[count]),
            "col": rng.choice(_COLOUR_WORDS[colour]),
            "noun": pl if plural else sg,
            "noun1": sg,
            "v": verb[1] if plural else verb[0],
            "ing": verb[2],
            "base": verb[3],
            "scene": rng.choice(_SCENE_PHRASES[scene]),
        }

    def _describe(
        self, templates: list[str], concept: str, count: int | None = None, scene: str | None = None
    ) -> str:
        rng = self.rng

        def make() -> str:
            n = count if count is not None else rng.randint(1, 5)
            sc = scene if scene is not None else rng.choice(SCENES)
            text = ""
            for _ in range(10):
                text = _cap(rng.choice(templates).format(**self._fields(concept, n, sc)))
                if 6 <= _n_words(text) <= 25:
                    break
            return text

        return self._fresh(make)

    def _generic(self) -> str:
        rng = self.rng

        def make() -> str:
            subj = rng.choice(_GENERIC_SUBJECTS)
            time = rng.choice(_GENERIC_TIMES)
            return rng.choice(_GENERIC_TEMPLATES).format(
                Subj=_cap(subj),
                subj=subj,
                verb=rng.choice(_GENERIC_VERBS),
                obj=rng.choice(_GENERIC_OBJECTS),
                time=time,
                Time=_cap(time),
            )

        return self._fresh(make)

    def _title(self, doc: _Doc) -> _Sent:
        rng = self.rng
        concepts = doc.topics[:2]

        def make() -> str:
            f1 = self._fields(concepts[0], 2, rng.choice(SCENES))
            if len(concepts) == 2:
                f2 = self._fields(concepts[1], 2, "sky")
                return _cap(
                    rng.choice(_TITLE_TEMPLATES_2).format(col2=f2["col"], noun2=f2["noun"], **f1)
                )
            return _cap(rng.choice(_TITLE_TEMPLATES_1).format(**f1))

        return _Sent(self._fresh(make), "title", concepts[0] if len(concepts) == 1 else None)

    def _image_paragraph(self, doc: _Doc, slot: _Slot) -> list[_Sent]:
        rng = self.rng
        spec = slot.spec
        described = spec if spec.concept is not None else None
        # a broken image still gets text about what it was meant to show, as on the web
        concept = spec.concept or rng.choice(doc.topics)
        count = spec.count or rng.randint(1, 5)
        scene = spec.scene or rng.choice(SCENES)
        sents = [
            _Sent(
                self._describe(_IMAGE_TEMPLATES, concept, count, scene),
                "describe",
                concept,
                described,
            )
        ]
        if rng.random() < 0.55:
            sents.append(
                _Sent(
                    self._describe(_FOLLOW_TEMPLATES, concept, count, scene),
                    "follow",
                    concept,
                    described,
                )
            )
        if rng.random() < 0.45:
            sents.append(_Sent(self._generic(), "generic"))
        return sents

    def _generic_paragraph(self, lo: int, hi: int) -> list[_Sent]:
        return [_Sent(self._generic(), "generic") for _ in range(self.rng.randint(lo, hi))]

    def _compose(self, doc: _Doc) -> None:
        rng = self.rng
        blocks: list[list[_Sent] | _Slot] = [[self._title(doc)]]
        if rng.random() < 0.35:
            blocks.append(self._generic_paragraph(1, 2))
        for slot in doc.slots:
            para = self._image_paragraph(doc, slot) if rng.random() < 0.88 else None
            if para is not None and rng.random() < 0.4:
                blocks += [para, slot]
            else:
                blocks.append(slot)
                if para is not None:
                    blocks.append(para)
            if rng.random() < 0.2:
                others = [c for c in CONCEPTS if c not in {s.spec.concept for s in doc.slots}]
                concept = rng.choice(others)
                para = [_Sent(self._describe(_OTHER_TEMPLATES, concept), "other", concept)]
                if rng.random() < 0.5:
                    para.append(_Sent(self._generic(), "generic"))
                blocks.append(para)
        if rng.random() < 0.35:
            blocks.append(self._generic_paragraph(1, 2))
        doc.blocks = blocks
        describable = [s for s in doc.slots if s.spec.concept is not None]
        if len(doc.slots) >= 2 and describable and rng.random() < 0.5:
            self._add_cross_reference(doc, rng.choice(describable))

    def _add_cross_reference(self, doc: _Doc, slot: _Slot) -> None:
        """A sentence describing an image of this page, placed away from that image."""
        spec = slot.spec
        sent = _Sent(
            self._describe(_CROSS_TEMPLATES, spec.concept, spec.count, spec.scene),
            "cross",
            spec.concept,
            spec,
        )
        pos = next(i for i, b in enumerate(doc.blocks) if b is slot)
        far = [
            i
            for i, b in enumerate(doc.blocks)
            if isinstance(b, list) and i > 0 and abs(i - pos) > 1
        ]
        if far:
            block = doc.blocks[self.rng.choice(far)]
            block.insert(self.rng.randint(0, len(block)), sent)
        elif pos < len(doc.blocks) - 2 or pos > 2:
            doc.blocks.insert(len(doc.blocks) if pos < len(doc.blocks) - 2 else 1, [sent])

    # -- sentence noise ------------------------------------------------------------------------

    def _inject_sentence_noise(self, docs: list[_Doc]) -> None:
        rng = self.rng
        clean = sum(len(b) for d in docs for b in d.blocks if isinstance(b, list))
        total = clean / (1 - sum(_SENTENCE_NOISE_FRACTIONS.values()))
        budget = {k: max(1, round(f * total)) for k, f in _SENTENCE_NOISE_FRACTIONS.items()}
        # sources for duplicates: clean sentences of the composed corpus, by document
        pool = [
            (d, s)
            for d in docs
            for b in d.blocks
            if isinstance(b, list)
            for s in b
            if s.kind in ("describe", "follow", "other", "cross", "generic")
        ]
        near_pool = [(d, s) for d, s in pool if s.kind != "generic"]
        makers = {
            "boilerplate": lambda d: _Sent(
                rng.choice(BOILERPLATE), "boilerplate", noise="boilerplate"
            ),
            "url": self._url_sentence,
            "emoji": self._emoji_sentence,
            "too_short": lambda d: _Sent(
                rng.choice(SHORT_FRAGMENTS), "too_short", noise="too_short"
            ),
            "too_long": self._too_long_sentence,
            "exact_duplicate": lambda d: self._exact_duplicate(d, pool),
            "near_duplicate": lambda d: self._near_duplicate(d, near_pool),
        }
        later_docs = docs[1:] or docs
        for kind, n in budget.items():
            for _ in range(n):
                doc = rng.choice(later_docs if "duplicate" in kind else docs)
                sent = makers[kind](doc)
                if sent is not None:
                    self._insert(doc, sent)

    def _insert(self, doc: _Doc, sent: _Sent) -> None:
        """Footer/header lines and fragments go in blocks of their own; other noise goes inline."""
        rng = self.rng
        blocks = doc.blocks
        standalone = (sent.kind == "boilerplate" and rng.random() < 0.8) or (
            sent.kind == "too_short" and rng.random() < 0.6
        )
        paragraphs = [i for i, b in enumerate(blocks) if isinstance(b, list) and i > 0]
        if standalone or not paragraphs:
            at_end = rng.random() < 0.65
            if at_end and isinstance(blocks[-1], list) and getattr(blocks[-1], "footer", False):
                blocks[-1].append(sent)
            elif at_end:
                footer = _Block([sent])
                footer.footer = True
                blocks.append(footer)
            else:
                blocks.insert(1, [sent])
            return
        block = blocks[rng.choice(paragraphs)]
        block.insert(rng.randint(0, len(block)), sent)

    def _url(self) -> str:
        rng = self.rng
        scheme = rng.choice(["https://", "http://", "www.", "https://www."])
        domain = rng.choice(_DOMAINS)
        if scheme.endswith("www.") and domain.startswith("www."):
            domain = domain[4:]
        slug = "-".join(rng.sample(_SLUG_WORDS, 2))
        return f"{scheme}{domain}/{slug}/{rng.randint(1, 99999)}"

    def _url_sentence(self, doc: _Doc) -> _Sent:
        rng = self.rng
        if rng.random() < 0.5:
            concept = rng.choice(doc.topics)
            f = self._fields(concept, rng.randint(2, 5), rng.choice(SCENES))
            text = self._fresh(
                lambda: _cap(rng.choice(_URL_TEMPLATES_CONCEPT).format(url=self._url(), **f))
            )
            return _Sent(text, "url", concept, noise="url")
        text = self._fresh(lambda: rng.choice(_URL_TEMPLATES_PLAIN).format(url=self._url()))
        return _Sent(text, "url", noise="url")

    def _emoji_sentence(self, doc: _Doc) -> _Sent:
        rng = self.rng
        concept = rng.choice(doc.topics) if rng.random() < 0.6 else None
        base = self._describe(_OTHER_TEMPLATES, concept) if concept else self._generic()
        emoji = "".join(rng.sample(_EMOJI, rng.choice([1, 1, 2])))
        end = "!" if rng.random() < 0.5 else base[-1]
        text = f"{base[:-1]} {emoji}{end}"
        self.used_text.add(ids.normalise_text(text))
        return _Sent(text, "emoji", concept, noise="emoji")

    def _too_long_sentence(self, doc: _Doc) -> _Sent:
        rng = self.rng
        concept = rng.choice(doc.topics)
        parts = [self._describe(_IMAGE_TEMPLATES, concept)[:-1]]
        words = _n_words(parts[0])
        while words < 90:
            clause = self._generic()[:-1]
            clause = clause[0].lower() + clause[1:]
            parts.append(f"{rng.choice(_TOO_LONG_CONNECTORS)} {clause}")
            words += _n_words(parts[-1])
        text = "".join(parts) + "."
        self.used_text.add(ids.normalise_text(text))
        return _Sent(text, "too_long", concept, noise="too_long")

    def _source_for(self, doc: _Doc, pool: list[tuple[_Doc, _Sent]]) -> _Sent | None:
        other_shard = [s for d, s in pool if d.index < doc.index and d.shard != doc.shard]
        earlier = other_shard or [s for d, s in pool if d.index < doc.index]
        return self.rng.choice(earlier) if earlier else None

    def _exact_duplicate(self, doc: _Doc, pool: list[tuple[_Doc, _Sent]]) -> _Sent | None:
        source = self._source_for(doc, pool)
        if source is None:
            return None
        text = source.text
        words = text.split(" ")
        if self.rng.random() < 0.25 and len(words) > 2:  # case-only change: same normalised id
            i = self.rng.randint(1, len(words) - 1)
            words[i] = words[i].upper()
            text = " ".join(words)
        return _Sent(
            text,
            "exact_duplicate",
            source.concept,
            source.image,
            noise="exact_duplicate",
            source=source,
        )

    def _near_duplicate(self, doc: _Doc, pool: list[tuple[_Doc, _Sent]]) -> _Sent | None:
        rng = self.rng
        source = self._source_for(doc, pool)
        if source is None:
            return None
        for _ in range(20):
            words = source.text.split(" ")
            mode = rng.choice(["word", "word", "punct", "word_case"])
            if mode in ("word", "word_case"):
                swappable = [i for i, w in enumerate(words) if w.rstrip(".!?,").lower() in _SWAPS]
                if not swappable:
                    mode = "punct"
                else:
                    i = rng.choice(swappable)
                    core = words[i].rstrip(".!?,")
                    repl = rng.choice(_SWAPS[core.lower()])
                    words[i] = (_cap(repl) if core[0].isupper() else repl) + words[i][len(core) :]
                    if mode == "word_case":
                        j = rng.randrange(len(words))
                        words[j] = words[j].upper()
            text = " ".join(words)
            if mode == "punct":
                if "," in text and rng.random() < 0.5:
                    text = text.replace(",", "", 1)
                else:
                    text = text[:-1] + ("!" if text[-1] != "!" else ".")
            norm = ids.normalise_text(text)
            if norm not in self.used_text:
                self.used_text.add(norm)
                return _Sent(
                    text,
                    "near_duplicate",
                    source.concept,
                    source.image,
                    noise="near_duplicate",
                    source=source,
                )
        return None


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


_LOW_RES = 4  # backgrounds are smooth: compute them at 1/4 size and upsample (4x faster)


def _gradient(w: int, h: int, top: tuple, bottom: tuple, tilt: float) -> np.ndarray:
    """Vertical colour gradient with a horizontal tilt, float32 HxWx3."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    t = np.clip(y + tilt * x, 0.0, 1.0)[..., None]
    return np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, ...]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)


def _background(scene: str, w: int, h: int, rng: random.Random) -> Image.Image:
    lw, lh = -(-w // _LOW_RES) + 1, -(-h // _LOW_RES) + 1
    tilt = rng.uniform(-0.6, 0.6)
    horizon = int(h * rng.uniform(0.25, 0.6))
    ground = None
    if scene in ("sky", "grass", "sea", "sand"):
        top, bottom = _jitter((40, 110, 210), rng, 25), _jitter((175, 215, 245), rng, 15)
        base = _gradient(lw, lh, top, bottom, tilt)
        if scene != "sky":
            ground_top, ground_bottom = {
                "grass": ((110, 185, 70), (40, 110, 35)),
                "sea": ((60, 140, 190), (15, 55, 120)),
                "sand": ((235, 210, 160), (200, 165, 110)),
            }[scene]
            ground = _gradient(
                lw, lh, _jitter(ground_top, rng, 20), _jitter(ground_bottom, rng, 20), -tilt
            )
    elif scene == "night":
        base = _gradient(lw, lh, _jitter((8, 10, 35), rng, 8), _jitter((30, 35, 80), rng, 12), tilt)
    else:  # plain studio backdrop
        g1, g2 = rng.randint(150, 215), rng.randint(190, 240)
        base = _gradient(lw, lh, (g1, g1, g1 + 5), (g2, g2, g2), tilt * 2)
    # a soft light/shadow patch at a random place: varies the low frequencies that perceptual
    # hashes look at, so unrelated images of one scene type do not hash alike
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    cx, cy = rng.uniform(0, lw), rng.uniform(0, lh)
    radius = rng.uniform(0.3, 0.7) * max(lw, lh)
    patch = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))[..., None]
    light = rng.choice([-1, 1]) * rng.uniform(45, 80) * patch

    def upsample(arr: np.ndarray) -> Image.Image:
        small = Image.fromarray(np.clip(arr + light, 0, 255).astype(np.uint8))
        return small.resize((w, h), Image.Resampling.BILINEAR)

    img = upsample(base)
    if ground is not None:
        img.paste(upsample(ground).crop((0, horizon, w, h)), (0, horizon))
    draw = ImageDraw.Draw(img)
    if scene == "sky":
        for _ in range(rng.randint(1, 4)):
            cx, cy, r = (
                rng.uniform(0, w),
                rng.uniform(0, h * 0.8),
                rng.uniform(0.12, 0.3) * min(w, h),
            )
            for k in range(3):
                dx = (k - 1) * r * 0.7
                draw.ellipse(
                    (cx + dx - r, cy - r * 0.55, cx + dx + r, cy + r * 0.55),
                    fill=_jitter((245, 245, 250), rng, 5),
                )
    elif scene == "grass":
        for _ in range(rng.randint(20, 60)):
            x, y = rng.uniform(0, w), rng.uniform(horizon, h)
            draw.line(
                (x, y, x + rng.uniform(-3, 3), y - rng.uniform(4, 10)),
                fill=_jitter((30, 95, 30), rng, 15),
            )
    elif scene == "sea":
        for _ in range(rng.randint(5, 14)):
            x, y = rng.uniform(-20, w), rng.uniform(horizon + 3, h)
            draw.arc(
                (x, y, x + rng.uniform(20, 60), y + 8), 200, 340, fill=(200, 230, 245), width=2
            )
    elif scene == "night":
        for _ in range(rng.randint(20, 70)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            draw.point((x, y), fill=_jitter((240, 240, 210), rng, 15))
        mx, my, mr = rng.uniform(0, w), rng.uniform(0, h * 0.4), rng.uniform(0.05, 0.1) * min(w, h)
        draw.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(235, 235, 210))
    elif scene == "sand":
        amp, phase = rng.uniform(3, 12), rng.uniform(0, 6.28)
        pts = [(x, horizon + 10 + amp * np.sin(x / w * 6.28 + phase)) for x in range(0, w + 8, 8)]
        draw.line(pts, fill=(180, 145, 95), width=3)
    else:
        draw.rectangle(
            (0, int(h * rng.uniform(0.6, 0.85)), w, h), fill=_jitter((120, 120, 125), rng, 30)
        )
    return img


def _shape_points(
    shape: str, cx: float, cy: float, r: float, angle: float
) -> list[tuple[float, float]]:
    if shape == "square":
        local = [(np.cos(a), np.sin(a)) for a in np.arange(4) * np.pi / 2 + np.pi / 4]
    elif shape == "triangle":
        local = [(np.cos(a), np.sin(a)) for a in np.arange(3) * 2 * np.pi / 3 - np.pi / 2]
    elif shape == "star":
        local = [
            ((1.0 if k % 2 == 0 else 0.45) * np.cos(a), (1.0 if k % 2 == 0 else 0.45) * np.sin(a))
            for k, a in enumerate(np.arange(10) * np.pi / 5 - np.pi / 2)
        ]
    else:  # cross / plus
        a = 0.32
        local = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
    ca, sa = np.cos(angle), np.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in local]


def _draw_objects(img: Image.Image, concept: str, count: int, rng: random.Random) -> None:
    colour, shape = concept.split(" ")
    rgb = COLOURS[colour]
    edge = (235, 235, 235) if colour in ("black", "blue", "purple") else (25, 25, 25)
    w, h = img.size
    draw = ImageDraw.Draw(img)
    base = min(w, h) * (0.24 if count == 1 else 0.19 if count <= 3 else 0.15)
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        r = base * rng.uniform(0.7, 1.15)
        for _try in range(25):  # keep objects apart so the count stays visible
            cx, cy = rng.uniform(r, max(r + 1, w - r)), rng.uniform(r, max(r + 1, h - r))
            if all((cx - x) ** 2 + (cy - y) ** 2 > (1.05 * (r + q)) ** 2 for x, y, q in placed):
                break
        placed.append((cx, cy, r))
        fill = _jitter(rgb, rng, 8)
        width = max(1, int(r / 12))
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=edge, width=width)
        elif shape == "ring":
            draw.ellipse(
                (cx - r, cy - r, cx + r, cy + r), outline=edge, width=max(2, int(r * 0.42))
            )
            draw.ellipse(
                (cx - r + width, cy - r + width, cx + r - width, cy + r - width),
                outline=fill,
                width=max(2, int(r * 0.42) - 2 * width),
            )
        else:
            draw.polygon(
                _shape_points(shape, cx, cy, r, rng.uniform(0, 2 * np.pi)),
                fill=fill,
                outline=edge,
                width=width,
            )


def _render(spec: _ImageSpec) -> Image.Image:
    rng = random.Random(spec.seed)
    img = _background(spec.scene or "plain", spec.width, spec.height, rng)
    if spec.concept:
        _draw_objects(img, spec.concept, spec.count or 1, rng)
    return img


def _encode(img: Image.Image, fmt: str, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def _decodes(data: bytes) -> bool:
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # judge strictly, whatever a caller set globally
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


# DCT-II basis (unnormalised, like scipy.fftpack.dct) for the 8 lowest frequencies of 32 samples.
_DCT8 = np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)
NEAR_DUPLICATE_MAX_DISTANCE = 8  # near-duplicate images: phash distance to their source <= this
DISTINCT_MIN_DISTANCE = 13  # normal images: phash distance to every other normal image >= this


def _phash(img: Image.Image) -> np.ndarray:
    """64-bit perceptual hash as 64 bools, bit-identical to ``imagehash.phash`` (default size).

    Own numpy version so the generator needs no scipy import (~1 s) for 700 hashes.
    """
    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = _DCT8 @ pixels @ _DCT8.T  # == dct(dct(pixels, axis=0), axis=1)[:8, :8] up to scale
    return (low > np.median(low)).ravel()


def _phash_distance(a: Image.Image, b: Image.Image) -> int:
    return int(np.count_nonzero(_phash(a) != _phash(b)))


def _distinct(
    spec: _ImageSpec, img: Image.Image, hashes: list[np.ndarray], rng: random.Random
) -> Image.Image:
    """Redraw (new object layout) until the image is perceptually far from every earlier normal
    image, so a perceptual-dedup stage meets only the near-duplicates we planted."""
    bits = _phash(img)
    for _ in range(12):
        if not hashes or int(np.min(np.count_nonzero(np.asarray(hashes) != bits, axis=1))) >= (
            DISTINCT_MIN_DISTANCE
        ):
            break
        spec.seed = rng.getrandbits(48)
        img = _render(spec)
        bits = _phash(img)
    hashes.append(bits)
    return img


def _materialise(spec: _ImageSpec, hashes: list[np.ndarray]) -> None:
    """Fill spec.data (and the real width/height) from the spec; sources are materialised first."""
    rng = random.Random(spec.seed ^ 0x5EED)
    if spec.kind == "copy":
        spec.data = spec.source.data
    elif spec.kind == "near_duplicate":
        src = Image.open(io.BytesIO(spec.source.data)).convert("RGB")
        for attempt in range(4):
            kind = spec.near_kind if attempt < 3 else "requality"
            if kind == "resize":
                f = rng.uniform(0.7, 0.9)
                out = src.resize(
                    (round(src.width * f), round(src.height * f)), Image.Resampling.LANCZOS
                )
            elif kind == "crop":
                fx, fy = rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05)
                dx, dy = round(src.width * fx), round(src.height * fy)
                ox, oy = rng.randint(0, dx), rng.randint(0, dy)
                out = src.crop((ox, oy, src.width - (dx - ox), src.height - (dy - oy)))
            else:
                out = src
            quality = rng.choice(
                [q for q in range(55, 96, 5) if abs(q - spec.source.quality) >= 12]
            )
            data = _encode(out, "JPEG", quality)
            if (
                data != spec.source.data
                and _phash_distance(src, Image.open(io.BytesIO(data)))
                <= NEAR_DUPLICATE_MAX_DISTANCE
            ):
                break
        spec.near_kind, spec.quality, spec.data = kind, quality, data
        spec.width, spec.height = out.size
    elif spec.kind == "corrupt" and spec.corrupt_kind == "empty":
        spec.data = b""
    elif spec.kind == "corrupt" and spec.corrupt_kind == "random_bytes":
        while True:
            data = bytes([0x00]) + rng.randbytes(rng.randint(400, 4000))
            if not _decodes(data):
                break
        spec.data = data
    else:
        img = _render(spec)
        if spec.kind in ("clean", "png"):
            img = _distinct(spec, img, hashes, rng)
        if spec.kind == "png":
            if spec.png_mode == "P":
                img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=48)
            else:
                alpha = Image.new("L", img.size, 255)
                border = max(3, min(img.size) // 20)
                ImageDraw.Draw(alpha).rectangle(
                    (0, 0, img.width - 1, img.height - 1), outline=0, width=border
                )
                img.putalpha(alpha)
            spec.data = _encode(img, "PNG")
        else:
            data = _encode(img, "JPEG", spec.quality)
            if spec.kind == "corrupt":  # truncated mid-scan: header intact, pixels missing
                cut = rng.uniform(0.35, 0.7)
                while _decodes(data[: int(len(data) * cut)]):
                    cut *= 0.8
                data = data[: int(len(data) * cut)]
            spec.data = data
    spec.image_id = ids.image_id(spec.data)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_matches(root: Path, manifest: dict, params: dict) -> bool:
    if manifest.get("params") != params:
        return False
    try:
        return all(
            (root / rel).stat().st_size == size for rel, size in manifest.get("files", {}).items()
        )
    except OSError:
        return False


def _write_corpus(root: Path, plan: _Plan, params: dict) -> dict[str, int]:
    """Materialise images, write every file atomically; returns {relative path: size}."""
    (root / "images").mkdir(exist_ok=True)
    written: dict[str, int] = {}

    def put(rel: str, data: bytes) -> None:
        _atomic_write(root / rel, data)
        written[rel] = len(data)

    hashes: list[np.ndarray] = []  # phashes of the normal images drawn so far
    for spec in plan.specs:  # creation order: a duplicate's source always comes first
        _materialise(spec, hashes)
        put(spec.name, spec.data)

    rows = [_document_row(doc) for doc in plan.docs]
    for shard in range(plan.n_shards):
        shard_rows = [
            (doc, row) for doc, row in zip(plan.docs, rows, strict=True) if doc.shard == shard
        ]
        path = _shard_paths(root, plan.n_shards)[shard]
        if path.suffix == ".jsonl":
            lines = [json.dumps(row, ensure_ascii=False) for _, row in shard_rows]
            put(path.name, ("\n".join(lines) + "\n").encode("utf-8"))
        else:
            put(
                path.name,
                _parquet_bytes([doc for doc, _ in shard_rows], [row for _, row in shard_rows]),
            )

    truth = _ground_truth(plan, params)
    put(GROUND_TRUTH_NAME, json.dumps(truth, ensure_ascii=False, indent=1).encode("utf-8"))
    put("README.md", _readme(truth).encode("utf-8"))
    return written


def _block_text(block: list[_Sent]) -> str:
    return " ".join(s.text for s in block)


def _document_row(doc: _Doc) -> dict:
    texts: list[str | None] = []
    images: list[str | None] = []
    for block in doc.blocks:
        if isinstance(block, _Slot):
            texts.append(None)
            images.append(block.spec.name)
        else:
            texts.append(_block_text(block))
            images.append(None)
    return {"id": doc.doc_id, "url": f"{URL_PREFIX}{doc.index}", "texts": texts, "images": images}


def _parquet_bytes(docs: list[_Doc], rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    embedded = [[b.spec.data if isinstance(b, _Slot) else None for b in doc.blocks] for doc in docs]
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "url": pa.array([r["url"] for r in rows], pa.string()),
            "texts": pa.array([r["texts"] for r in rows], pa.list_(pa.string())),
            "images": pa.array(embedded, pa.list_(pa.binary())),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _ground_truth(plan: _Plan, params: dict) -> dict:
    images: dict[str, dict] = {}
    sentences: dict[str, dict] = {}
    documents = []
    slot_noise: dict[str, int] = {}
    sent_noise: dict[str, int] = {}
    n_slots = n_sents = 0
    for doc in plan.docs:
        doc_images, doc_texts = [], []
        for pos, block in enumerate(doc.blocks):
            if isinstance(block, _Slot):
                spec = block.spec
                intrinsic = _intrinsic_image_noise(spec)
                if spec.image_id in images:
                    rec = images[spec.image_id]
                    rec["n_references"] += 1
                    rec["documents"].append(doc.doc_id)
                    if spec.name not in rec["paths"]:
                        rec["paths"].append(spec.name)
                    noise = (
                        intrinsic
                        if intrinsic and spec.kind != "copy"
                        else f"exact_duplicate_of:{spec.image_id}"
                    )
                else:
                    images[spec.image_id] = _image_record(spec, intrinsic, doc)
                    noise = intrinsic
                doc_images.append(
                    {"position": pos, "image_id": spec.image_id, "path": spec.name, "noise": noise}
                )
                n_slots += 1
                key = noise_class(noise) or ("png" if spec.kind == "png" else "clean")
                slot_noise[key] = slot_noise.get(key, 0) + 1
            else:
                occ = []
                for sent in block:
                    sid = ids.sentence_id(sent.text)
                    intrinsic = _intrinsic_sentence_noise(sent)
                    if sid in sentences:
                        sentences[sid]["count"] += 1
                        noise = (
                            intrinsic
                            if intrinsic not in (None, "exact_duplicate")
                            else "exact_duplicate"
                        )
                    else:
                        if intrinsic == "exact_duplicate":  # a copy whose original is not earlier
                            intrinsic = None
                        sentences[sid] = _sentence_record(sent, sid, intrinsic, doc)
                        noise = intrinsic
                    occ.append({"sentence_id": sid, "text": sent.text, "noise": noise})
                    n_sents += 1
                    key = noise_class(noise) or "clean"
                    sent_noise[key] = sent_noise.get(key, 0) + 1
                doc_texts.append({"position": pos, "sentences": occ})
        documents.append(
            {
                "id": doc.doc_id,
                "url": f"{URL_PREFIX}{doc.index}",
                "shard": doc.shard,
                "shard_file": _shard_paths(Path("."), plan.n_shards)[doc.shard].name,
                "n_items": len(doc.blocks),
                "images": doc_images,
                "texts": doc_texts,
            }
        )
    image_files = []
    for spec in plan.specs:
        noise = (
            f"exact_duplicate_of:{spec.image_id}"
            if spec.kind == "copy"
            else _intrinsic_image_noise(spec)
        )
        image_files.append(
            {
                "path": spec.name,
                "image_id": spec.image_id,
                "noise": noise,
                "n_bytes": len(spec.data),
            }
        )
    summary = {
        "n_documents": len(documents),
        "n_image_slots": n_slots,
        "n_image_files": len(image_files),
        "n_unique_images": len(images),
        "n_sentences": n_sents,
        "n_unique_sentences": len(sentences),
        "image_slot_classes": dict(sorted(slot_noise.items())),
        "sentence_classes": dict(sorted(sent_noise.items())),
    }
    return {
        "params": params,
        "concepts": CONCEPTS,
        "summary": summary,
        "images": images,
        "image_files": image_files,
        "sentences": sentences,
        "documents": documents,
    }


def _intrinsic_image_noise(spec: _ImageSpec) -> str | None:
    if spec.kind in ("tiny", "extreme_aspect", "corrupt"):
        return spec.kind
    if spec.kind == "near_duplicate":
        return f"near_duplicate_of:{spec.source.image_id}"
    if spec.kind == "copy":
        return f"exact_duplicate_of:{spec.source.image_id}"
    return None


def _image_record(spec: _ImageSpec, noise: str | None, doc: _Doc) -> dict:
    return {
        "image_id": spec.image_id,
        "path": spec.name,
        "paths": [spec.name],
        "concept": spec.concept,
        "scene": spec.scene if spec.concept else None,
        "count": spec.count if spec.concept else None,
        "noise": noise,
        "width": spec.width,
        "height": spec.height,
        "format": {"jpg": "jpeg", "png": "png"}.get(spec.ext) if spec.kind != "corrupt" else None,
        "mode": spec.png_mode
        if spec.kind == "png"
        else ("RGB" if spec.kind != "corrupt" else None),
        "corrupt_kind": spec.corrupt_kind,
        "near_kind": spec.near_kind,
        "n_bytes": len(spec.data),
        "n_references": 1,
        "documents": [doc.doc_id],
        "shard": doc.shard,
    }


def _intrinsic_sentence_noise(sent: _Sent) -> str | None:
    if sent.noise == "near_duplicate":
        return f"near_duplicate_of:{ids.sentence_id(sent.source.text)}"
    return sent.noise


def _sentence_record(sent: _Sent, sid: str, noise: str | None, doc: _Doc) -> dict:
    return {
        "sentence_id": sid,
        "text": sent.text,
        "concept": sent.concept,
        "image_id": sent.image.image_id if sent.image is not None else None,
        "noise": noise,
        "kind": sent.kind,
        "n_words": _n_words(sent.text),
        "count": 1,
        "document": doc.doc_id,
        "shard": doc.shard,
    }


def _readme(truth: dict) -> str:
    p, s = truth["params"], truth["summary"]
    return (
        "# RealSyn demo corpus\n\n"
        f"Synthetic interleaved web documents in the OBELICS layout (seed {p['seed']}, "
        f"{p['n_docs']} documents, {p['n_shards']} shards; generator v{p['generator_version']}).\n"
        "Images are drawn procedurally (a concept = colour x shape on a background scene); sentences "
        "come from templates, so `ground_truth.json` knows what every image and sentence shows and "
        "which noise class (tiny / extreme-aspect / corrupt / duplicate images; boilerplate / URL / "
        "emoji / too-short / too-long / duplicate sentences) it was injected as.\n\n"
        f"- image slots: {s['n_image_slots']} ({s['n_unique_images']} unique images)\n"
        f"- sentences: {s['n_sentences']} ({s['n_unique_sentences']} unique)\n"
        "- `shard-*.jsonl`: image paths relative to this folder; the last shard is parquet with "
        "embedded image bytes.\n"
        "Generated by `realsyn_assets.demo.corpus.generate_demo_corpus`.\n"
    )
