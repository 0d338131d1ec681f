"""Names as code: asset keys, asset groups, job names and metric names, defined once.

Assets, checks, the quality report, the pipeline runner and the benchmarks import these instead of
spelling strings, so a renamed asset or metric breaks at import or in a test, not silently in a
report. Every member is a plain `str`, so it can be passed wherever Dagster or DuckDB expects a
plain name. `realsyn_assets_tests/test_house.py` checks that the graph defines exactly these asset
keys and that every metric a stage records is declared here.
"""

from __future__ import annotations


class Name(str):
    """One member of a name table: a `str` with Enum-style `name` (its attribute) and `value`
    (the string itself). Deliberately not an Enum member: Dagster's serialiser rejects Enum
    members (StrEnum included) in asset keys, group names, check keys and metadata labels."""

    name: str

    @property
    def value(self) -> str:
        return str(self)


class _NameTable(type):
    """Metaclass of the name tables: turns each UPPER_CASE string attribute into a `Name`;
    iterating a table yields its members in order, `Table("value")` looks one up."""

    def __new__(mcs, cls_name: str, bases: tuple, namespace: dict):
        for key, value in list(namespace.items()):
            if key.isupper() and isinstance(value, str):
                member = Name(value)
                member.name = key
                namespace[key] = member
        return super().__new__(mcs, cls_name, bases, namespace)

    def __iter__(cls):
        return iter([v for v in vars(cls).values() if isinstance(v, Name)])

    def __len__(cls) -> int:
        return len(list(iter(cls)))

    def __contains__(cls, value: object) -> bool:
        return value in list(iter(cls))

    def __call__(cls, value: str) -> Name:
        for member in cls:
            if member == value:
                return member
        raise ValueError(f"{value!r} is not a {cls.__name__}")


class NameTable(metaclass=_NameTable):
    """Base of every name table below: a namespace of `Name` constants, iterable like an Enum."""


class Asset(NameTable):
    """Every asset key of the graph, in pipeline order."""

    RAW_DOCUMENTS = "raw_documents"
    IMAGE_DOWNLOADS = "image_downloads"
    EXTRACTED_IMAGES = "extracted_images"
    EXTRACTED_SENTENCES = "extracted_sentences"
    BOOTSTRAP_ENCODER = "bootstrap_encoder"
    IMAGE_EMBEDDINGS = "image_embeddings"
    SENTENCE_EMBEDDINGS = "sentence_embeddings"
    IMAGE_DEDUP = "image_dedup"
    IMAGE_CAPTIONER = "image_captioner"
    WORD_STATISTICS = "word_statistics"
    SEMANTIC_FILTER = "semantic_filter"
    SENTENCE_DEDUP = "sentence_dedup"
    SENTENCE_CLUSTERS = "sentence_clusters"
    RETRIEVED_TEXTS = "retrieved_texts"
    SYNTHETIC_TEXTS = "synthetic_texts"
    IMAGE_CLUSTERS = "image_clusters"
    BALANCED_SUBSET = "balanced_subset"
    SUBSET_EXPORT = "subset_export"
    CLIP_CHECKPOINT = "clip_checkpoint"
    CLIP_ABLATIONS = "clip_ablations"
    CLIP_EVALUATION = "clip_evaluation"
    QUALITY_REPORT = "quality_report"


class Group(NameTable):
    """Asset groups: one per paper stage, one module each under `assets/`."""

    INGEST = "ingest"
    EXTRACT = "extract"
    EMBED = "embed"
    FILTER = "filter"
    DEDUP = "dedup"
    RETRIEVE = "retrieve"
    SYNTHESIZE = "synthesize"
    BALANCE = "balance"
    TRAIN = "train"
    QUALITY = "quality"


