"""Team digests: what one owning team's touchpoints did to customers in a period, against the one before."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from events.errors import TouchpathError
from projections.journeys import JourneyModel
from streams.store.clickhouse import ClickHouseProjectionStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TOP = 10  # rows per list in a digest
VOICES = 8  # comments quoted in the voice of the customer (worst first)
QUOTES = 5  # customers' words quoted in the celebrations

# Each query reads one scenario's latest rows (FINAL) of the previous period and the period
# [prev, start) + [start, end), restricted to the team's touchpoints (current registry ownership).
RANGE = """scenario = {scenario:String} AND has({touchpoints:Array(String)}, {column})
  AND occurred_at >= {prev:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}"""
NOW = "occurred_at >= {start:DateTime64(3, 'UTC')}"

TRAFFIC_SQL = f"""SELECT touchpoint, countIf({NOW}) AS events, countIf(NOT ({NOW})) AS prev_events
FROM touchpoint_events FINAL WHERE {RANGE.replace("{column}", "touchpoint")}
GROUP BY touchpoint"""

FRICTION_SQL = f"""SELECT touchpoint, kind, countIf({NOW}) AS signals, countIf(NOT ({NOW})) AS prev_signals,
       uniqExactIf(customer_id, {NOW}) AS customers
FROM friction_signals FINAL WHERE {RANGE.replace("{column}", "touchpoint")}
GROUP BY touchpoint, kind"""

SUPPORT_SQL = f"""SELECT assumeNotNull(upstream_touchpoint) AS upstream, rule, support_touchpoint,
       countIf({NOW}) AS contacts, countIf(NOT ({NOW})) AS prev_contacts
FROM support_attribution FINAL
WHERE upstream_touchpoint IS NOT NULL AND {RANGE.replace("{column}", "assumeNotNull(upstream_touchpoint)")}
GROUP BY upstream, rule, support_touchpoint
ORDER BY contacts DESC, upstream, rule, support_touchpoint"""

DEVIATIONS_SQL = f"""SELECT journey_id, step, kind, touchpoint, countIf({NOW}) AS deviations,
       countIf(NOT ({NOW})) AS prev_deviations, uniqExactIf(customer_id, {NOW}) AS customers
FROM deviations FINAL WHERE kind != 'abandoned' AND {RANGE.replace("{column}", "touchpoint")}
GROUP BY journey_id, step, kind, touchpoint
ORDER BY deviations DESC, journey_id, step, kind, touchpoint"""

# Surveys attributed to the team's touchpoints in the period: negative ones through the
# negative_survey friction they caused (shared among the touchpoints before them), positive ones
# through delight (the touchpoint and associate just before them). The survey is the last event id.
SURVEYS_SQL = f"""SELECT s.sentiment AS sentiment, s.instance_id AS instance_id, e.customer_id AS customer_id,
       e.event_id AS event_id, e.occurred_at AS occurred_at, e.survey_kind AS survey_kind,
       e.survey_score AS score, e.survey_comment AS comment, s.touchpoints AS touchpoints,
       s.employee_id AS employee_id
FROM (
    SELECT 'negative' AS sentiment, instance_id, customer_id, event_ids[-1] AS survey_event,
           arraySort(groupUniqArray(touchpoint)) AS touchpoints, CAST(NULL, 'Nullable(String)') AS employee_id
    FROM friction_signals FINAL
    WHERE kind = 'negative_survey' AND {NOW} AND {RANGE.replace("{column}", "touchpoint")}
    GROUP BY instance_id, customer_id, survey_event
    UNION ALL
    SELECT 'positive', instance_id, customer_id, event_ids[-1], [touchpoint], employee_id
    FROM delight_signals FINAL WHERE {NOW} AND {RANGE.replace("{column}", "touchpoint")}
) AS s
INNER JOIN (
    SELECT customer_id, event_id, occurred_at, assumeNotNull(survey_kind) AS survey_kind,
           assumeNotNull(survey_score) AS survey_score, survey_comment
    FROM touchpoint_events FINAL
    WHERE scenario = {{scenario:String}} AND survey_kind IS NOT NULL AND survey_score IS NOT NULL
      AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
) AS e ON e.customer_id = s.customer_id AND e.event_id = s.survey_event
ORDER BY occurred_at, event_id"""

INSTANCES_SQL = """SELECT instance_id, persona, journey_id, journey_version, path, path_event_ids
FROM journey_instances FINAL
WHERE scenario = {scenario:String} AND has({ids:Array(String)}, instance_id)"""

EVIDENCE_SQL = """SELECT instance_id, occurred_at,
       concat(kind, ' at ', if(step = '', touchpoint, step)) AS what
