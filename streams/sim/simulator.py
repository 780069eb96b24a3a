"""Deterministic traffic simulator: personas walk their ideal journeys with injected, recorded
deviations, friction incidents, surveys, late and duplicate delivery (the ground truth)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import orjson

from projections.customer import instance_id_of
from projections.journeys import Journey, JourneyModel, Step

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SOURCES = {
    "email": "esp",
    "web": "web-shop",
    "store": "pos",
    "sales": "crm",
    "support": "contact-centre",
}
# Share of journeys that start in each hour of the day (evening peak, quiet nights).
HOURLY = [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 9, 8, 8, 9, 10, 12, 13, 12, 9, 5, 2]


@dataclass(frozen=True, slots=True)
class Incident:
    """A friction incident: a touchpoint's failure rate spikes for a window."""

    touchpoint: str
    start_ms: int
    duration_ms: int
    failure_rate: float


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; every random choice derives from the seed."""

    customers: int = 1000
    days: int = 14
    seed: int = 1
    persona_weights: dict[str, float] | None = None
    missing_step: float = 0.05
    unexpected_step: float = 0.06
    out_of_order: float = 0.04
    repeated_step: float = 0.04
    channel_switch: float = 0.25
    time_budget_exceeded: float = 0.05
    abandoned: float = 0.08
    base_failure_rate: float = 0.01
    retry_after_failure: float = 0.5
    support_after_failure: float = 0.4
    second_journey: float = 0.3
    late_rate: float = 0.02
    duplicate_rate: float = 0.01
    bad_rate: float = 0.0005
    incidents: tuple[Incident, ...] | None = None  # None: one default incident per 7 days
    # An associate whose customers all praise them: a survey right after an event this associate
    # served scores CSAT 5 (NPS 10) with a thank-you comment; recorded in Simulation.praise.
    praised_associate: str | None = None


@dataclass(slots=True)
class Planned:
    """One event being planned: which step (0 for none), how it relates to the ideal."""

    touchpoint: str
    step: int
    gap_ms: int = 0
    inserted: bool = False  # not part of the ideal path (unexpected, repeat, out of order)


@dataclass(slots=True)
class TruthInstance:
    """Ground truth of one journey instance."""

    instance_id: str
    customer_id: str
    persona: str
    journey: str
    expected_status: str
    deviations: list[dict[str, object]] = field(default_factory=list)

    def cost(self) -> int:
        """The cost of the injected edits: an upper bound of the optimal alignment cost."""
        return sum(int(str(d["cost"])) for d in self.deviations if d["observable"])


@dataclass(slots=True)
class Simulation:
    """Simulated lines in arrival order, and the truth per instance."""

    lines: list[bytes]
    truth: list[TruthInstance]
    incidents: tuple[Incident, ...]
    events: int
    duplicates: int
    late: int
    bad: int
    praise: list[tuple[str, str, str]] = field(default_factory=list)  # (customer, survey event, associate)


PRAISE_COMMENT = "The associate who served me was wonderful, thank you!"


def default_incidents(config: SimulationConfig) -> tuple[Incident, ...]:
    """One failure spike per simulated week, at a different touchpoint each time."""
    targets = ["web.checkout", "store.purchase", "web.cart", "sales.proposal"]
    out = []
    for week in range(max(1, config.days // 7)):
        start = week * 7 * DAY + 3 * DAY + 18 * HOUR
        out.append(Incident(targets[week % len(targets)], start, 3 * HOUR, 0.45))
    return tuple(out)


class _Sim:
    def __init__(self, model: JourneyModel, config: SimulationConfig) -> None:
        self.model = model
        self.config = config
        self.rng = random.Random(config.seed)
        self.incidents = config.incidents if config.incidents is not None else default_incidents(config)
        weights = config.persona_weights or {"online_buyer": 5, "store_shopper": 3}
        self.personas = list(model.personas)
        self.weights = [weights.get(persona, 2.0) for persona in self.personas]
        self.counter = 0
        self.records: list[tuple[int, int, bytes]] = []  # (arrival ms, order, line)
        self.truth: list[TruthInstance] = []
        self.duplicates = 0
        self.late = 0
        self.bad = 0
        self.praise: list[tuple[str, str, str]] = []

    # -- planning ------------------------------------------------------------------------------
    def _foreign_touchpoints(self, journey: Journey) -> list[str]:
        own = set(journey.step_of)
        return sorted(
            tp.id for tp in self.model.registry.touchpoints
            if tp.id not in own and tp.id not in self._entries_of_persona(journey)
        )  # fmt: skip

    def _entries_of_persona(self, journey: Journey) -> set[str]:
        return {tp for other in self.model.by_persona[journey.persona] for tp in other.step_of}

    def plan(self, journey: Journey, upto: int) -> tuple[list[Planned], list[dict[str, object]]]:
        """Plan the events of steps 1..upto with injected deviations recorded as truth."""
        rng, config = self.rng, self.config
        truth: list[dict[str, object]] = []
        steps = journey.steps
        final = steps[-1]
        planned: list[Planned] = []
        first_required = next(s.index for s in steps if not s.optional)
        injectable_missing = [
            s.index for s in steps
            if not s.optional and not s.goal and first_required < s.index < upto
            and not s.repeatable
            and s is not final
        ]  # fmt: skip
        missing = (
            rng.choice(injectable_missing)
            if injectable_missing and rng.random() < config.missing_step
            else None
        )
        for step in steps[:upto]:
            if step.index == missing:
                truth.append(_dev("missing_step", step.name, 1, step.index))
                continue
            if step.optional and rng.random() < (0.35 if step is final else 0.5):
                continue
            touchpoint = step.primary
            if len(step.touchpoints) > 1 and rng.random() < config.channel_switch:
                others = sorted(
                    tp for tp in step.touchpoints
                    if self.model.channel_of[tp] != step.primary_channel
                )  # fmt: skip
                if others:
                    touchpoint = rng.choice(others)
                    truth.append(_dev("channel_switch", step.name, 0))
            count = rng.randint(1, 3) if step.repeatable else 1
            planned.extend(Planned(touchpoint, step.index) for _ in range(count))
        # Out of order: swap two adjacent required steps (not the first, the goal or the last).
        if rng.random() < config.out_of_order:
            pairs = [
                i for i in range(1, len(planned) - 2)
                if _swappable(planned[i], steps) and _swappable(planned[i + 1], steps)
                and planned[i].step + 1 == planned[i + 1].step
            ]  # fmt: skip
            if pairs:
                i = rng.choice(pairs)
                planned[i], planned[i + 1] = planned[i + 1], planned[i]
                planned[i].inserted = planned[i + 1].inserted = True
                truth.append(_dev("out_of_order", steps[planned[i].step - 1].name, 2))
        # Repeated step: a non-repeatable step done again right away (not the last step).
        if rng.random() < config.repeated_step:
            candidates = [
                i for i, p in enumerate(planned)
                if p.step and not steps[p.step - 1].repeatable and p.touchpoint not in
                journey.final_touchpoints and not p.inserted
            ]  # fmt: skip
            if candidates:
                i = rng.choice(candidates)
                planned.insert(i + 1, Planned(planned[i].touchpoint, planned[i].step, inserted=True))
                truth.append(_dev("repeated_step", steps[planned[i].step - 1].name, 1))
        # Unexpected step: a touchpoint outside the journey, somewhere before the last event.
        if rng.random() < config.unexpected_step and len(planned) >= 2:
            foreign = self._foreign_touchpoints(journey)
            if foreign:
                i = rng.randint(1, len(planned) - 1)
                planned.insert(i, Planned(rng.choice(foreign), 0, inserted=True))
                truth.append(_dev("unexpected_step", "", 1))
        return planned, truth

    # -- timing --------------------------------------------------------------------------------
    def timeline(self, journey: Journey, planned: list[Planned], truth: list[dict[str, object]]) -> None:
        rng = self.rng
        steps = journey.steps
        stall_candidates = [
            i for i, p in enumerate(planned)
            if i > 0 and p.step and not p.inserted and steps[p.step - 1].within_ms
            and not planned[i - 1].inserted
        ]  # fmt: skip
        stall = (
            rng.choice(stall_candidates)
            if stall_candidates and rng.random() < self.config.time_budget_exceeded
            else None
        )
        for i, p in enumerate(planned):
            if i == 0:
                continue
            within = steps[p.step - 1].within_ms if p.step else None
            if i == stall and within:
                p.gap_ms = int(within * rng.uniform(1.3, 1.8))
            elif p.inserted or (i + 1 < len(planned) and planned[i + 1].inserted):
                # Keep edits close together so they never also break a time budget.
                p.gap_ms = rng.randint(30_000, 90_000)
            elif within:
                p.gap_ms = int(within * rng.uniform(0.05, 0.3))
            else:
                p.gap_ms = rng.randint(5 * MINUTE, min(DAY, journey.abandon_after_ms // 8))
        if stall is not None:
            truth.append(_dev("time_budget_exceeded", steps[planned[stall].step - 1].name, 0))

    # -- emission ------------------------------------------------------------------------------
    def next_id(self) -> str:
        self.counter += 1
        return f"ev-{self.config.seed:x}-{self.counter:08d}"

    def failure_rate(self, touchpoint: str, ts: int) -> float:
        for incident in self.incidents:
            if incident.touchpoint == touchpoint and 0 <= ts - incident.start_ms < (incident.duration_ms):
                return incident.failure_rate
        return self.config.base_failure_rate

    def customer(self, number: int) -> None:
        rng, config = self.rng, self.config
        customer_id = f"cust-{number:06d}"
        persona = rng.choices(self.personas, self.weights)[0]
        journey = self.model.by_persona[persona][0]
        day = rng.randrange(config.days)
        hour = rng.choices(range(24), HOURLY)[0]
        start = day * DAY + hour * HOUR + rng.randrange(HOUR)
        instances = 2 if rng.random() < config.second_journey else 1
        for ordinal in range(instances):
            start = self.instance(customer_id, persona, journey, start, ordinal)
            start += journey.abandon_after_ms + rng.randint(DAY, 10 * DAY)

    def instance(self, customer_id: str, persona: str, journey: Journey, start: int, ordinal: int) -> int:
        """Emit one journey instance starting at `start`; returns the time of its last event."""
        rng, config = self.rng, self.config
        upto = len(journey.steps)
        first_required = next(step.index for step in journey.steps if not step.optional)
        abandoned = rng.random() < config.abandoned and journey.goal_index > first_required
        if abandoned:
            upto = rng.randint(first_required, journey.goal_index - 1)
        planned, truth = self.plan(journey, upto)
        self.timeline(journey, planned, truth)
        if abandoned:
            truth.append(_dev("abandoned", "", 1))
        ts = start
        emitted: list[tuple[int, str, str, dict[str, object]]] = []
        friction_seen = bool(truth) and not all(d["cost"] == 0 for d in truth)
        for i, p in enumerate(planned):
            ts += p.gap_ms
            extra: dict[str, object] = {}
            step = journey.steps[p.step - 1] if p.step else None
            if i == 0 and (ordinal == 0 or rng.random() < 0.5):
                extra["persona"] = persona
            failed = False
            if p.touchpoint.split(".")[0] in ("web", "store", "sales") and not p.inserted:
                failed = rng.random() < self.failure_rate(p.touchpoint, ts)
                extra["outcome"] = "failure" if failed else "success"
            if p.touchpoint.startswith("store."):
                extra["employee_id"] = f"assoc-{rng.randrange(40):03d}"
            event_id = self.next_id()
            if p.touchpoint.endswith("_survey"):
                extra["survey"] = _survey(rng, p.touchpoint, friction_seen)
                # Drawn first either way, so the praise leaves every other random choice unchanged.
                served = emitted[-1][3].get("employee_id") if emitted else None
                if served is not None and served == config.praised_associate:
                    extra["survey"] = _praise(p.touchpoint)
                    self.praise.append((customer_id, event_id, str(served)))
            emitted.append((ts, event_id, p.touchpoint, extra))
            friction_seen = friction_seen or failed
            if failed and step is not None and p.touchpoint not in journey.final_touchpoints:
                # Reactions to a failure: an immediate retry, and sometimes a support contact.
                if rng.random() < config.retry_after_failure and not step.repeatable:
                    ts += rng.randint(30_000, 90_000)
                    emitted.append((ts, self.next_id(), p.touchpoint, {"outcome": "success"}))
                    truth.append(_dev("repeated_step", step.name, 1))
                if rng.random() < config.support_after_failure:
                    ts += rng.randint(30_000, 90_000)
                    emitted.append((ts, self.next_id(), "support.call", {"outcome": "success"}))
                    truth.append(_dev("unexpected_step", "", 1))
        reached = max((p.step for p in planned if not p.inserted), default=0)
        record = TruthInstance(
            instance_id=instance_id_of(customer_id, emitted[0][1]),
            customer_id=customer_id,
            persona=persona,
            journey=journey.key,
            expected_status="completed" if not abandoned else "abandoned",
            deviations=truth,
        )
        self.truth.append(record)
        ends_on_final = emitted[-1][2] in journey.final_touchpoints and not abandoned
        self._ends[record.instance_id] = (emitted[-1][0], journey.abandon_after_ms, ends_on_final,
                                          reached)  # fmt: skip
        for ts_ms, event_id, touchpoint, extra in emitted:
            self.emit(customer_id, ts_ms, event_id, touchpoint, extra)
        return emitted[-1][0]

    _ends: dict[str, tuple[int, int, bool, int]]

    def emit(
        self, customer_id: str, ts: int, event_id: str, touchpoint: str, extra: dict[str, object]
    ) -> None:
        rng, config = self.rng, self.config
        channel = self.model.channel_of[touchpoint]
        when = START + timedelta(milliseconds=ts)
        if channel == "store" and rng.random() < 0.5:
            stamp = when.astimezone(_CET).isoformat(timespec="milliseconds")
        else:
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body: dict[str, object] = {
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": stamp,
            "channel": channel,
            "touchpoint": touchpoint,
            **extra,
            "source": SOURCES.get(channel, channel),
        }
        line = orjson.dumps(body)
        arrival = ts
        if rng.random() < config.late_rate:
            arrival += rng.randint(10 * MINUTE, 2 * DAY)
            self.late += 1
        self.records.append((arrival, len(self.records), line))
        if rng.random() < config.duplicate_rate:
            self.records.append((arrival + rng.randint(1, 6 * HOUR), len(self.records), line))
            self.duplicates += 1
        if rng.random() < config.bad_rate:
            self.records.append((arrival, len(self.records), _corrupt(rng, body)))
            self.bad += 1

    def run(self) -> Simulation:
        self._ends = {}
        for number in range(self.config.customers):
            self.customer(number)
        watermark = max(end[0] for end in self._ends.values())
        for record in self.truth:
            last, abandon_after, ends_on_final, reached = self._ends[record.instance_id]
            closed = ends_on_final or watermark - last > abandon_after
            if closed:
                continue
            # Still open when the input ends: the engine cannot know yet what is missing after
            # the last event, nor that the customer abandoned.
            if record.expected_status == "abandoned":
                record.expected_status = "in_progress"
            for deviation in record.deviations:
                if deviation["kind"] == "abandoned" or (
                    deviation["kind"] == "missing_step" and int(str(deviation["index"])) > reached
                ):
                    deviation["observable"] = False
        self.records.sort(key=lambda item: (item[0], item[1]))
        return Simulation(
            lines=[line for _, _, line in self.records],
            truth=self.truth,
            incidents=self.incidents,
            events=len(self.records) - self.duplicates - self.bad,
            duplicates=self.duplicates,
            late=self.late,
            bad=self.bad,
            praise=self.praise,
        )


_CET = timezone(timedelta(hours=1), "CET")


def _dev(kind: str, step: str, cost: int, index: int = 0) -> dict[str, object]:
    return {"kind": kind, "step": step, "cost": cost, "index": index, "observable": True}


def _swappable(planned: Planned, steps: tuple[Step, ...]) -> bool:
    if not planned.step or planned.inserted:
        return False
    step = steps[planned.step - 1]
    return (
        not step.optional
        and not step.repeatable
        and not step.goal
        and step.index > 1
        and (step.index < len(steps))
    )


def _survey(rng: random.Random, touchpoint: str, friction: bool) -> dict[str, object]:
    if "nps" in touchpoint:
        score = rng.randint(0, 6) if friction and rng.random() < 0.8 else rng.randint(7, 10)
        return {"kind": "nps", "score": score}
    score = rng.randint(1, 2) if friction and rng.random() < 0.8 else rng.randint(3, 5)
    survey: dict[str, object] = {"kind": "csat", "score": score}
    if score >= 5 and rng.random() < 0.3:
        survey["comment"] = "Lovely service, thank you!"
    if score <= 2 and rng.random() < 0.5:
        survey["comment"] = "It took far too long and nobody helped."
    return survey


def _praise(touchpoint: str) -> dict[str, object]:
    if "nps" in touchpoint:
        return {"kind": "nps", "score": 10, "comment": PRAISE_COMMENT}
    return {"kind": "csat", "score": 5, "comment": PRAISE_COMMENT}


def _corrupt(rng: random.Random, body: dict[str, object]) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return orjson.dumps(body)[:-7]  # truncated JSON
    if choice == 1:
        return orjson.dumps({**body, "touchpoint": "web.teleport", "event_id": f"{body['event_id']}-x"})
    if choice == 2:
        return orjson.dumps({**body, "occurred_at": "yesterday", "event_id": f"{body['event_id']}-y"})
    return orjson.dumps({**body, "colour": "red", "event_id": f"{body['event_id']}-z"})


def simulate(model: JourneyModel, config: SimulationConfig) -> Simulation:
    """Run the simulator: lines in arrival order plus the ground truth."""
    return _Sim(model, config).run()


def truth_lines(simulation: Simulation) -> Iterator[bytes]:
    """The truth file: one JSON object per instance."""
    for record in simulation.truth:
        yield orjson.dumps(
            {
                "instance_id": record.instance_id,
                "customer_id": record.customer_id,
                "persona": record.persona,
                "journey": record.journey,
                "expected_status": record.expected_status,
                "cost": record.cost(),
                "deviations": record.deviations,
            }
        )


def ms_to_datetime(ms: int) -> datetime:
    """Simulated milliseconds to an aware datetime."""
    return EPOCH + timedelta(milliseconds=ms)
