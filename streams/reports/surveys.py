"""The "Surveys against conformance" section of the HTML report, read from the survey_conformance view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.reports.html import esc, html_table
from streams.store.clickhouse import ClickHouseProjectionStore

SQL = """SELECT survey_kind, persona, journey_id, journey_version, comparison, deviation_kind, step, grp,
       responses, mean_score, ci_low, ci_high
FROM survey_conformance(scenario = {scenario:String})"""
TOP_DEVIATIONS = 15
# Below this many responses a t interval is too unstable to call two groups apart (two equal scores
# give a zero-width interval): such groups are shown, marked "too few" and ranked last.
MIN_RESPONSES = 5


@dataclass(frozen=True, slots=True)
class Group:
    """One group's responses, mean score and 95% t interval (None below 2 responses)."""

    responses: int
    mean: float | None
    low: float | None
    high: float | None

    def text(self) -> str:
        """'4.02 [3.88, 4.17] (n 136)'; a dash for an empty group."""
        if self.mean is None:
            return "—"
        interval = (
            f" [{self.low:.2f}, {self.high:.2f}]" if self.low is not None and self.high is not None else ""
        )
        return f"{self.mean:.2f}{interval} (n {self.responses})"


def _difference(first: Group, second: Group) -> float | None:
    return None if first.mean is None or second.mean is None else first.mean - second.mean


def _clear(first: Group, second: Group) -> str:
    """Whether the two intervals are apart (a difference small groups cannot explain alone)."""
    if min(first.responses, second.responses) < MIN_RESPONSES or None in (
        first.low,
        first.high,
        second.low,
        second.high,
    ):
        return "too few"
    apart = first.high < second.low or second.high < first.low  # type: ignore[operator]
    return "yes" if apart else "no"


def survey_conformance_html(store: ClickHouseProjectionStore, scenario: str = "live") -> str:
    """Scores of conformed vs deviated instances, then the deviations whose customers score worst."""
    _, rows = store.query(SQL, {"scenario": scenario})
    if not rows:
        return "<p class='note'>No survey response belongs to a journey instance in this scenario.</p>"
    pairs: dict[tuple[Any, ...], dict[str, Group]] = {}
    for kind, persona, jid, version, comparison, dev_kind, step, grp, n, mean, low, high in rows:
        key = (comparison, kind, persona, f"{jid}@{version}", dev_kind, step)
        pairs.setdefault(key, {})[grp] = Group(int(n), mean, low, high)
    conformance = []
    deviations = []
    for (comparison, kind, persona, journey, dev_kind, step), groups in sorted(pairs.items()):
        if comparison == "conformance":
            good, bad = (
                groups.get("conformed", Group(0, None, None, None)),
                groups.get("deviated", Group(0, None, None, None)),
            )
            delta = _difference(bad, good)
            conformance.append(
                (kind, persona, journey, good.text(), bad.text(),
                 "" if delta is None else f"{delta:+.2f}", _clear(bad, good))
            )  # fmt: skip
        else:
            with_, without = groups["with"], groups["without"]
            delta = _difference(with_, without)
            if delta is not None:
                worse = -delta if kind == "ces" else delta  # CES: a higher score is more effort
                few = with_.responses < MIN_RESPONSES  # ranked after the groups large enough to judge
                deviations.append(((few, worse), (kind, persona, journey, dev_kind, step or "(not a step)",
                                           with_.text(), without.text(), f"{delta:+.2f}",
                                           _clear(with_, without))))  # fmt: skip
    deviations.sort(key=lambda item: (item[0], item[1]))  # by (too few, how much worse)
    note = (
        "<p class='note'>Each survey response is joined to the journey instance whose path holds it and "
        "compared within its survey kind (CSAT 1–5, NPS 0–10, CES 1–7: for CES lower is better). Scores "
        "are mean [95% Student t interval of the mean] (n responses); “apart” says whether the two "
        "intervals do not overlap — with a few responses they are wide and a difference may be chance; "
        f"with fewer than {MIN_RESPONSES} responses in a group it says “too few”. "
        "Conformed = the instance's alignment cost is 0. SQL: "
        f"<code>SELECT * FROM survey_conformance(scenario='{esc(scenario)}')</code>.</p>"
    )
    first = html_table(
        ["survey", "persona", "journey", "conformed", "deviated", "deviated − conformed", "apart"],
        conformance,
    )
    second = (
        html_table(
            [
                "survey",
                "persona",
                "journey",
                "deviation",
                "step",
                "with it",
                "without it",
                "difference",
                "apart",
            ],
            [row for _, row in deviations[:TOP_DEVIATIONS]],
        )
        if deviations
        else "<p class='note'>No response belongs to an instance with a deviation.</p>"
    )
    return (
        note
        + "<h3>Conformed vs deviated journeys</h3>"
        + first
        + f"<h3>Deviations whose customers score worst (top {TOP_DEVIATIONS}; groups under "
        f"{MIN_RESPONSES} responses last)</h3>" + second
    )