class Job(NameTable):
    """Jobs of the Definitions: the stages `realsyn run` executes in order (definitions.STAGES,
    derived from the graph), plus the inbox sensor's and the re-clustering job."""

    SHARD_EXTRACT = "shard_extract_job"
    BOOTSTRAP_ENCODER = "bootstrap_encoder_job"
    SHARD_EMBED = "shard_embed_job"
    IMAGE_CAPTIONER = "image_captioner_job"
    WORD_STATISTICS = "word_statistics_job"
    SHARD_SENTENCE_DEDUP = "shard_sentence_dedup_job"
    SENTENCE_CLUSTERS = "sentence_clusters_job"
    SHARD_RETRIEVE = "shard_retrieve_job"
    IMAGE_CLUSTERS = "image_clusters_job"
    SCALE = "scale_job"
    QUALITY_REPORT = "quality_report_job"
    SHARD_INGEST = "shard_ingest_job"
    RECLUSTER_SENTENCES = "recluster_sentences_job"


class Kind(NameTable):
    """The `kinds` tags of assets (the icons on the asset graph): what an asset is stored in or
    computed with."""

    PARQUET = "parquet"
    DUCKDB = "duckdb"
    LANCEDB = "lancedb"
    PYTORCH = "pytorch"
    VLLM = "vllm"
    PYTHON = "python"


# The partition key under which corpus-wide (unpartitioned) assets record their metrics.
CORPUS = "__all__"


# ---- metric names, one class per asset (the keys each asset records in DuckDB and metadata) ----
# Each asset's owner keeps its class complete: every key its asset records, nothing else.
# Keys made at run time from a prefix (e.g. per-round scores) are declared as `*_PREFIX` members.


class ImageEmbeddingsMetrics(NameTable):
    IMAGES_EMBEDDED = "images_embedded"


class SentenceEmbeddingsMetrics(NameTable):
    SENTENCES_EMBEDDED = "sentences_embedded"


class ImageDedupMetrics(NameTable):
    IMAGES_IN = "images_in"
    IMAGES_KEPT = "images_kept"
    IMAGES_REMOVED = "images_removed"
    COMPARED_WITH_EARLIER = "compared_with_earlier"
    SEMANTIC_ENABLED = "semantic_enabled"


class WordStatisticsMetrics(NameTable):
    SHARDS = "shards"
    VOCABULARY = "vocabulary"
    WORDS_TOTAL = "words_total"
    PPL_WINDOW_LOW = "ppl_window_low"
    PPL_WINDOW_HIGH = "ppl_window_high"


class SemanticFilterMetrics(NameTable):
    SENTENCES_IN = "sentences_in"
    SENTENCES_KEPT = "sentences_kept"
    SENTENCES_REJECTED = "sentences_rejected"
    SCORES_FROM_WORD_STATISTICS = "scores_from_word_statistics"
    ENTROPY_MEAN = "entropy_mean"
    PERPLEXITY_MEDIAN = "perplexity_median"


class SentenceDedupMetrics(NameTable):
    SENTENCES_IN = "sentences_in"
    SENTENCES_KEPT = "sentences_kept"
    SENTENCES_REMOVED = "sentences_removed"
    AFTER_SEMANTIC_FILTER = "after_semantic_filter"
    COMPARED_WITH_EARLIER = "compared_with_earlier"
    SEMANTIC_ENABLED = "semantic_enabled"
    SCORES_FROM_WORD_STATISTICS = "scores_from_word_statistics"
    ENTROPY_MEAN = "entropy_mean"
    PERPLEXITY_MEDIAN = "perplexity_median"


class ImageClustersMetrics(NameTable):
    PAIRS_IN = "pairs_in"
    PAIRS_IN_WINDOW = "pairs_in_window"
    WINDOW_LOW = "window_low"
    WINDOW_HIGH = "window_high"
    CLUSTERS = "clusters"
    CLUSTER_GINI = "cluster_gini"
    MAX_CLUSTER_SIZE = "max_cluster_size"
    TRAIN_POINTS = "kmeans_train_points"
    # 1 when the window was calibrated to keep the paper's share of pairs, 0 when it is the
    # paper's own or a configured one (cosine_window_sane's severity depends on it)
    WINDOW_CALIBRATED = "window_calibrated"


