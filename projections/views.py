"""Analyst views: parameterized by scenario, already reading the latest row versions (FINAL)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Every view takes the scenario as a parameter: SELECT ... FROM conformance_by_persona(scenario='live').
# Each reads its tables with FINAL, which keeps the latest version of every row and hides the
# retracted ones (is_deleted = 1); so an analyst needs to know about neither.


@dataclass(frozen=True, slots=True)
class View:
    """One parameterized analyst view: its name, what one row is, and its SELECT."""

    name: str
    row: str  # what one row of the view is, for the README and `touchpath views`
    select: str

    @property
    def comment(self) -> str:
        """The view's comment in the catalogue: a hash of its definition, so a store (re)creates only
        the views whose definition changed."""
        return "touchpath:" + hashlib.blake2b(self.select.encode(), digest_size=8).hexdigest()

    def ddl(self, cluster: str | None = None) -> str:
        """CREATE OR REPLACE: a changed definition replaces the old one."""
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        return f"CREATE OR REPLACE VIEW {self.name}{on_cluster} AS\n{self.select}\nCOMMENT '{self.comment}'"


# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; beyond 30 the Cornish-Fisher
# expansion t ≈ z + (z³ + z)/(4ν) + (5z⁵ + 16z³ + 3z)/(96ν²) is within 0.001 of the exact value.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
    2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
    2.045, 2.042,
)  # fmt: skip
Z_975 = 1.959964


def t_975(df: int) -> float:
    """The two-sided 95% t quantile the survey_conformance view uses for df degrees of freedom."""
    if df <= len(T_975):
        return T_975[df - 1]
    return Z_975 + 2.372_274 / df + 2.822_585 / df**2


_T_SQL = (
    f"if(n - 1 <= {len(T_975)}, [{', '.join(map(str, T_975))}][toUInt32(n - 1)], "
    f"{Z_975} + 2.372274 / (n - 1) + 2.822585 / pow(n - 1, 2))"
)

CONFORMANCE_BY_PERSONA = View(
    "conformance_by_persona",
    "persona, journey and version: instances by status (open ones included), conformant (cost 0), "
    "closed (ended_at set), mean fitness",
    """SELECT persona, journey_id, journey_version,
       count() AS instances,
       countIf(status = 'completed') AS completed,
       countIf(status = 'abandoned') AS abandoned,
       countIf(status = 'in_progress') AS in_progress,
       countIf(ended_at IS NOT NULL) AS closed,
       countIf(cost = 0) AS conformant,
       round(countIf(cost = 0) / count(), 4) AS conformance_rate,
       round(avg(fitness), 4) AS mean_fitness
FROM journey_instances FINAL
WHERE scenario = {scenario:String}
GROUP BY persona, journey_id, journey_version
ORDER BY persona, journey_id, journey_version""",
)

CONFORMANCE_BY_PERSONA_DAY = View(
    "conformance_by_persona_day",
    "persona, journey, version and UTC day the instance started: the same counts as conformance_by_persona",
    """SELECT persona, journey_id, journey_version, toDate(started_at) AS day,
       count() AS instances,
       countIf(status = 'completed') AS completed,
       countIf(status = 'abandoned') AS abandoned,
       countIf(status = 'in_progress') AS in_progress,
       countIf(ended_at IS NOT NULL) AS closed,
       countIf(cost = 0) AS conformant
FROM journey_instances FINAL
WHERE scenario = {scenario:String}
GROUP BY persona, journey_id, journey_version, day
ORDER BY persona, journey_id, journey_version, day""",
)

DEVIATIONS_BY_STEP = View(
    "deviations_by_step",
    "persona, journey, version, step, deviation kind and touchpoint: deviations, instances, customers, cost",
    """SELECT persona, journey_id, journey_version, step, kind, touchpoint, owner_team,
       count() AS deviations,
       uniqExact(instance_id) AS instances,
       uniqExact(customer_id) AS customers,
       sum(cost) AS cost
FROM deviations FINAL
WHERE scenario = {scenario:String}
GROUP BY persona, journey_id, journey_version, step, kind, touchpoint, owner_team
ORDER BY deviations DESC, persona, journey_id, journey_version, step, kind, touchpoint""",
)

FRICTION_BY_TOUCHPOINT_HOUR = View(
    "friction_by_touchpoint_hour",
    "touchpoint, friction kind and UTC hour: signals, customers, weight, and the touchpoint's "
    "accepted events in that hour (traffic) with signals per 1,000 events",
    """SELECT f.touchpoint AS touchpoint, f.owner_team AS owner_team, f.kind AS kind, f.hour AS hour,
       f.signals AS signals, f.customers AS customers, f.weight AS weight,
       ifNull(e.events, 0) AS events,
       if(ifNull(e.events, 0) = 0, NULL, round(1000 * f.signals / e.events, 2)) AS per_1000_events
