"""What differs between two scenarios, from what was read of each: conformance, deviations, friction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---- plain results of the queries, per scenario -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScenarioFigures:
    """What compare reads of one scenario (query rows as returned)."""

    name: str
    conformance: list[tuple[Any, ...]]  # rows of streams.replay.compare.CONFORMANCE_SQL
    deviations: list[tuple[Any, ...]]  # rows of DEVIATIONS_SQL
    friction: list[tuple[Any, ...]]  # rows of FRICTION_SQL
    alerts: list[tuple[Any, ...]] = field(default_factory=list)  # (touchpoint, alerts)
    quarantined: int = 0


# ---- the comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conformance:
    """Conformance of one persona's journey in one scenario."""

    versions: tuple[int, ...]
    instances: int
    conformant: int
    mean_fitness: float
    completed: int
    abandoned: int

    @property
    def rate(self) -> float:
        """Share of instances aligned at zero cost."""
        return self.conformant / self.instances if self.instances else 0.0


NO_CONFORMANCE = Conformance((), 0, 0, 0.0, 0, 0)


@dataclass(frozen=True, slots=True)
class ConformanceChange:
    """A persona's journey (by id, any version) in both scenarios."""

    persona: str
    journey: str
    base: Conformance
    other: Conformance

    @property
    def changed(self) -> bool:
        """Whether anything an analyst reads here differs (fitness means up to float summation order)."""
        b, s = self.base, self.other
        same_counts = (b.versions, b.instances, b.conformant, b.completed, b.abandoned) == (
            s.versions, s.instances, s.conformant, s.completed, s.abandoned
        )  # fmt: skip
        return not same_counts or abs(b.mean_fitness - s.mean_fitness) > 1e-9


@dataclass(frozen=True, slots=True)
class DeviationChange:
    """Deviations of one kind at one step and touchpoint, per scenario."""

    persona: str
    kind: str
    step: str
    touchpoint: str
    base: int
    other: int
    base_customers: int
    other_customers: int

    @property
    def delta(self) -> int:
        """Scenario minus base."""
        return self.other - self.base

    @property
    def status(self) -> str:
        """appeared, disappeared, more, fewer or same."""
        if self.base == 0 and self.other > 0:
            return "appeared"
        if self.other == 0 and self.base > 0:
            return "disappeared"
        if self.delta:
            return "more" if self.delta > 0 else "fewer"
        return "same" if self.base_customers == self.other_customers else "customers changed"


@dataclass(frozen=True, slots=True)
class FrictionChange:
    """Friction signals pointing at one touchpoint, per scenario."""

    touchpoint: str
    owner_team: str
    base_signals: int
    other_signals: int
    base_weight: float
    other_weight: float
    base_customers: int
    other_customers: int

    @property
    def changed(self) -> bool:
        """Whether signals, weight or customers differ."""
        return (
            self.base_signals != self.other_signals
            or round(self.base_weight, 6) != round(self.other_weight, 6)
            or self.base_customers != self.other_customers
        )


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Alerts raised for one touchpoint, per scenario."""

    touchpoint: str
    base: int
    other: int


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One journey instance of a sampled customer, as the report shows it."""

    instance_id: str
    journey: str
    status: str
    cost: int
    fitness: float
    path: tuple[str, ...]
    deviations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """A sampled customer whose instances differ: both sides' instances in time order."""

    customer_id: str
    base: tuple[InstanceView, ...]
    other: tuple[InstanceView, ...]