class ImageClustersMetadata(NameTable):
    """Metadata-only keys of `image_clusters` (not recorded in DuckDB)."""

    VERSION = "clusters_version"
    ENCODER = "encoder"  # the identity of the encoder whose vectors were clustered


class BalancedSubsetMetrics(NameTable):
    SAMPLES = "samples"
    EXPECTED_SAMPLES = "expected_samples"
    CAP_PER_CLUSTER = "cap_per_cluster"
    CLUSTERS = "clusters"
    CANDIDATE_PAIRS = "candidate_pairs"
    TRAIN_SAMPLES = "train_samples"
    EVAL_SAMPLES = "eval_samples"
    TARGET_SHARE = "target_share"
    ACHIEVED_SHARE = "achieved_share"


class BalancedSubsetMetadata(NameTable):
    """Metadata-only keys of `balanced_subset` (text values; also the keys of selection.json)."""

    CAP_RULE = "cap_rule"
    CLUSTERS_VERSION = "clusters_version"


class SubsetExportMetrics(NameTable):
    SUBSET_ROWS = "subset_rows"
    TRAIN_SAMPLES = "train_samples"
    EVAL_SAMPLES = "eval_samples"
    SKIPPED_ROWS = "skipped_rows"
    TRAIN_SHARDS = "train_shards"
    EVAL_SHARDS = "eval_shards"


class ClipCheckpointMetrics(NameTable):
    SAMPLES = "samples"
    STEPS = "steps"
    SECONDS = "seconds"
    LOSS_FIRST = "loss_first"
    LOSS_LAST = "loss_last"
    # 1 - last/first of the loss relative to chance (ln batch size): what training_lowered_loss
    # compares with clip.MIN_LOSS_DROP
    LOSS_DROP = "loss_drop"
    RESUMED_FROM_STEP = "resumed_from_step"
    PROCESSES = "processes"


class ClipEvaluationMetrics(NameTable):
    EVAL_IMAGES = "eval_images"
    I2T_R_AT_1 = "i2t_R@1"
    I2T_R_AT_5 = "i2t_R@5"
    I2T_R_AT_10 = "i2t_R@10"
    T2I_R_AT_1 = "t2i_R@1"
    T2I_R_AT_5 = "t2i_R@5"
    T2I_R_AT_10 = "t2i_R@10"
    ZERO_SHOT_ACCURACY = "zero_shot_accuracy"
    CHANCE_I2T_R_AT_5 = "chance_i2t_R@5"
    # the untrained model's scores: this prefix + each score above (untrained_i2t_R@1, ...)
    UNTRAINED_PREFIX = "untrained_"
    # the ablation models' scores (clip_ablations): prefix + each score (realistic_only_i2t_R@1)
    REALISTIC_ONLY_PREFIX = "realistic_only_"
    SYNTHETIC_ONLY_PREFIX = "synthetic_only_"
    RANDOM_SAMPLING_PREFIX = "random_sampling_"
    # user sets: prefix + set folder name + "/" + score (captions_set/flickr8k/i2t_R@1), after
    # the model prefix for every model but the RealSyn recipe
    CAPTIONS_SET_PREFIX = "captions_set/"
    CLASSIFICATION_SET_PREFIX = "classification_set/"


class ClipAblationsMetrics(NameTable):
    VARIANTS_TRAINED = "variants_trained"
    # per variant: prefix + a ClipCheckpointMetrics name (realistic_only_samples, ..._loss_last)
    REALISTIC_ONLY_PREFIX = "realistic_only_"
    SYNTHETIC_ONLY_PREFIX = "synthetic_only_"
    RANDOM_SAMPLING_PREFIX = "random_sampling_"


