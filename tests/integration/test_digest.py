"""Team digests on seeded simulations: an injected incident ranks first, injected praise is celebrated."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.reports.digest import Period, TeamDigest, build_digest
from streams.reports.digest_render import markdown, page
from streams.sim.simulator import DAY, PRAISE_COMMENT, Incident, Simulation, SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

PERIOD = Period(datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 19, tzinfo=UTC))  # days 7..14
PRAISED = "assoc-007"
INCIDENT = Incident("store.purchase", 8 * DAY, 4 * DAY, 0.6)  # inside PERIOD


@dataclass(frozen=True)
class Run:
    """A simulation run live into its own data dir."""

    data_dir: Path
    simulation: Simulation


def _run(root: Path, model: JourneyModel, incidents: tuple[Incident, ...]) -> Run:
    config = SimulationConfig(customers=1500, days=14, seed=5, incidents=incidents, praised_associate=PRAISED)
    simulation = simulate(model, config)
    events = root / "events.jsonl"
    events.write_bytes(b"\n".join(simulation.lines) + b"\n")
    data_dir = root / "data"
    assert main(["run", "--input", str(events), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    return Run(data_dir, simulation)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory, model: JourneyModel) -> Run:
    """Two weeks of traffic with store.purchase failing 60% of the time for four days of week 2."""
    return _run(tmp_path_factory.mktemp("incident"), model, (INCIDENT,))


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory, model: JourneyModel) -> Run:
    """The same traffic (same seed) without the incident."""
    return _run(tmp_path_factory.mktemp("control"), model, ())


def _digest(run: Run, model: JourneyModel, team: str, period: Period = PERIOD) -> TeamDigest:
    store = ClickHouseProjectionStore.embedded(run.data_dir)
    try:
        return build_digest(store, model, team, period)
    finally:
        store.close()


def test_a_touchpoint_with_an_injected_incident_ranks_first_for_its_team(
    incident: Run, control: Run, model: JourneyModel
) -> None:
    """retail's digest ranks store.purchase first, mostly failures and up on the week before; without
    the incident store.purchase is not first, so the ranking comes from the incident."""
    with_incident = _digest(incident, model, "retail")
    first = with_incident.touchpoints[0]
    assert first.touchpoint == "store.purchase"
    assert first.dominant_kind == "failure"
    assert first.change is not None
    assert first.change > 0
    assert first.events > 0
    assert first.rate == pytest.approx(1000 * first.signals / first.events)
    without = _digest(control, model, "retail")
    assert without.touchpoints[0].touchpoint != "store.purchase"
    assert sorted(item.touchpoint for item in with_incident.touchpoints) == [
        "store.fitting",
        "store.purchase",
        "store.visit",
        "web.reserve_in_store",
    ]
    text = markdown(with_incident)
    assert "| 1 | store.purchase |" in text
    assert "most friction at store.purchase" in text


def test_an_associate_with_injected_praise_is_celebrated_in_their_words(
    incident: Run, model: JourneyModel
) -> None:
    """The praised associate is among the associates customers thanked, and the words quoted first are
    a praising customer's (from the simulator's ground truth), with the customer's path."""
    digest = _digest(incident, model, "retail")
    truth = {(customer, event_id) for customer, event_id, associate in incident.simulation.praise}
    assert {associate for _, _, associate in incident.simulation.praise} == {PRAISED}
    thanked = {associate.employee_id: associate for associate in digest.associates}
    assert PRAISED in thanked
    assert thanked[PRAISED].comments >= 2
    quote = digest.praise[0]
    assert (quote.employee_id, quote.comment) == (PRAISED, PRAISE_COMMENT)
    assert (quote.customer_id, quote.event_id) in truth
    assert quote.path
    assert quote.path[-1].startswith("store.")  # the path up to the survey ends at the associate's touchpoint
    assert f"served by <b>{PRAISED}</b>" in page(digest)


