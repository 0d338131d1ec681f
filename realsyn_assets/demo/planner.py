"""Demo corpus plan: which documents hold which images and sentences, and where noise goes."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from realsyn_assets.core import ids
from realsyn_assets.demo.vocabulary import (
    BOILERPLATE,
    COLOUR_WORDS,
    CONCEPTS,
    COUNT_WORDS,
    CROSS_TEMPLATES,
    DOMAINS,
    EMOJI,
    FOLLOW_TEMPLATES,
    GENERIC_OBJECTS,
    GENERIC_SUBJECTS,
    GENERIC_TEMPLATES,
    GENERIC_TIMES,
    GENERIC_VERBS,
    IMAGE_NOISE_FRACTIONS,
    IMAGE_TEMPLATES,
    OTHER_TEMPLATES,
    SCENE_PHRASES,
    SCENES,
    SENTENCE_NOISE_FRACTIONS,
    SHAPE_WORDS,
    SHORT_FRAGMENTS,
    SLUG_WORDS,
    SWAPS,
    TITLE_TEMPLATES_1,
    TITLE_TEMPLATES_2,
    TOO_LONG_CONNECTORS,
    URL_TEMPLATES_CONCEPT,
    URL_TEMPLATES_PLAIN,
    VERBS,
)

# Plan: documents, image specs, sentences
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ImageSpec:
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
    source: ImageSpec | None = None
    doc_index: int = -1  # document of the slot that created this file
    doc_shard: int = -1
    dup_used: bool = False  # already the source of a duplicate (prefer fresh sources)
    data: bytes = b""
    image_id: str = ""

    @property
    def name(self) -> str:
        return f"images/im{self.key:05d}.{self.ext}"


@dataclass(eq=False)
class Slot:
    spec: ImageSpec
    reference_dup: bool = False  # the same file as an earlier slot (exact duplicate by reference)


@dataclass(eq=False)
class Sent:
    text: str
    kind: str  # title describe follow cross other generic boilerplate url emoji too_short too_long
    #            exact_duplicate near_duplicate
    concept: str | None = None
    image: ImageSpec | None = None
    noise: str | None = None  # intrinsic noise class (near_duplicate resolved to a tag later)
    source: Sent | None = None


@dataclass(eq=False)
class Doc:
    index: int
    shard: int
    n_images: int
    topics: list[str]
    slots: list[Slot] = field(default_factory=list)
    blocks: list[list[Sent] | Slot] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        return f"demo-{self.index:06d}"


@dataclass
class Plan:
    docs: list[Doc]
    specs: list[ImageSpec]
    n_shards: int


def _shard_paths(root: Path, n_shards: int) -> list[Path]:
    paths = [root / f"shard-{i:03d}.jsonl" for i in range(n_shards - 1)]
    return paths + [root / f"shard-{n_shards - 1:03d}.parquet"]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def _n_words(text: str) -> int:
    return len(text.split())


class Block(list):
    """A text block that may carry a ``footer`` flag (plain lists cannot take attributes)."""


def _spec_count(specs: list[ImageSpec], kind: str) -> int:
    return sum(1 for s in specs if s.kind == kind)


class Planner:
    """Decides everything (documents, images, sentences, noise) before any pixel is drawn."""

    def __init__(self, n_docs: int, n_shards: int, seed: int):
        self.n_docs, self.n_shards, self.seed = n_docs, n_shards, seed
        self.rng = random.Random(f"realsyn-demo/{seed}")
        self.specs: list[ImageSpec] = []
        self.used_text: set[str] = set()

    # -- top level ---------------------------------------------------------------------------

    def build(self) -> Plan:
        rng = self.rng
        docs = []
        for i in range(self.n_docs):
            shard = i * self.n_shards // self.n_docs
            n_images = rng.choices([1, 2, 3, 4], weights=[0.1, 0.25, 0.3, 0.35])[0]
            topics = rng.sample(CONCEPTS, rng.choice([1, 2, 2, 3]))
            docs.append(Doc(i, shard, n_images, topics))
        self._plan_images(docs)
        for doc in docs:
            self._compose(doc)
        self._inject_sentence_noise(docs)
        return Plan(docs, self.specs, self.n_shards)

    # -- images ------------------------------------------------------------------------------

    def _new_spec(self, kind: str, concept: str | None, **kw) -> ImageSpec:
        rng = self.rng
        spec = ImageSpec(
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

    def _plan_images(self, docs: list[Doc]) -> None:
        rng = self.rng
        slots = [(d.index, j) for d in docs for j in range(d.n_images)]
        total = len(slots)
        order = slots[:]
        rng.shuffle(order)
        budget = {k: max(1, round(f * total)) for k, f in IMAGE_NOISE_FRACTIONS.items()}
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

    def _pick_concept(self, doc: Doc) -> str:
        return self.rng.choice(doc.topics) if self.rng.random() < 0.8 else self.rng.choice(CONCEPTS)

    def _make_slot(self, doc: Doc, kind: str, n_corrupt: int) -> Slot:
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
                        return Slot(source, reference_dup=True)
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
                return Slot(spec)
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
        return Slot(spec)

    @staticmethod
    def _tag(spec: ImageSpec, doc: Doc) -> None:
        spec.doc_index, spec.doc_shard = doc.index, doc.shard

    def _clean_specs(self) -> list[ImageSpec]:
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
        sg, pl = rng.choice(SHAPE_WORDS[shape])
        verb = rng.choice(VERBS)
        plural = count > 1
        return {
            "cnt": rng.choice(COUNT_WORDS[count]),
            "col": rng.choice(COLOUR_WORDS[colour]),
            "noun": pl if plural else sg,
            "noun1": sg,
            "v": verb[1] if plural else verb[0],
            "ing": verb[2],
            "base": verb[3],
            "scene": rng.choice(SCENE_PHRASES[scene]),
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
            subj = rng.choice(GENERIC_SUBJECTS)
            time = rng.choice(GENERIC_TIMES)
            return rng.choice(GENERIC_TEMPLATES).format(
                Subj=_cap(subj),
                subj=subj,
                verb=rng.choice(GENERIC_VERBS),
                obj=rng.choice(GENERIC_OBJECTS),
                time=time,
                Time=_cap(time),
            )

        return self._fresh(make)

    def _title(self, doc: Doc) -> Sent:
        rng = self.rng
        concepts = doc.topics[:2]

        def make() -> str:
            f1 = self._fields(concepts[0], 2, rng.choice(SCENES))
            if len(concepts) == 2:
                f2 = self._fields(concepts[1], 2, "sky")
                return _cap(
                    rng.choice(TITLE_TEMPLATES_2).format(col2=f2["col"], noun2=f2["noun"], **f1)
                )
            return _cap(rng.choice(TITLE_TEMPLATES_1).format(**f1))

        return Sent(self._fresh(make), "title", concepts[0] if len(concepts) == 1 else None)

    def _image_paragraph(self, doc: Doc, slot: Slot) -> list[Sent]:
        rng = self.rng
        spec = slot.spec
        described = spec if spec.concept is not None else None
        # a broken image still gets text about what it was meant to show, as on the web
        concept = spec.concept or rng.choice(doc.topics)
        count = spec.count or rng.randint(1, 5)
        scene = spec.scene or rng.choice(SCENES)
        sents = [
            Sent(
                self._describe(IMAGE_TEMPLATES, concept, count, scene),
                "describe",
                concept,
                described,
            )
        ]
        if rng.random() < 0.55:
            sents.append(
                Sent(
                    self._describe(FOLLOW_TEMPLATES, concept, count, scene),
                    "follow",
                    concept,
                    described,
                )
            )
        if rng.random() < 0.45:
            sents.append(Sent(self._generic(), "generic"))
        return sents

    def _generic_paragraph(self, lo: int, hi: int) -> list[Sent]:
        return [Sent(self._generic(), "generic") for _ in range(self.rng.randint(lo, hi))]

    def _compose(self, doc: Doc) -> None:
        rng = self.rng
        blocks: list[list[Sent] | Slot] = [[self._title(doc)]]
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
                para = [Sent(self._describe(OTHER_TEMPLATES, concept), "other", concept)]
                if rng.random() < 0.5:
                    para.append(Sent(self._generic(), "generic"))
                blocks.append(para)
        if rng.random() < 0.35:
            blocks.append(self._generic_paragraph(1, 2))
        doc.blocks = blocks
        describable = [s for s in doc.slots if s.spec.concept is not None]
        if len(doc.slots) >= 2 and describable and rng.random() < 0.5:
            self._add_cross_reference(doc, rng.choice(describable))

    def _add_cross_reference(self, doc: Doc, slot: Slot) -> None:
        """A sentence describing an image of this page, placed away from that image."""
        spec = slot.spec
        sent = Sent(
            self._describe(CROSS_TEMPLATES, spec.concept, spec.count, spec.scene),
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

    def _inject_sentence_noise(self, docs: list[Doc]) -> None:
        rng = self.rng
        clean = sum(len(b) for d in docs for b in d.blocks if isinstance(b, list))
        total = clean / (1 - sum(SENTENCE_NOISE_FRACTIONS.values()))
        budget = {k: max(1, round(f * total)) for k, f in SENTENCE_NOISE_FRACTIONS.items()}
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
            "boilerplate": lambda d: Sent(
                rng.choice(BOILERPLATE), "boilerplate", noise="boilerplate"
            ),
            "url": self._url_sentence,
            "emoji": self._emoji_sentence,
            "too_short": lambda d: Sent(
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

    def _insert(self, doc: Doc, sent: Sent) -> None:
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
                footer = Block([sent])
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
        domain = rng.choice(DOMAINS)
        if scheme.endswith("www.") and domain.startswith("www."):
            domain = domain[4:]
        slug = "-".join(rng.sample(SLUG_WORDS, 2))
        return f"{scheme}{domain}/{slug}/{rng.randint(1, 99999)}"

    def _url_sentence(self, doc: Doc) -> Sent:
        rng = self.rng
        if rng.random() < 0.5:
            concept = rng.choice(doc.topics)
            f = self._fields(concept, rng.randint(2, 5), rng.choice(SCENES))
            text = self._fresh(
                lambda: _cap(rng.choice(URL_TEMPLATES_CONCEPT).format(url=self._url(), **f))
            )
            return Sent(text, "url", concept, noise="url")
        text = self._fresh(lambda: rng.choice(URL_TEMPLATES_PLAIN).format(url=self._url()))
        return Sent(text, "url", noise="url")

    def _emoji_sentence(self, doc: Doc) -> Sent:
        rng = self.rng
        concept = rng.choice(doc.topics) if rng.random() < 0.6 else None
        base = self._describe(OTHER_TEMPLATES, concept) if concept else self._generic()
        emoji = "".join(rng.sample(EMOJI, rng.choice([1, 1, 2])))
        end = "!" if rng.random() < 0.5 else base[-1]
        text = f"{base[:-1]} {emoji}{end}"
        self.used_text.add(ids.normalise_text(text))
        return Sent(text, "emoji", concept, noise="emoji")

    def _too_long_sentence(self, doc: Doc) -> Sent:
        rng = self.rng
        concept = rng.choice(doc.topics)
        parts = [self._describe(IMAGE_TEMPLATES, concept)[:-1]]
        words = _n_words(parts[0])
        while words < 90:
            clause = self._generic()[:-1]
            clause = clause[0].lower() + clause[1:]
            parts.append(f"{rng.choice(TOO_LONG_CONNECTORS)} {clause}")
            words += _n_words(parts[-1])
        text = "".join(parts) + "."
        self.used_text.add(ids.normalise_text(text))
        return Sent(text, "too_long", concept, noise="too_long")

    def _source_for(self, doc: Doc, pool: list[tuple[Doc, Sent]]) -> Sent | None:
        other_shard = [s for d, s in pool if d.index < doc.index and d.shard != doc.shard]
        earlier = other_shard or [s for d, s in pool if d.index < doc.index]
        return self.rng.choice(earlier) if earlier else None

    def _exact_duplicate(self, doc: Doc, pool: list[tuple[Doc, Sent]]) -> Sent | None:
        source = self._source_for(doc, pool)
        if source is None:
            return None
        text = source.text
        words = text.split(" ")
        if self.rng.random() < 0.25 and len(words) > 2:  # case-only change: same normalised id
            i = self.rng.randint(1, len(words) - 1)
            words[i] = words[i].upper()
            text = " ".join(words)
        return Sent(
            text,
            "exact_duplicate",
            source.concept,
            source.image,
            noise="exact_duplicate",
            source=source,
        )

    def _near_duplicate(self, doc: Doc, pool: list[tuple[Doc, Sent]]) -> Sent | None:
        rng = self.rng
        source = self._source_for(doc, pool)
        if source is None:
            return None
        for _ in range(20):
            words = source.text.split(" ")
            mode = rng.choice(["word", "word", "punct", "word_case"])
            if mode in ("word", "word_case"):
                swappable = [i for i, w in enumerate(words) if w.rstrip(".!?,").lower() in SWAPS]
                if not swappable:
                    mode = "punct"
                else:
                    i = rng.choice(swappable)
                    core = words[i].rstrip(".!?,")
                    repl = rng.choice(SWAPS[core.lower()])
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
                return Sent(
                    text,
                    "near_duplicate",
                    source.concept,
                    source.image,
                    noise="near_duplicate",
                    source=source,
                )
        return None