class QualityReportMetadata(NameTable):
    """Metadata keys of quality_report, which records no metrics in DuckDB (hence not a
    `*Metrics` class): the funnels' last counts and, on the demo corpus, the worst shard's
    text1 precision next to the corpus-wide `RetrievedTextsMetrics` gt_* scores."""

    IMAGES_FINAL = "images_final"
    SENTENCES_FINAL = "sentences_final"
    GT_PRECISION_TEXT1_MIN_SHARD = "gt_precision_text1_min_shard"


class RawDocumentsMetrics(NameTable):
    DOCUMENTS_IN = "documents_in"
    DOCUMENTS_KEPT = "documents_kept"
    DOCUMENTS_REJECTED = "documents_rejected"
    TEXT_BLOCKS = "text_blocks"
    IMAGE_SLOTS = "image_slots"
    INVALID_UTF8_LINES = "invalid_utf8_lines"  # lines (parquet rows) with bytes replaced by U+FFFD


class ImageDownloadsMetrics(NameTable):
    URLS = "urls"  # unique http(s) image URLs of the shard (one status row each)
    OK = "ok"
    FAILED = "failed"  # by error kind in the rejection counts
    REQUESTED = "requested"  # fetched in this run; the others came from the resume journal
    IMAGES_PER_S = "images_per_s"  # requested / seconds of this run's download


class ExtractedImagesMetrics(NameTable):
    IMAGES_IN = "images_in"
    IMAGES_KEPT = "images_kept"
    IMAGES_REJECTED = "images_rejected"


class ExtractedSentencesMetrics(NameTable):
    TEXT_BLOCKS = "text_blocks"
    TEXT_BLOCKS_TOO_LONG = "text_blocks_too_long"  # rejected whole (one too_long row each)
    SENTENCES_IN = "sentences_in"
    SENTENCES_KEPT = "sentences_kept"
    SENTENCES_REJECTED = "sentences_rejected"


class RetrievedTextsMetrics(NameTable):
    IMAGES = "images"
    IMAGES_WITH_K_TEXTS = "images_with_k_texts"
    MEAN_TOP1_SCORE = "mean_top1_score"
    PROBE_MARGIN = "probe_margin"
    # recall@k against exact search on a sample of images: `recall_vs_exact(k)`, i.e.
    # RECALL_AT_PREFIX + k + "_vs_exact" (RECALL_AT_3_VS_EXACT at the default k = 3)
    RECALL_AT_PREFIX = "recall_at_"
    RECALL_AT_3_VS_EXACT = "recall_at_3_vs_exact"
    GT_IMAGES_SCORED = "gt_images_scored"
    GT_PRECISION_ALL = "gt_precision_all"
    GT_PRECISION_TEXT1 = "gt_precision_text1"
    GT_PRECISION_TEXT2 = "gt_precision_text2"
    GT_PRECISION_TEXT3 = "gt_precision_text3"
    GT_IN_DOCUMENT_PRECISION_TEXT1 = "gt_in_document_precision_text1"
    # demo ground-truth scores all start with GT_PREFIX; the rank-j precision is
    # GT_PRECISION_TEXT_PREFIX + j
    GT_PREFIX = "gt_"
    GT_PRECISION_TEXT_PREFIX = "gt_precision_text"

    @staticmethod
    def recall_vs_exact(k: int) -> str:
        """The recall metric's name for `k` retrieved texts per image."""
        return f"{RetrievedTextsMetrics.RECALL_AT_PREFIX}{k}_vs_exact"


class SentenceClustersMetrics(NameTable):
    SENTENCES = "sentences"
    CLUSTERS = "clusters"
    ASSIGNED_NOW = "assigned_now"
    FIT_SENTENCES = "fit_sentences"
    MEAN_SIMILARITY = "mean_similarity"
    FIT_MEAN_SIMILARITY = "fit_mean_similarity"
    DRIFT = "drift"
    DRIFT_THRESHOLD = "drift_threshold"  # the configured limit the drift was judged against
    RECLUSTER_DUE = "recluster_due"
    EMPTY_CLUSTERS = "empty_clusters"
    MAX_CLUSTER_SIZE = "max_cluster_size"
    KMEANS_SECONDS = "kmeans_seconds"
    # adaptive probing, when calibrated (probe.json); the recall is named for the default k = 3
    PROBE_MARGIN = "probe_margin"
    CALIBRATION_RECALL_AT_3 = "calibration_recall_at_3"
    CALIBRATION_RECALL_SINGLE_CLUSTER = "calibration_recall_single_cluster"
    MEAN_PROBES = "mean_probes"