@dataclass(slots=True)
class InstanceChanges:
    """Customers and instances whose status, cost or path differ between the scenarios."""

    instances: int = 0
    customers: int = 0
    customers_changed: int = 0
    status_changed: int = 0
    cost_up: int = 0
    cost_down: int = 0
    only_base: int = 0
    only_other: int = 0
    fitness_gain: float = 0.0  # summed over instances present on both sides
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    cost_deltas: dict[int, int] = field(default_factory=dict)
    sample: list[CustomerChange] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Instances that differ in any way (or exist on one side only)."""
        return self.status_changed + self.cost_up + self.cost_down + self.only_base + self.only_other


@dataclass(frozen=True, slots=True)
class TableIdentity:
    """Rows of one table found in one scenario and not the other (ignoring scenario and versions),
    and for a table with such rows, per column: rows whose value in that column differs."""

    table: str
    only_base: int
    only_other: int
    columns: tuple[tuple[str, int], ...] = ()  # (column, rows whose value differs), most first


@dataclass(slots=True)
class Comparison:
    """Everything compare reports about BASE vs SCENARIO."""

    base: str
    other: str
    conformance: list[ConformanceChange]
    deviations: list[DeviationChange]
    friction: list[FrictionChange]
    alerts: list[AlertChange] | None  # None: no alerts table
    instances: InstanceChanges
    tables: list[TableIdentity]
    quarantined: tuple[int, int]

    @property
    def differences(self) -> int:
        """Count of differing items over the projections (0: the scenarios say the same thing).

        Alerts are shown but not counted: live alerts fired in arrival order, a replay's would-be
        alerts are judged in event-time order, so they may differ where the projections do not.
        """
        return (
            sum(change.changed for change in self.conformance)
            + sum(change.status != "same" for change in self.deviations)
            + sum(change.changed for change in self.friction)
            + self.instances.changed
            + sum(table.only_base + table.only_other for table in self.tables)
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every section."""
        return {
            "base": self.base,
            "scenario": self.other,
            "differences": self.differences,
            "conformance": [
                {
                    "persona": c.persona,
                    "journey": c.journey,
                    **{
                        side: {
                            "versions": list(value.versions),
                            "instances": value.instances,
                            "conformance_rate": round(value.rate, 4),
                            "mean_fitness": round(value.mean_fitness, 4),
                            "completed": value.completed,
                            "abandoned": value.abandoned,
                        }
                        for side, value in (("base", c.base), ("scenario", c.other))
                    },
                }
                for c in self.conformance
            ],
            "deviations": [
                {
                    "persona": d.persona,
                    "kind": d.kind,
                    "step": d.step,
                    "touchpoint": d.touchpoint,
                    "base": d.base,
                    "scenario": d.other,
                    "status": d.status,
                    "base_customers": d.base_customers,
                    "scenario_customers": d.other_customers,
                }
                for d in self.deviations
                if d.status != "same"
            ],
            "friction": [
                {
                    "touchpoint": f.touchpoint,
                    "owner_team": f.owner_team,
                    "base_signals": f.base_signals,
                    "scenario_signals": f.other_signals,
                    "base_weight": round(f.base_weight, 3),
                    "scenario_weight": round(f.other_weight, 3),
                }
                for f in self.friction
            ],
            "alerts": None
            if self.alerts is None
            else [{"touchpoint": a.touchpoint, "base": a.base, "scenario": a.other} for a in self.alerts],
            "customers": {
                "customers": self.instances.customers,
                "customers_changed": self.instances.customers_changed,
                "instances": self.instances.instances,
                "status_changed": self.instances.status_changed,
                "cost_up": self.instances.cost_up,
                "cost_down": self.instances.cost_down,
                "only_base": self.instances.only_base,
                "only_scenario": self.instances.only_other,
                "transitions": [
                    {"base": b, "scenario": s, "instances": n}
                    for (b, s), n in sorted(self.instances.transitions.items())
                ],
                "cost_deltas": {str(k): v for k, v in sorted(self.instances.cost_deltas.items())},
                "sample": [
                    {
                        "customer_id": c.customer_id,
                        "base": [_instance_dict(i) for i in c.base],
                        "scenario": [_instance_dict(i) for i in c.other],
                    }
                    for c in self.instances.sample
                ],
            },
            "tables": [
                {
                    "table": t.table,
                    "only_base": t.only_base,
                    "only_scenario": t.only_other,
                    "columns": dict(t.columns),
                }
                for t in self.tables
            ],
            "quarantined": {"base": self.quarantined[0], "scenario": self.quarantined[1]},
        }


def _instance_dict(view: InstanceView) -> dict[str, Any]:
    return {
        "instance_id": view.instance_id,
        "journey": view.journey,
        "status": view.status,
        "cost": view.cost,
        "fitness": round(view.fitness, 4),
        "path": list(view.path),
        "deviations": list(view.deviations),
    }


# ---- pure comparisons of query rows -----------------------------------------------------------------