def test_voice_of_the_customer_is_worst_first_with_path_and_what_it_followed(
    incident: Run, model: JourneyModel
) -> None:
    """Negative survey comments attributed to the team's touchpoints, worst score first, each with
    the customer's path up to the survey."""
    digest = _digest(incident, model, "ecommerce")
    assert digest.voices
    assert [voice.goodness for voice in digest.voices] == sorted(voice.goodness for voice in digest.voices)
    for voice in digest.voices:
        assert voice.sentiment == "negative"
        assert voice.comment
        assert set(voice.touchpoints) <= set(digest.owned)
        assert voice.path
        assert not voice.path[-1].endswith("_survey") or voice.path.count(voice.path[-1]) > 1
        assert PERIOD.start <= voice.occurred_at < PERIOD.end


def test_a_period_without_data_says_so(incident: Run, model: JourneyModel, tmp_path: Path) -> None:
    """A digest of a period with nothing in it is written and says "No data" instead of failing."""
    html_path, md_path = tmp_path / "d.html", tmp_path / "d.md"
    assert (
        main(
            [
                "digest",
                "--team",
                "sales",
                "--until",
                "2025-01-01",
                "--since",
                "7d",
                "--data-dir",
                str(incident.data_dir),
                "--html",
                str(html_path),
                "--markdown",
                str(md_path),
            ]
        )
        == 0
    )
    assert "No data: nothing happened at sales's touchpoints" in md_path.read_text()
    assert "No data" in html_path.read_text()


def test_all_writes_one_offline_page_per_team(incident: Run, model: JourneyModel, tmp_path: Path) -> None:
    """--all --html DIR writes every team's digest; the pages load nothing from the network."""
    out = tmp_path / "digests"
    assert (
        main(
            [
                "digest",
                "--all",
                "--until",
                "2026-01-19",
                "--data-dir",
                str(incident.data_dir),
                "--html",
                str(out),
            ]
        )
        == 0
    )
    teams = sorted(team.id for team in model.registry.teams)
    assert sorted(path.name for path in out.iterdir()) == [f"digest-{team}.html" for team in teams]
    for path in out.iterdir():
        text = path.read_text()
        assert "<script" not in text
        assert "http://" not in text
        assert "https://" not in text
    assert "Celebrations" in (out / "digest-retail.html").read_text()


def test_unknown_team_is_refused_with_the_known_ones(
    incident: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in --team names the teams that exist."""
    assert main(["digest", "--team", "retial", "--data-dir", str(incident.data_dir)]) == 1
    assert "no team 'retial' in the registry; teams: marketing, ecommerce, retail" in capsys.readouterr().err


class Receiver:
    """A webhook on 127.0.0.1 that records every POST (headers and JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.posts.append((dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook answering 200."""
    running = Receiver()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


def test_send_posts_a_compact_digest_to_the_team_webhook(
    incident: Run, receiver: Receiver, tmp_path: Path
) -> None:
    """--send posts a Slack-compatible message to the team's webhooks from the registry."""
    text = example_journeys().read_text()
    team = '- {id: retail, description: "Stores and associates"}'
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(
        text.replace(team, f'- {{id: retail, destinations: [{{webhook: "{receiver.url}"}}]}}')
    )
    assert (
        main(
            [
                "digest",
                "--team",
                "retail",
                "--until",
                "2026-01-19",
                "--send",
                "--journeys",
                str(journeys),
                "--data-dir",
                str(incident.data_dir),
                "--markdown",
                str(tmp_path / "r.md"),
            ]
        )
        == 0
    )
    ((headers, body),) = receiver.posts
    assert headers["Idempotency-Key"].startswith("digest-")
    assert "1. `store.purchase`" in body["text"]
    assert "mostly failures" in body["text"]
    assert body["metadata"]["event_type"] == "touchpath_digest"
    assert body["metadata"]["event_payload"]["top_touchpoints"][0] == "store.purchase"