class SyntheticTextsMetrics(NameTable):
    """Metrics of `synthetic_texts` per shard. SYN_INVALID_ / CAPTION_INVALID_ + a failure kind
    of `validation.FAILURE_KINDS` count invalid outputs by kind; GT_* are demo-only counts over
    labelled images (the quality report sums them)."""

    IMAGES = "images"
    ROWS_WRITTEN = "rows_written"
    EMPTY_SYN_TEXT = "empty_syn_text"
    TAG_VOCABULARY = "tag_vocabulary"
    USER_TAGS = "user_tags"
    TAG_THRESHOLD = "tag_threshold"
    TAG_CALIBRATION_F1 = "tag_calibration_f1"
    MEAN_TAGS = "mean_tags"
    IMAGES_WITHOUT_TAGS = "images_without_tags"
    MEAN_SYN_SCORE = "mean_syn_score"
    GENERATED_NOW = "generated_now"
    CACHE_HITS = "cache_hits"
    CAPTIONS_GENERATED_NOW = "captions_generated_now"
    CAPTION_CACHE_HITS = "caption_cache_hits"
    TEXTS_PER_SECOND = "texts_per_second"
    TOKENS_MEAN = "tokens_mean"
    TOKENS_P50 = "tokens_p50"
    TOKENS_P95 = "tokens_p95"
    TOKENS_MAX = "tokens_max"
    SYN_INVALID = "syn_invalid"
    SYN_INVALID_SHARE = "syn_invalid_share"
    MAX_INVALID_SHARE = "max_invalid_share"
    CAPTION_INVALID = "caption_invalid"
    FALLBACK = "fallback"
    DROPPED = "dropped"
    SYN_INVALID_PREFIX = "syn_invalid_"
    CAPTION_INVALID_PREFIX = "caption_invalid_"
    GT_PREFIX = "gt_"
    GT_IMAGES_SCORED = "gt_images_scored"
    GT_CAPTION_RIGHT = "gt_caption_right"
    GT_TAGS_RIGHT = "gt_tags_right"
    GT_TEXT1_RIGHT = "gt_text1_right"
    GT_SYN_RIGHT = "gt_syn_right"
    GT_TEXT1_WRONG = "gt_text1_wrong"
    GT_SYN_RIGHT_TEXT1_WRONG = "gt_syn_right_text1_wrong"


class SyntheticTextsMetadata(NameTable):
    """Metadata-only keys of `synthetic_texts` (text values, not recorded in DuckDB)."""

    CAPTIONER = "captioner"
    CAPTIONER_MODEL = "captioner_model"
    GENERATOR = "generator"
    GENERATOR_MODEL = "generator_model"
    PROMPT_VERSION = "prompt_version"
    EXAMPLES = "examples"
    ENCODER = "encoder"  # the identity of the encoder behind tags and scores


class ImageCaptionerMetrics(NameTable):
    """Metrics of `image_captioner` (recorded when the offline captioner is trained).

    GT_* are demo-only: the share of labelled images whose caption names their colour and shape,
    for the trained captioner and for the same decoder with random weights. The metadata-only
    keys are in `ImageCaptionerMetadata`.
    """

    IMAGE_PAIRS = "image_pairs"
    TEXT_PAIRS = "text_pairs"
    VOCABULARY = "vocabulary"
    EPOCHS = "epochs"
    LOSS_FIRST = "loss_first"
    LOSS_LAST = "loss_last"
    SECONDS = "seconds"
    IMAGES_CAPTIONED = "images_captioned"
    DISTINCT_CAPTION_SHARE = "distinct_caption_share"
    GT_IMAGES_SCORED = "gt_images_scored"
    GT_NAMES_CONCEPT = "gt_names_concept"
    GT_RANDOM_NAMES_CONCEPT = "gt_random_names_concept"


