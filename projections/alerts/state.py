"""What the detector keeps per touchpoint: window buckets, evidence and the open incident."""

from __future__ import annotations

from dataclasses import dataclass, field

from projections.alerts.model import NEVER, Observation, ObservationKind

CUSTOMER_EXAMPLES = 5
EVENT_EXAMPLES = 10


@dataclass(slots=True)
class Evidence:
    """What a window (or an incident) saw besides counts: de-dup keys, breakdowns, examples."""

    seen: set[str] = field(default_factory=set)  # keys of friction signals and contacts counted
    affected: set[str] = field(default_factory=set)  # "kind\x00customer" (kind "*" for any kind)
    kinds: dict[str, int] = field(default_factory=dict)
    personas: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)
    upstream: dict[str, int] = field(default_factory=dict)
    customers: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    def note(self, observation: Observation) -> None:
        """Add an observation's breakdowns and examples (not its de-dup key)."""
        if observation.friction_kind is not None:
            bump(self.kinds, observation.friction_kind)
        if observation.persona is not None and observation.kind is not ObservationKind.TRAFFIC:
            bump(self.personas, observation.persona)
        if observation.journey is not None:
            bump(self.journeys, observation.journey)
        if observation.kind is ObservationKind.CONTACT:
            bump(self.upstream, observation.upstream or "(none)")
        if observation.customer_id not in self.customers and len(self.customers) < CUSTOMER_EXAMPLES:
            self.customers.append(observation.customer_id)
        for event_id in observation.event_ids:
            if len(self.event_ids) >= EVENT_EXAMPLES:
                break
            if event_id not in self.event_ids:
                self.event_ids.append(event_id)

    def merge(self, other: Evidence) -> None:
        """Fold another window's breakdowns and examples into this one."""
        for mine, theirs in (
            (self.kinds, other.kinds),
            (self.personas, other.personas),
            (self.journeys, other.journeys),
            (self.upstream, other.upstream),
        ):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        for customer in other.customers:
            if customer not in self.customers and len(self.customers) < CUSTOMER_EXAMPLES:
                self.customers.append(customer)
        for event_id in other.event_ids:
            if event_id not in self.event_ids and len(self.event_ids) < EVENT_EXAMPLES:
                self.event_ids.append(event_id)


@dataclass(slots=True)
class Bucket:
    """Counts of one window at one touchpoint."""

    traffic: int = 0
    signals: dict[str, int] = field(default_factory=dict)  # per friction kind, and "*" for all
    # Distinct customers with friction, per kind and "*": what significance is tested on, since
    # one failure often brings a retry and a support contact (signals come in clumps).
    affected: dict[str, int] = field(default_factory=dict)
    flagged: bool = False  # part of an incident: left out of every baseline
    # Unusually high on its own (but no incident): also left out, so a spike that builds up slowly
    # does not become its own baseline before it is detected.
    warm: bool = False
    evidence: Evidence | None = None  # kept only while the window can still take counts


@dataclass(slots=True)
class Incident:
    """An open spike at one touchpoint, from its first window until enough calm windows."""

    incident_id: str
    trigger: str  # the friction kind (or "*", or "contacts") whose spike opened it
    start: int  # first window of the span that opened it
    detected_at: int
    baseline_rate: float
    judged_until: int  # windows before this one have been judged hot or calm
    last_hot_end: int
    calm_windows: int = 0
    calm_traffic: int = 0
    calm_count: int = 0
    calm_expected: float = 0.0
    updates: int = 0
    last_alert_at: int = NEVER
    peak_sigma: float = 0.0
    evidence: Evidence = field(default_factory=Evidence)  # of windows [start, last_hot_end)
    tail: dict[int, Evidence] = field(default_factory=dict)  # later windows, until judged hot


@dataclass(slots=True)
class TouchpointWindowState:
    """Everything the detector keeps for one touchpoint: serialisable with encode_detector."""

    touchpoint: str
    clock: int = NEVER  # event time this state has been advanced to
    first_window: int | None = None  # earlier windows are unknown, not empty
    buckets: dict[int, Bucket] = field(default_factory=dict)
    incident: Incident | None = None
    quiet_until: int = NEVER  # cooldown after the last resolution
    suppressed: int = 0  # spikes inside a cooldown (not alerted)
    last_suppressed: int = NEVER
    latest_window: int = NEVER
    swept_at: int = NEVER
    settled_until: int = NEVER  # windows before this were checked for being warm
    # Derived, not encoded: windows still holding evidence, and baselines already summed.
    fresh: set[int] = field(default_factory=set, repr=False)
    cache: dict[tuple[int, int], Baseline] = field(default_factory=dict, repr=False)


def new_state(touchpoint: str) -> TouchpointWindowState:
    """An empty state for a touchpoint."""
    return TouchpointWindowState(touchpoint)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Sums of the windows a baseline reads (cached per span while no window changes)."""

    traffic: int
    windows: int
    signals: dict[str, int]
    affected: dict[str, int]


def bump(counts: dict[str, int], name: str) -> None:
    """Count one more `name`."""
    counts[name] = counts.get(name, 0) + 1
