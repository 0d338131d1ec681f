"""Demo corpus vocabulary: concepts (colour x shape), scenes, sentence templates, noise budgets."""

from __future__ import annotations

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
COLOUR_WORDS: dict[str, list[str]] = {
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
SHAPE_WORDS: dict[str, list[tuple[str, str]]] = {
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
SCENE_PHRASES: dict[str, list[str]] = {
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
VERBS: list[tuple[str, str, str, str]] = [
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
    for forms in VERBS
    for form in forms
    for word in form.split()
    if word not in {"out", "is", "are", "be"}
)
COUNT_WORDS: dict[int, list[str]] = {
    1: ["a single", "one", "a lone"],
    2: ["two", "a pair of"],
    3: ["three"],
    4: ["four"],
    5: ["five"],
}

# Templates. Fields: cnt (count phrase), col, noun (number agrees with count), v (verb agreeing),
# ing, base, scene. The first letter is capitalised afterwards.
IMAGE_TEMPLATES = [
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
FOLLOW_TEMPLATES = [
    "Notice how the {col} {noun} {v} {scene}.",
    "You can almost watch the {col} {noun} {base} {scene}.",
    "Even from far away, the {col} {noun} {v} {scene}.",
    "Every {col} {noun1} seems to {base} {scene}.",
    "In the afternoon light the {col} {noun} {v} {scene}.",
]
CROSS_TEMPLATES = [
    "Elsewhere on this page, {cnt} {col} {noun} {v} {scene}.",
    "As the other photo here shows, {cnt} {col} {noun} {v} {scene}.",
    "Scroll through this page and you will find {cnt} {col} {noun} {ing} {scene}.",
    "In another picture on this page, {cnt} {col} {noun} {v} {scene}.",
]
OTHER_TEMPLATES = [
    "Last summer we also saw {cnt} {col} {noun} {ing} {scene}.",
    "Readers often send us photos where {cnt} {col} {noun} {v} {scene}.",
    "In a future post, we will show {cnt} {col} {noun} {ing} {scene}.",
    "A friend once photographed {cnt} {col} {noun} {ing} {scene}.",
    "Next month we hope to capture {cnt} {col} {noun} {ing} {scene}.",
]
TITLE_TEMPLATES_2 = [
    "A gallery of {col} {noun} and {col2} {noun2}.", "Notes on {col} {noun} and {col2} {noun2}.",
    "Our week with {col} {noun} and {col2} {noun2}.", "Comparing {col} {noun} with {col2} {noun2}.",
]
TITLE_TEMPLATES_1 = [
    "Why we love {col} {noun}!", "Spotting {col} {noun} {scene}.",
    "How do you photograph {col} {noun}?", "The quiet charm of {col} {noun}.",
    "Everything about {col} {noun}.",
]
GENERIC_SUBJECTS = [
    "our editor", "a local artist", "the museum guide", "my neighbour", "the photography club",
    "our youngest reader", "a visiting teacher", "the gallery owner", "our small team",
    "a retired sailor", "the café owner", "a curious student", "my grandmother", "the night guard",
]
GENERIC_VERBS = [
    "photographed", "described", "collected", "sketched", "arranged", "discussed", "catalogued",
    "visited", "painted", "recorded", "admired", "printed", "mapped", "restored",
]
GENERIC_OBJECTS = [
    "the old harbour", "a quiet village plaza", "hundreds of postcards", "the market stalls",
    "an abandoned lighthouse", "the morning crowds", "a row of wooden boats", "the city library",
    "several paper lanterns", "the mountain trail", "a stack of vintage maps",
    "the botanical garden", "the railway station", "a pile of handwritten letters",
]
GENERIC_TIMES = [
    "last spring", "every weekend", "before sunrise", "during the summer festival",
    "after a long stretch of rain", "on a windy afternoon", "in early autumn",
    "during the holiday season", "just before closing time", "on a foggy morning",
    "late in the evening", "during the winter break",
]
GENERIC_TEMPLATES = [
    "{Subj} {verb} {obj} {time}.", "{Time}, {subj} {verb} {obj}.",
    "Many readers asked how {subj} {verb} {obj} {time}.",
    "We still remember how {subj} {verb} {obj} {time}.",
    "It took a while, but {subj} finally {verb} {obj} {time}.",
    "Nobody expected that {subj} {verb} {obj} {time}.",
]
TOO_LONG_CONNECTORS = [
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
EMOJI = ["😍", "🌊", "⭐", "🔥", "👍", "🎉", "😂", "❤️", "🌈", "☀️", "🙌", "✨", "📸", "😎"]
DOMAINS = [
    "example.com", "example.org", "shapes.example", "photo-blog.example.net", "gallery.example",
    "www.example.net", "pictures.example.com",
]
SLUG_WORDS = [
    "gallery", "photos", "shapes", "colour", "weekend", "story", "post", "blog", "album", "trip",
]
URL_TEMPLATES_CONCEPT = [
    "More photos of {col} {noun} are available at {url}.",
    "Visit {url} to see {cnt} {col} {noun} {ing} {scene}.",
    "We found {cnt} {col} {noun} {ing} {scene} on {url} yesterday.",
]
URL_TEMPLATES_PLAIN = [
    "Read the full story at {url}.", "Check out {url} for the complete gallery.",
    "Source: {url} with permission.", "Download the printable version from {url} today.",
]

# fmt: on
# One-word swaps that keep the meaning: used for near-duplicate sentences.
SWAPS: dict[str, list[str]] = {}
for _words in COLOUR_WORDS.values():
    for _w in _words:
        SWAPS[_w] = [x for x in _words if x != _w]
for _pairs in SHAPE_WORDS.values():
    _single = [p for p in _pairs if " " not in p[0]]
    for _sg, _pl in _single:
        SWAPS[_sg] = [s for s, _ in _single if s != _sg]
        SWAPS[_pl] = [p for _, p in _single if p != _pl]
SWAPS.update(
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
SWAPS = {word: alternatives for word, alternatives in SWAPS.items() if alternatives}

# --------------------------------------------------------------------------------------------
# Noise budgets (fractions of image slots / sentence occurrences)
# --------------------------------------------------------------------------------------------

IMAGE_NOISE_FRACTIONS = {
    "exact_duplicate": 0.06,
    "near_duplicate": 0.055,
    "tiny": 0.05,
    "extreme_aspect": 0.045,
    "corrupt": 0.045,
    "png": 0.035,  # not noise: normal images in PNG (palette / RGBA) to exercise decoding
}
SENTENCE_NOISE_FRACTIONS = {
    "boilerplate": 0.05,
    "url": 0.045,
    "emoji": 0.045,
    "too_short": 0.045,
    "too_long": 0.04,
    "exact_duplicate": 0.05,
    "near_duplicate": 0.05,
}
IMAGE_NOISE_CLASSES = ("tiny", "extreme_aspect", "corrupt", "exact_duplicate", "near_duplicate")
SENTENCE_NOISE_CLASSES = tuple(SENTENCE_NOISE_FRACTIONS)


def noise_class(tag: str | None) -> str | None:
    """``near_duplicate_of:<id>`` -> ``near_duplicate``; other tags unchanged."""
    if tag is None:
        return None
    base = tag.split(":", 1)[0]
    return base[: -len("_of")] if base.endswith("_of") else base


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