def compare_conformance(
    base: Iterable[Sequence[Any]], other: Iterable[Sequence[Any]]
) -> list[ConformanceChange]:
    """Pair CONFORMANCE_SQL rows by persona and journey id (versions may differ)."""

    def index(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], Conformance]:
        return {
            (str(r[0]), str(r[1])): Conformance(
                tuple(int(v) for v in r[2]), int(r[3]), int(r[4]), float(r[5]), int(r[6]), int(r[7])
            )
            for r in rows
        }

    left, right = index(base), index(other)
    return [
        ConformanceChange(key[0], key[1], left.get(key, NO_CONFORMANCE), right.get(key, NO_CONFORMANCE))
        for key in sorted(left.keys() | right.keys())
    ]


def compare_deviations(
    base: Iterable[Sequence[Any]], other: Iterable[Sequence[Any]]
) -> list[DeviationChange]:
    """Pair DEVIATIONS_SQL rows by persona, kind, step and touchpoint; largest changes first."""

    def index(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str, str, str], tuple[int, int]]:
        return {(str(r[0]), str(r[1]), str(r[2]), str(r[3])): (int(r[4]), int(r[5])) for r in rows}

    left, right = index(base), index(other)
    changes = []
    for key in left.keys() | right.keys():
        (count_b, customers_b), (count_s, customers_s) = left.get(key, (0, 0)), right.get(key, (0, 0))
        changes.append(DeviationChange(*key, count_b, count_s, customers_b, customers_s))
    return sorted(changes, key=lambda c: (-abs(c.delta), c.persona, c.kind, c.step, c.touchpoint))


def compare_friction(base: Iterable[Sequence[Any]], other: Iterable[Sequence[Any]]) -> list[FrictionChange]:
    """Pair FRICTION_SQL rows by touchpoint; heaviest (in either scenario) first."""
    empty = ("", "", 0, 0.0, 0)
    left = {str(r[0]): r for r in base}
    right = {str(r[0]): r for r in other}
    changes = []
    for touchpoint in left.keys() | right.keys():
        b, s = left.get(touchpoint, empty), right.get(touchpoint, empty)
        changes.append(
            FrictionChange(
                touchpoint, str(s[1] or b[1]), int(b[2]), int(s[2]), float(b[3]), float(s[3]),
                int(b[4]), int(s[4]),
            )
        )  # fmt: skip
    return sorted(changes, key=lambda c: (-max(c.base_weight, c.other_weight), c.touchpoint))


def compare_alerts(base: Iterable[Sequence[Any]], other: Iterable[Sequence[Any]]) -> list[AlertChange]:
    """Pair (touchpoint, alerts) rows by touchpoint."""
    left = {str(r[0]): int(r[1]) for r in base}
    right = {str(r[0]): int(r[1]) for r in other}
    keys = sorted(left.keys() | right.keys(), key=lambda k: (-max(left.get(k, 0), right.get(k, 0)), k))
    return [AlertChange(key, left.get(key, 0), right.get(key, 0)) for key in keys]


def customer_changes(rows: Iterable[Sequence[Any]], base: str, other: str) -> list[CustomerChange]:
    """Group CUSTOMER_SQL rows into one CustomerChange per customer, both sides in time order."""
    grouped: dict[str, dict[str, list[InstanceView]]] = {}
    for scenario, customer, instance, journey, status, cost, fitness, path, _, kinds in rows:
        sides = grouped.setdefault(str(customer), {base: [], other: []})
        view = InstanceView(
            str(instance), str(journey), str(status), int(cost), float(fitness),
            tuple(path), tuple(kinds or ()),
        )  # fmt: skip
        sides.setdefault(str(scenario), []).append(view)
    return [
        CustomerChange(customer, tuple(sides[base]), tuple(sides[other]))
        for customer, sides in grouped.items()
    ]


def compare_figures(
    base: ScenarioFigures,
    other: ScenarioFigures,
    instances: InstanceChanges,
    tables: list[TableIdentity],
    *,
    alerts_table: bool,
) -> Comparison:
    """The comparison of two scenarios from what was read of each."""
    return Comparison(
        base=base.name,
        other=other.name,
        conformance=compare_conformance(base.conformance, other.conformance),
        deviations=compare_deviations(base.deviations, other.deviations),
        friction=compare_friction(base.friction, other.friction),
        alerts=compare_alerts(base.alerts, other.alerts) if alerts_table else None,
        instances=instances,
        tables=tables,
        quarantined=(base.quarantined, other.quarantined),
    )