class ImageCaptionerMetadata(NameTable):
    """Metadata-only keys of `image_captioner` (not recorded in DuckDB)."""

    BACKEND = "backend"
    MODEL = "model"
    EXAMPLES = "example_captions"
    USED = "used"


class BootstrapEncoderMetrics(NameTable):
    """Metrics of `bootstrap_encoder` (when a configured encoder wins: TRAINED = 0 and the
    CONFIGURED_ / CHANCE_ prefixed scores of that encoder).

    Retrieval scores carry a prefix: BOOTSTRAP_ (trained model), RANDOM_ (random weights),
    IN_DOCUMENT_ (in-document nearest text, demo only); the score names are `top1_same_document`
    and, on the demo corpus, `images_scored`, `precision_all`, `precision_text1..3`. Also
    prefixed: `bootstrap_round{i}_precision_text1` (each round's model but the last, demo only),
    `in_document_round{i}_label_precision` (training texts that describe their image, demo
    only) and the caption benchmark's CAPTIONS_ family (`bootstrap_round(i)` etc. build them).
    """

    PAIRS = "pairs"
    ROUNDS = "rounds"
    STEPS = "steps"
    SECONDS = "seconds"
    LOSS_FIRST = "loss_first"
    LOSS_LAST = "loss_last"
    BOOTSTRAP_PREFIX = "bootstrap_"
    RANDOM_PREFIX = "random_"
    IN_DOCUMENT_PREFIX = "in_document_"
    CAPTIONS_PREFIX = "captions_"
    BOOTSTRAP_TOP1_SAME_DOCUMENT = "bootstrap_top1_same_document"
    BOOTSTRAP_IMAGES_SCORED = "bootstrap_images_scored"
    BOOTSTRAP_PRECISION_ALL = "bootstrap_precision_all"
    BOOTSTRAP_PRECISION_TEXT1 = "bootstrap_precision_text1"
    BOOTSTRAP_PRECISION_TEXT2 = "bootstrap_precision_text2"
    BOOTSTRAP_PRECISION_TEXT3 = "bootstrap_precision_text3"
    RANDOM_TOP1_SAME_DOCUMENT = "random_top1_same_document"
    RANDOM_IMAGES_SCORED = "random_images_scored"
    RANDOM_PRECISION_ALL = "random_precision_all"
    RANDOM_PRECISION_TEXT1 = "random_precision_text1"
    RANDOM_PRECISION_TEXT2 = "random_precision_text2"
    RANDOM_PRECISION_TEXT3 = "random_precision_text3"
    IN_DOCUMENT_PRECISION_TEXT1 = "in_document_precision_text1"
    IN_DOCUMENT_ROUND1_LABEL_PRECISION = "in_document_round1_label_precision"
    # 1 = trained here; 0 = a configured pretrained model or checkpoint is used, and scored:
    # CONFIGURED_ scores of that encoder, CHANCE_ the same scores for a random pick
    TRAINED = "trained"
    CONFIGURED_PREFIX = "configured_"
    CHANCE_PREFIX = "chance_"

    @staticmethod
    def bootstrap_round(i: int) -> str:
        """Ground-truth top-1 precision of the model after round `i` (demo, several rounds)."""
        return f"{BootstrapEncoderMetrics.BOOTSTRAP_PREFIX}round{i}_precision_text1"

    @staticmethod
    def label_precision(i: int) -> str:
        """Share of round `i`'s training texts that describe their image (demo)."""
        return f"{BootstrapEncoderMetrics.IN_DOCUMENT_PREFIX}round{i}_label_precision"