FROM (
    SELECT touchpoint, owner_team, kind, toStartOfHour(occurred_at) AS hour,
           count() AS signals, uniqExact(customer_id) AS customers, sum(weight) AS weight
    FROM friction_signals FINAL
    WHERE scenario = {scenario:String}
    GROUP BY touchpoint, owner_team, kind, hour
) AS f
LEFT JOIN (
    SELECT touchpoint, toStartOfHour(occurred_at) AS hour, toNullable(count()) AS events
    FROM touchpoint_events FINAL
    WHERE scenario = {scenario:String}
    GROUP BY touchpoint, hour
) AS e ON e.touchpoint = f.touchpoint AND e.hour = f.hour
ORDER BY hour, touchpoint, kind""",
)

SUPPORT_CONTACT_DRIVERS = View(
    "support_contact_drivers",
    "upstream touchpoint (or '(none)'), its team, attribution rule and support touchpoint: "
    "contacts and customers",
    """SELECT ifNull(upstream_touchpoint, '(none)') AS upstream_touchpoint,
       ifNull(upstream_owner_team, '') AS upstream_owner_team,
       rule, support_touchpoint,
       count() AS contacts,
       uniqExact(customer_id) AS customers
FROM support_attribution FINAL
WHERE scenario = {scenario:String}
GROUP BY upstream_touchpoint, upstream_owner_team, rule, support_touchpoint
ORDER BY contacts DESC, upstream_touchpoint, rule, support_touchpoint""",
)

DELIGHT_BY_ASSOCIATE = View(
    "delight_by_associate",
    "associate (employee_id) and touchpoint: positive surveys attributed to them, customers, the "
    "events they delivered there (interactions) and positives per 100 interactions",
    """SELECT d.associate AS employee_id, d.touchpoint AS touchpoint, d.owner_team AS owner_team,
       d.positive AS positive, d.customers AS customers,
       ifNull(e.interactions, 0) AS interactions,
       if(ifNull(e.interactions, 0) = 0, NULL, round(100 * d.positive / e.interactions, 2))
           AS positive_per_100
FROM (
    SELECT assumeNotNull(employee_id) AS associate, touchpoint, owner_team,
           count() AS positive, uniqExact(customer_id) AS customers
    FROM delight_signals FINAL
    WHERE scenario = {scenario:String} AND employee_id IS NOT NULL
    GROUP BY associate, touchpoint, owner_team
) AS d
LEFT JOIN (
    -- (an alias named like the column would shadow it in WHERE: `employee_id IS NOT NULL` would
    -- then test assumeNotNull(...) and keep every row)
    SELECT assumeNotNull(employee_id) AS associate, touchpoint, toNullable(count()) AS interactions
    FROM touchpoint_events FINAL
    WHERE scenario = {scenario:String} AND employee_id IS NOT NULL AND survey_kind IS NULL
    GROUP BY associate, touchpoint
) AS e ON e.associate = d.associate AND e.touchpoint = d.touchpoint
ORDER BY positive DESC, employee_id, touchpoint""",
)

QUARANTINE_BY_REASON = View(
    "quarantine_by_reason",
    "rejection reason: quarantined lines (re-sent duplicates counted once), the first example",
    """SELECT reason, count() AS lines,
       argMin(tuple(source, position, ifNull(field, ''), detail), tuple(source, position)) AS first
FROM bad_events FINAL
WHERE scenario = {scenario:String}
GROUP BY reason
ORDER BY lines DESC, reason""",
)

# Survey responses (survey events) joined to the journey instance whose path holds them. Two
# comparisons per survey kind, persona, journey and version:
#   comparison = 'conformance': grp 'conformed' (instance cost 0) vs 'deviated' (cost > 0);
#   comparison = 'deviation':   per deviation kind and step, grp 'with' (instances that have that
#                               deviation) vs 'without' (every other response of that journey version).
# n = responses, instances = distinct instances; the interval is a two-sided 95% Student t
# interval of the mean score (NULL below 2 responses), so small groups show how little they say.
SURVEY_CONFORMANCE = View(
    "survey_conformance",
    "survey kind, persona, journey, version, comparison, deviation kind, step and group: responses, "
    "instances, mean score, standard deviation and a 95% t interval of the mean",
    f"""WITH