FROM deviations FINAL WHERE scenario = {scenario:String} AND has({ids:Array(String)}, instance_id)
UNION ALL
SELECT instance_id, occurred_at, concat(kind, ' at ', touchpoint)
FROM friction_signals FINAL
WHERE scenario = {scenario:String} AND has({ids:Array(String)}, instance_id) AND kind != 'negative_survey'"""

ALERTS_SQL = """SELECT detected_at, action, touchpoint, trigger, incident_id, window_start, window_end,
       ratio, sigma
FROM alerts FINAL
WHERE scenario = {scenario:String} AND has({touchpoints:Array(String)}, touchpoint)
  AND action IN ('open', 'resolve')
  AND detected_at >= {start:DateTime64(3, 'UTC')} AND detected_at < {end:DateTime64(3, 'UTC')}
ORDER BY detected_at, touchpoint"""

LAST_EVENT_SQL = (
    """SELECT max(occurred_at), count() FROM touchpoint_events FINAL WHERE scenario = {scenario:String}"""
)


def _utc(moment: datetime) -> datetime:
    """A time read back from ClickHouse as an aware UTC datetime (the client may return naive ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class DigestError(TouchpathError):
    """A digest cannot be made as asked (unknown team, bad period); the message says what to do."""


@dataclass(frozen=True, slots=True)
class Period:
    """The digest's period [start, end) and the equally long period before it."""

    start: datetime
    end: datetime

    @property
    def previous_start(self) -> datetime:
        """Start of the period before, which ends where this one starts."""
        return self.start - (self.end - self.start)

    def describe(self) -> str:
        """'2026-01-12 00:00 – 2026-01-19 00:00 UTC'."""
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"


def period_ending(end: datetime, length_ms: int) -> Period:
    """The period of length_ms that ends at end (exclusive)."""
    if length_ms <= 0:
        msg = "--since must be a positive duration, e.g. 7d or 24h"
        raise DigestError(msg)
    return Period(end - timedelta(milliseconds=length_ms), end)


def latest_event_end(store: ClickHouseProjectionStore, scenario: str) -> datetime | None:
    """Just after the scenario's last event time (the default end of a digest), None without events."""
    last, count = store.query(LAST_EVENT_SQL, {"scenario": scenario})[1][0]
    if not count:
        return None
    return _utc(last) + timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class TouchpointFriction:
    """One of the team's touchpoints: friction signals per 1,000 events now and before."""

    touchpoint: str
    events: int
    signals: int
    prev_events: int
    prev_signals: int
    customers: int
    dominant_kind: str  # the kind with most signals in the period ('' without signals)
    kinds: dict[str, int]

    @property
    def rate(self) -> float | None:
        """Signals per 1,000 events in the period (None without events)."""
        return 1000 * self.signals / self.events if self.events else None

    @property
    def prev_rate(self) -> float | None:
        """Signals per 1,000 events in the previous period."""
        return 1000 * self.prev_signals / self.prev_events if self.prev_events else None

    @property
    def change(self) -> float | None:
        """Rate now minus rate before (None when either is unknown)."""
        rate, prev = self.rate, self.prev_rate
        return None if rate is None or prev is None else rate - prev


@dataclass(frozen=True, slots=True)
class Count:
    """A counted item of the period and of the period before (support drivers, deviations)."""

    labels: tuple[str, ...]
    now: int
    before: int


@dataclass(frozen=True, slots=True)
class Voice:
    """One survey response attributed to the team's touchpoints, with the path it followed."""

    occurred_at: datetime
    customer_id: str
    instance_id: str
    event_id: str
    survey_kind: str
    score: int
    comment: str | None
    sentiment: str  # negative | positive
    touchpoints: tuple[str, ...]  # the team's touchpoints it is attributed to
    employee_id: str | None
    journey: str = ""
    path: tuple[str, ...] = ()  # the customer's path up to the survey
    followed: tuple[str, ...] = ()  # deviations and friction of the instance before the survey

    @property
    def goodness(self) -> float:
        """The score on 0 (worst) .. 1 (best), comparable across CSAT 1-5, NPS 0-10, CES 1-7."""
        if self.survey_kind == "csat":
            return (self.score - 1) / 4
        if self.survey_kind == "nps":
            return self.score / 10
        return (7 - self.score) / 6


@dataclass(frozen=True, slots=True)
class Associate:
    """An associate credited with positive surveys at the team's touchpoints."""

    employee_id: str
    positive: int
    customers: int
    touchpoints: tuple[str, ...]
    comments: int = 0  # positive surveys with a comment (thank-you notes)


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An alert opened or resolved for one of the team's touchpoints."""

    detected_at: datetime
    action: str
    touchpoint: str
    trigger: str
    incident_id: str
    window_start: datetime
    window_end: datetime
    ratio: float
    sigma: float


@dataclass(slots=True)
class TeamDigest:
    """Everything a digest says about one team and period."""

    team: str
    description: str
    scenario: str
    period: Period
    touchpoints: list[TouchpointFriction] = field(default_factory=list)  # ranked, worst first
    support: list[Count] = field(default_factory=list)  # (upstream, rule, support touchpoint)
    deviations: list[Count] = field(default_factory=list)  # (journey, step, kind, touchpoint)
    voices: list[Voice] = field(default_factory=list)  # commented surveys, worst first
    positive: int = 0  # positive surveys attributed to the team's touchpoints
    positive_by_touchpoint: dict[str, int] = field(default_factory=dict)
    associates: list[Associate] = field(default_factory=list)
    praise: list[Voice] = field(default_factory=list)  # positive surveys with the customer's words
    alerts: list[AlertLine] = field(default_factory=list)
    owned: tuple[str, ...] = ()  # the team's touchpoints in the registry

    @property
    def events(self) -> int:
        """Events at the team's touchpoints in the period."""
        return sum(item.events for item in self.touchpoints)

    @property
    def has_data(self) -> bool:
        """Whether anything happened at the team's touchpoints in the period."""
        return bool(
            self.events or self.support or self.deviations or self.voices or self.positive or self.alerts
        )

    @property
    def digest_id(self) -> str:
        """Content-independent id of this digest (team, scenario, period): the webhook idempotency key."""
        start, end = self.period.start.isoformat(), self.period.end.isoformat()
        text = f"{self.team}\x00{self.scenario}\x00{start}\x00{end}"
        return "digest-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _params(scenario: str, touchpoints: list[str], period: Period) -> dict[str, object]:
    return {
        "scenario": scenario,
        "touchpoints": touchpoints,
        "prev": period.previous_start,
        "start": period.start,
        "end": period.end,
    }


def _rank_key(item: TouchpointFriction) -> tuple[float, float, str]:
    # Worst first: the highest rate per 1,000 events, then the largest rise; no traffic last.
    rate = item.rate if item.rate is not None else -1.0
    change = item.change if item.change is not None else 0.0
    return (-rate, -change, item.touchpoint)


def build_digest(
    store: ClickHouseProjectionStore, model: JourneyModel, team: str, period: Period, scenario: str = "live"
) -> TeamDigest:
    """Read one team's digest for the period (and the period before) from the projections."""
    found = model.registry.team(team)
    if found is None:
        known = ", ".join(sorted(item.id for item in model.registry.teams))
        msg = f"no team '{team}' in the registry; teams: {known}"
        raise DigestError(msg)
    owned = sorted(tp.id for tp in model.registry.touchpoints if tp.owner == team)
    digest = TeamDigest(team, found.description, scenario, period, owned=tuple(owned))
    if not owned:
        return digest
    params = _params(scenario, owned, period)
    traffic = {row[0]: (int(row[1]), int(row[2])) for row in store.query(TRAFFIC_SQL, params)[1]}
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    signals: Counter[str] = Counter()
    before: Counter[str] = Counter()
    customers: Counter[str] = Counter()
    for touchpoint, kind, now, prev, people in store.query(FRICTION_SQL, params)[1]:
        if now:
            kinds[touchpoint][kind] += int(now)
        signals[touchpoint] += int(now)
        before[touchpoint] += int(prev)
        customers[touchpoint] += int(people)  # an upper bound across kinds; shown per touchpoint
    for touchpoint in owned:
        events, prev_events = traffic.get(touchpoint, (0, 0))
        dominant = kinds[touchpoint].most_common(1)
        digest.touchpoints.append(
            TouchpointFriction(
                touchpoint, events, signals[touchpoint], prev_events, before[touchpoint],
                customers[touchpoint], dominant[0][0] if dominant else "", dict(kinds[touchpoint]),
            )
        )  # fmt: skip
    digest.touchpoints.sort(key=_rank_key)
    digest.support = [
        Count((str(up), str(rule), str(support)), int(now), int(prev))
        for up, rule, support, now, prev in store.query(SUPPORT_SQL, params)[1]
        if now or prev
    ][:TOP]
    digest.deviations = [
        Count((str(journey), str(step), str(kind), str(touchpoint)), int(now), int(prev))
        for journey, step, kind, touchpoint, now, prev, _ in store.query(DEVIATIONS_SQL, params)[1]
        if now
    ][:TOP]
    _surveys(store, digest, params)
    _, alert_rows = store.query(ALERTS_SQL, params)
    digest.alerts = [
        AlertLine(_utc(at), action, touchpoint, trigger, incident, _utc(start), _utc(end), ratio, sigma)
        for at, action, touchpoint, trigger, incident, start, end, ratio, sigma in alert_rows
    ]
    return digest


def _surveys(store: ClickHouseProjectionStore, digest: TeamDigest, params: dict[str, object]) -> None:
    voices = []
    positive_by_touchpoint: Counter[str] = Counter()
    associates: dict[str, tuple[Counter[str], set[str]]] = {}
    for sentiment, iid, customer, event_id, at, kind, score, comment, touchpoints, employee in store.query(
        SURVEYS_SQL, params
    )[1]:
        voice = Voice(_utc(at), customer, iid, event_id, kind, int(score), comment or None, sentiment,
                      tuple(touchpoints), employee)  # fmt: skip
        if sentiment == "positive":
            digest.positive += 1
            positive_by_touchpoint[touchpoints[0]] += 1
            if employee:
                credited, people = associates.setdefault(employee, (Counter(), set()))
                credited[touchpoints[0]] += 1
                people.add(customer)
        if voice.comment:
            voices.append(voice)
    digest.positive_by_touchpoint = dict(positive_by_touchpoint.most_common())
    notes = Counter(
        voice.employee_id for voice in voices if voice.sentiment == "positive" and voice.employee_id
    )
    digest.associates = sorted(
        (
            Associate(employee, sum(credited.values()), len(people), tuple(sorted(credited)), notes[employee])
            for employee, (credited, people) in associates.items()
        ),
        key=lambda item: (-item.positive, -item.comments, item.employee_id),
    )[:TOP]
    worst = sorted(
        (voice for voice in voices if voice.sentiment == "negative"),
        key=lambda voice: (voice.goodness, voice.occurred_at, voice.event_id),
    )[:VOICES]
    # Praise: the associates with the most thank-you comments first (then unnamed), best scores,
    # latest first — so the words quoted celebrate the people customers wrote about most.
    positive_voices = [voice for voice in voices if voice.sentiment == "positive"]
    notes = Counter(voice.employee_id for voice in positive_voices if voice.employee_id)
    praise = sorted(
        positive_voices,
        key=lambda voice: (
            -notes[voice.employee_id] if voice.employee_id else 1,
            -voice.goodness,
            -voice.occurred_at.timestamp(),
            voice.event_id,
        ),
    )[:QUOTES]
    enriched = _with_paths(store, str(params["scenario"]), worst + praise)
    digest.voices = enriched[: len(worst)]
    digest.praise = enriched[len(worst) :]


def _with_paths(store: ClickHouseProjectionStore, scenario: str, voices: list[Voice]) -> list[Voice]:
    """Each voice with its instance's journey, its path up to the survey and what it followed."""
    if not voices:
        return voices
    ids = sorted({voice.instance_id for voice in voices})
    params: dict[str, object] = {"scenario": scenario, "ids": ids}
    instances = {row[0]: row[1:] for row in store.query(INSTANCES_SQL, params)[1]}
    evidence: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for iid, at, what in store.query(EVIDENCE_SQL, params)[1]:
        evidence[iid].append((_utc(at), what))
    out = []
    for voice in voices:
        found = instances.get(voice.instance_id)
        if found is None:
            out.append(voice)
            continue
        persona, journey_id, version, path, event_ids = found
        upto = list(event_ids).index(voice.event_id) if voice.event_id in event_ids else len(path)
        followed = sorted({what for at, what in evidence[voice.instance_id] if at <= voice.occurred_at})
        out.append(
            Voice(voice.occurred_at, voice.customer_id, voice.instance_id, voice.event_id, voice.survey_kind,
                  voice.score, voice.comment, voice.sentiment, voice.touchpoints, voice.employee_id,
                  f"{persona}: {journey_id}@{version}", tuple(path[:upto]), tuple(followed))
        )  # fmt: skip
    return out


def team_ids(model: JourneyModel) -> list[str]:
    """Every team of the registry, in registry order."""
    return [team.id for team in model.registry.teams]
