"""When each asset materializes by itself: the automation policy of the whole graph.

The automation sensor (`realsyn_automation`, on by default) evaluates these conditions every
`interval_seconds` and launches what is due. `POLICY` below says, per asset, which rule applies:

=============  =========================================================================
rule           the asset materializes ...
=============  =========================================================================
``shard``      per shard: when the shard is new (partition missing) or its own upstream
               partition was updated. A corpus-wide upstream that changed does NOT re-run
               old shards (that would redo the corpus for every new shard); a new shard
               waits until such an upstream has taken it in (``semantic_filter`` after
               ``word_statistics``, ``retrieved_texts`` after ``sentence_clusters``).
``corpus``     once, when upstream changed and nothing upstream is missing, running or
               about to run: a batch of new shards triggers one refresh, not one per shard.
``reused``     only when missing (``bootstrap_encoder``, ``image_captioner``): new shards
               are embedded and captioned with the models as they are; retrain them by
               materializing them yourself (then re-run the shards you want re-embedded).
``scale``      user policy for ``balanced_subset``, ``subset_export`` (default ``manual``)
``training``   user policy for ``clip_checkpoint``, ``clip_ablations``, ``clip_evaluation``
               (default ``manual``)
``report``     user policy for ``quality_report`` (default ``on_change``)
=============  =========================================================================

Every automatic request also waits until the blocking checks of its upstream passed, and never
retries a partition whose latest run failed (materialize it yourself once fixed).

A user policy is one of ``manual`` (never automatic), ``on_change`` (like ``corpus``) or
``cron:<expression>`` (on each cron tick, UTC, if upstream changed since the asset was last
built or it is missing). Set it without editing code, in ``<REALSYN_HOME>/automation.yaml``::

    training: "cron:0 3 * * 0"   # retrain Sundays 03:00 UTC when the data changed
    scale: on_change
    interval_seconds: 30

or with environment variables (they win over the file): ``REALSYN_AUTOMATION_TRAINING``,
``REALSYN_AUTOMATION_SCALE``, ``REALSYN_AUTOMATION_REPORT``, ``REALSYN_AUTOMATION_INTERVAL``.
The code location reads them when it loads (restart `dg dev` or reload the location).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from realsyn_assets.names import Asset
from realsyn_assets.resources.home import resolve_home
from realsyn_assets.stages import SHARD, Node

AC = dg.AutomationCondition

SHARD_RULE = "shard"
CORPUS = "corpus"
REUSED = "reused"
SCALE = "scale"
TRAINING = "training"
REPORT = "report"
USER_POLICIES = (SCALE, TRAINING, REPORT)

MANUAL = "manual"
ON_CHANGE = "on_change"
CRON = "cron:"

# The rule of every asset, in pipeline order. A new asset must be added here (a test checks it).
POLICY: dict[str, str] = {
    Asset.RAW_DOCUMENTS: SHARD_RULE,
    Asset.IMAGE_DOWNLOADS: SHARD_RULE,
    Asset.EXTRACTED_IMAGES: SHARD_RULE,
    Asset.EXTRACTED_SENTENCES: SHARD_RULE,
    Asset.BOOTSTRAP_ENCODER: REUSED,
    Asset.IMAGE_EMBEDDINGS: SHARD_RULE,
    Asset.SENTENCE_EMBEDDINGS: SHARD_RULE,
    Asset.IMAGE_DEDUP: SHARD_RULE,
    Asset.IMAGE_CAPTIONER: REUSED,
    Asset.WORD_STATISTICS: CORPUS,
    Asset.SEMANTIC_FILTER: SHARD_RULE,
    Asset.SENTENCE_DEDUP: SHARD_RULE,
    Asset.SENTENCE_CLUSTERS: CORPUS,
    Asset.RETRIEVED_TEXTS: SHARD_RULE,
    Asset.SYNTHETIC_TEXTS: SHARD_RULE,
    Asset.IMAGE_CLUSTERS: CORPUS,
    Asset.BALANCED_SUBSET: SCALE,
    Asset.SUBSET_EXPORT: SCALE,
    Asset.CLIP_CHECKPOINT: TRAINING,
    Asset.CLIP_ABLATIONS: TRAINING,
    Asset.CLIP_EVALUATION: TRAINING,
    Asset.QUALITY_REPORT: REPORT,
}

DEFAULTS: dict[str, str] = {SCALE: MANUAL, TRAINING: MANUAL, REPORT: ON_CHANGE}
DEFAULT_INTERVAL_SECONDS = 30
POLICY_FILE = "automation.yaml"
ENV_PREFIX = "REALSYN_AUTOMATION_"


@dataclass(frozen=True)
class Settings:
    """The user-set part of the policy: one of manual / on_change / cron:<expr> per user policy,
    and how often the sensors look."""

    policies: Mapping[str, str]
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS

    def rule(self, asset: str) -> str:
        """The effective rule of an asset: shard, corpus, reused, manual, on_change or cron:..."""
        rule = POLICY[asset]
        return self.policies[rule] if rule in USER_POLICIES else rule


def _valid_cron(expression: str) -> bool:
    try:  # Dagster's own validation of a 5-field cron expression
        dg.ScheduleDefinition(name="cron_check", cron_schedule=expression, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


def _check_policy(name: str, value: str, source: str) -> str:
    value = str(value).strip()
    if value in (MANUAL, ON_CHANGE):
        return value
    if value.startswith(CRON) and _valid_cron(value[len(CRON) :].strip()):
        return CRON + value[len(CRON) :].strip()
    raise ValueError(
        f"{source}: automation policy {name}={value!r} is not one of "
        f"'{MANUAL}', '{ON_CHANGE}' or 'cron:<cron expression>'"
    )


def load_settings(
    home: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The policy of a home: defaults, then `<home>/automation.yaml`, then the environment."""
    environ = os.environ if environ is None else environ
    path = Path(resolve_home(home)) / POLICY_FILE
    raw: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping such as 'training: manual'")
        unknown = set(loaded) - {*USER_POLICIES, "interval_seconds"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        raw = {key: (value, str(path)) for key, value in loaded.items()}
    for key in (*USER_POLICIES, "interval_seconds"):
        env = ENV_PREFIX + ("INTERVAL" if key == "interval_seconds" else key.upper())
        if environ.get(env):
            raw[key] = (environ[env], env)
    policies = {
        name: _check_policy(name, *raw.get(name, (DEFAULTS[name], "default")))
        for name in USER_POLICIES
    }
    interval, source = raw.get("interval_seconds", (DEFAULT_INTERVAL_SECONDS, "default"))
    try:
        interval = int(interval)
    except (TypeError, ValueError):
        interval = 0
    if interval < 1:
        raise ValueError(f"{source}: interval_seconds must be a positive integer")
    return Settings(policies, interval)


# ---- the conditions, built from Dagster's own operands ----------------------------------------


def _active() -> AC:
    """Running or queued in a run or a backfill."""
    return AC.in_progress()


def _startable() -> AC:
    """Missing since a new partition appeared (or when the sensor first looked), and not
    because its latest run failed (a failure waits for a person). Edge-triggered like Dagster's
    `eager()`: right after a materialization Dagster's partition status can briefly read
    "missing" but no longer "in progress", and a plain `missing` would request it again."""
    handled = AC.newly_requested() | AC.newly_updated()
    appeared = (AC.newly_missing() | AC.initial_evaluation()).since(handled)
    return (appeared & AC.missing() & ~AC.execution_failed()).with_label("missing, not failed")


def _blocked() -> AC:
    """A blocking check of the latest materialization failed (or has not run on it). A dep
    requested on this tick is fine: in that run a failing blocking check stops its children.
    (Dagster's `all_deps_blocking_checks_passed` does not see checks that ride along with a
    requested asset, and lets a corpus-wide asset through when any one shard passed.)"""
    return (
        AC.any_checks_match(~AC.check_passed(), blocking_only=True) & ~AC.will_be_requested()
    ).with_label("blocking check not passed")


class Builder:
    """The automation condition of every asset of a graph (nodes from `stages.asset_nodes`)."""

    def __init__(self, nodes: Mapping[str, Node], settings: Settings):
        self.nodes = nodes
        self.settings = settings

    def rule(self, key: str) -> str:
        return self.settings.rule(key)

    def _automatic(self, key: str) -> bool:
        return self.rule(key) != MANUAL

    def pending(self, key: str, nested: bool = False) -> AC | None:
        """True while an upstream update that this asset reacts to is not yet handled (requested
        or materialized since). Per shard: only its own shard's upstream counts.

        `nested`: evaluated as another asset's dep. There Dagster's `initial_evaluation` is true
        on every tick when the partitioning differs from the evaluated asset's, which would
        hide the pending update, so the nested form resets on requested/updated only."""
        rule = self.rule(key)
        if rule in (REUSED, MANUAL):
            return None
        if rule == SHARD_RULE:
            same = self.nodes[key].same_partition_parents
            if not same:
                return None
            updated = (
                AC.newly_updated() & ~AC.executed_with_root_target()
            ) | AC.will_be_requested()
            trigger = AC.any_deps_match(updated).allow(dg.AssetSelection.assets(*sorted(same)))
            label = "own shard's upstream updated"
        else:
            updated = AC.newly_updated() & ~AC.executed_with_root_target()
            trigger, label = AC.any_deps_match(updated), "upstream updated"
        if nested:
            return trigger.since(AC.newly_requested() | AC.newly_updated()).with_label(label)
        return trigger.since_last_handled().with_label(label)

    def _not_done(self, key: str) -> AC:
        """The dep itself is not in its final state for this tick (leaving out
        `will_be_requested`, which the caller adds where a same-run chain is impossible)."""
        parts = [_active()]
        rule = self.rule(key)
        if rule != MANUAL:
            parts.insert(0, AC.missing())
        pending = self.pending(key, nested=True)
        if pending is not None:
            parts.append(pending)
        condition = parts[0]
        for part in parts[1:]:
            condition = condition | part
        return condition

    def unsettled(self, root: str, dep: str) -> AC:
        """True while `dep` is not yet ready for `root` to read."""
        condition = self._not_done(dep)
        if self.rule(dep) not in (SHARD_RULE, REUSED, MANUAL):
            # a corpus-wide or policy dep is also unready while ITS upstream is still changing
            condition = condition | AC.execution_failed()
            for grand in sorted(self.nodes[dep].parents):
                condition = condition | AC.any_deps_match(
                    self._not_done(grand) | AC.will_be_requested()
                ).allow(dg.AssetSelection.assets(grand))
        if dep in self.nodes[root].same_partition_parents:
            # same partition: may run earlier in the same run, so a request this tick is fine
            return condition & ~AC.will_be_requested()
        return condition | AC.will_be_requested()

    def gate(self, key: str) -> AC:
        """Nothing upstream missing, running, about to run or due; blocking checks passed."""
        deps = sorted(self.nodes[key].parents)
        condition = ~_active() & ~AC.any_deps_match(_blocked()).with_label("upstream blocked")
        for dep in deps:
            not_ready = AC.any_deps_match(self.unsettled(key, dep)).allow(
                dg.AssetSelection.assets(dep)
            )
            condition = condition & ~not_ready.with_label(f"{dep} not ready")
        needed = [d for d in deps if self._automatic(d)]
        if needed and self.nodes[key].partitions != SHARD:
            # a corpus-wide asset needs something to read (no shards yet: wait)
            condition = condition & AC.all_deps_match(~AC.missing()).allow(
                dg.AssetSelection.assets(*needed)
            ).with_label("upstream present")
        return condition.with_label("upstream settled")

    def condition(self, key: str) -> AC | None:
        rule = self.rule(key)
        if rule == MANUAL:
            return None
        pending = self.pending(key)
        trigger = _startable() if pending is None else (_startable() | pending)
        if rule == REUSED:  # a missing model is built once its upstream has arrived
            updated = AC.any_deps_match(AC.newly_updated()).since_last_handled()
            trigger = trigger | (AC.missing() & updated).with_label("missing, upstream arrived")
        if rule.startswith(CRON):
            cron = rule[len(CRON) :]
            trigger = AC.cron_tick_passed(cron).since_last_handled() & trigger
        group = POLICY[key]
        label = f"realsyn {group} policy: {rule}" if group in USER_POLICIES else f"realsyn: {rule}"
        return (trigger & self.gate(key)).with_label(label)

    def conditions(self) -> dict[str, AC | None]:
        missing = set(self.nodes) - set(POLICY)
        if missing:
            raise ValueError(f"assets without an automation rule in automation.POLICY: {missing}")
        return {key: self.condition(key) for key in self.nodes}


def conditions(nodes: Mapping[str, Node], settings: Settings | None = None) -> dict[str, Any]:
    """asset key -> its AutomationCondition (None: manual only)."""
    return Builder(nodes, settings or load_settings()).conditions()


def apply(
    assets: list[dg.AssetsDefinition], nodes: Mapping[str, Node], settings: Settings | None = None
) -> list[dg.AssetsDefinition]:
    """The asset definitions with the policy's automation conditions set."""
    table = conditions(nodes, settings)

    def with_condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(automation_condition=table[spec.key.to_user_string()])

    return [assets_def.map_asset_specs(with_condition) for assets_def in assets]


def automation_sensor(settings: Settings | None = None) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions; running as soon as the code location loads."""
    settings = settings or load_settings()
    return dg.AutomationConditionSensorDefinition(
        "realsyn_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.interval_seconds,
        description="Materializes what automation.POLICY says is due: new shards through the "
        "per-shard chain, corpus-wide assets once their upstream settled, user policies "
        "(<home>/automation.yaml) for subsets, training and the report.",
    )