responses AS (
    SELECT e.survey_kind AS survey_kind, e.score AS score, i.instance_id AS instance_id,
           i.persona AS persona, i.journey_id AS journey_id, i.journey_version AS journey_version,
           i.cost AS cost
    FROM (
        SELECT customer_id, event_id, assumeNotNull(survey_kind) AS survey_kind,
               toFloat64(assumeNotNull(survey_score)) AS score
        FROM touchpoint_events FINAL
        WHERE scenario = {{scenario:String}} AND survey_kind IS NOT NULL AND survey_score IS NOT NULL
    ) AS e
    INNER JOIN (
        SELECT customer_id, instance_id, persona, journey_id, journey_version, cost, event_id
        FROM journey_instances FINAL
        ARRAY JOIN path_event_ids AS event_id
        WHERE scenario = {{scenario:String}}
    ) AS i ON i.customer_id = e.customer_id AND i.event_id = e.event_id
),
kinds AS (
    SELECT DISTINCT instance_id, kind, step FROM deviations FINAL WHERE scenario = {{scenario:String}}
),
totals AS (
    SELECT survey_kind, persona, journey_id, journey_version, count() AS n, sum(score) AS s,
           sum(score * score) AS ss, uniqExact(instance_id) AS instances
    FROM responses GROUP BY survey_kind, persona, journey_id, journey_version
),
groups AS (
    SELECT survey_kind, persona, journey_id, journey_version, 'conformance' AS comparison,
           '' AS deviation_kind, '' AS step, if(cost = 0, 'conformed', 'deviated') AS grp,
           count() AS n, sum(score) AS s, sum(score * score) AS ss, uniqExact(instance_id) AS instances
    FROM responses
    GROUP BY survey_kind, persona, journey_id, journey_version, grp
    UNION ALL
    SELECT w.survey_kind, w.persona, w.journey_id, w.journey_version, 'deviation', w.kind, w.step,
           g.1, g.2, g.3, g.4, g.5
    FROM (
        SELECT r.survey_kind AS survey_kind, r.persona AS persona, r.journey_id AS journey_id,
               r.journey_version AS journey_version, k.kind AS kind, k.step AS step, count() AS n,
               sum(r.score) AS s, sum(r.score * r.score) AS ss, uniqExact(r.instance_id) AS instances
        FROM responses AS r INNER JOIN kinds AS k ON k.instance_id = r.instance_id
        GROUP BY survey_kind, persona, journey_id, journey_version, kind, step
    ) AS w
    INNER JOIN totals AS t
        ON t.survey_kind = w.survey_kind AND t.persona = w.persona AND t.journey_id = w.journey_id
       AND t.journey_version = w.journey_version
    ARRAY JOIN [('with', toInt64(w.n), w.s, w.ss, toInt64(w.instances)),
                ('without', toInt64(t.n) - w.n, t.s - w.s, t.ss - w.ss, toInt64(t.instances) - w.instances)]
        AS g
)
SELECT survey_kind, persona, journey_id, journey_version, comparison, deviation_kind, step, grp,
       n AS responses, instances,
       if(n = 0, NULL, s / n) AS mean_score,
       if(n < 2, NULL, sqrt(greatest(ss - s * s / n, 0) / (n - 1))) AS stddev,
       if(n < 2, NULL, s / n - {_T_SQL} * sqrt(greatest(ss - s * s / n, 0) / (n - 1) / n)) AS ci_low,
       if(n < 2, NULL, s / n + {_T_SQL} * sqrt(greatest(ss - s * s / n, 0) / (n - 1) / n)) AS ci_high
FROM groups
ORDER BY survey_kind, persona, journey_id, journey_version, comparison, deviation_kind, step, grp""",
)

VIEWS = (
    CONFORMANCE_BY_PERSONA,
    CONFORMANCE_BY_PERSONA_DAY,
    DEVIATIONS_BY_STEP,
    FRICTION_BY_TOUCHPOINT_HOUR,
    SUPPORT_CONTACT_DRIVERS,
    SURVEY_CONFORMANCE,
    DELIGHT_BY_ASSOCIATE,
    QUARANTINE_BY_REASON,
)
