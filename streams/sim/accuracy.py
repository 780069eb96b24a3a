"""The engine measured against simulator ground truth: costs and per-kind precision and recall."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from projections import schema
from projections.engine import RowBatch
from projections.intake import Intake
from projections.journeys import JourneyModel
from streams.common.engines import EngineKind, journey_engine
from streams.sim.simulator import Simulation

_INSTANCE = schema.JOURNEY_INSTANCES.column_names
_DEVIATION = schema.DEVIATIONS.column_names


@dataclass(slots=True)
class Accuracy:
    """How the engine's results compare with what the simulator injected."""

    instances_truth: int = 0
    instances_found: int = 0
    cost_equal: int = 0
    cost_lower: int = 0  # a cheaper explanation than the injected edits exists (allowed)
    cost_higher: int = 0  # would mean the engine is not optimal: must be 0
    status_equal: int = 0
    true_positive: Counter[str] = field(default_factory=Counter)
    false_positive: Counter[str] = field(default_factory=Counter)
    false_negative: Counter[str] = field(default_factory=Counter)

    def precision(self, kind: str) -> float:
        """Share of reported deviations of this kind that were injected."""
        found = self.true_positive[kind] + self.false_positive[kind]
        return self.true_positive[kind] / found if found else 1.0

    def recall(self, kind: str) -> float:
        """Share of injected deviations of this kind that were reported."""
        injected = self.true_positive[kind] + self.false_negative[kind]
        return self.true_positive[kind] / injected if injected else 1.0

    def kinds(self) -> list[str]:
        """Every deviation kind seen in truth or results."""
        return sorted(set(self.true_positive) | set(self.false_positive) | set(self.false_negative))


def latest_rows(batch: RowBatch) -> tuple[dict[str, dict[str, object]], dict[str, list[dict[str, object]]]]:
    """The live instance rows and their live deviations, as the projections would read with FINAL."""
    instances: dict[str, dict[str, object]] = {}
    for row in batch.rows[schema.JOURNEY_INSTANCES.name]:
        record = dict(zip(_INSTANCE, row, strict=True))
        key = str(record["instance_id"])
        if key in instances and int(str(instances[key]["version"])) > int(str(record["version"])):
            continue
        instances[key] = record
    deviations: dict[tuple[str, int], dict[str, object]] = {}
    for row in batch.rows[schema.DEVIATIONS.name]:
        record = dict(zip(_DEVIATION, row, strict=True))
        key2 = (str(record["instance_id"]), int(str(record["idx"])))
        if key2 in deviations and int(str(deviations[key2]["version"])) > int(str(record["version"])):
            continue
        deviations[key2] = record
    by_instance: dict[str, list[dict[str, object]]] = defaultdict(list)
    for (instance_id, _), record in sorted(deviations.items()):
        if not record["is_deleted"]:
            by_instance[instance_id].append(record)
    live = {key: record for key, record in instances.items() if not record["is_deleted"]}
    return live, by_instance


def run_in_memory(
    model: JourneyModel, lines: list[bytes], drain_every: int = 10_000, engine_kind: EngineKind = "python"
) -> RowBatch:
    """All rows the engine writes for these lines, drained periodically as a runner would (the
    Python reference unless another engine is asked for)."""
    engine = journey_engine(model, "live", engine_kind)
    intake = Intake(engine)
    batch = RowBatch()
    for count, line in enumerate(lines, start=1):
        intake.offer(line, "memory", count)  # rejections are only counted: no store to quarantine to
        if count % drain_every == 0:
            batch.extend(engine.drain())
    batch.extend(engine.drain())
    return batch


def score(simulation: Simulation, batch: RowBatch) -> Accuracy:
    """Compare rows with the truth: deviations are matched per instance by kind (and count)."""
    instances, deviations = latest_rows(batch)
    result = Accuracy(instances_truth=len(simulation.truth))
    for truth in simulation.truth:
        row = instances.get(truth.instance_id)
        if row is None:
            continue
        result.instances_found += 1
        cost, expected = int(str(row["cost"])), truth.cost()
        if cost == expected:
            result.cost_equal += 1
        elif cost < expected:
            result.cost_lower += 1
        else:
            result.cost_higher += 1
        result.status_equal += row["status"] == truth.expected_status
        found = Counter(str(d["kind"]) for d in deviations.get(truth.instance_id, []))
        injected = Counter(str(d["kind"]) for d in truth.deviations if d["observable"])
        for kind in set(found) | set(injected):
            result.true_positive[kind] += min(found[kind], injected[kind])
            result.false_positive[kind] += max(0, found[kind] - injected[kind])
            result.false_negative[kind] += max(0, injected[kind] - found[kind])
    return result
