"""Webhook delivery: retries with backoff, one recorded outcome per attempt, never blocking the caller."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from streams.alerting.delivery import DeliveryJob, Outcome, RetryPolicy, WebhookDelivery, redact_url

FAST = RetryPolicy(attempts=4, first_delay=0.001, max_delay=0.01, timeout=1.0)
JOB = DeliveryJob("a1", "ecommerce", "https://hooks.example.com/services/T0/B0/secret", b"{}")


class Receiver:
    """A fake webhook answering with a scripted list of statuses (an exception means no answer)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.calls.append((url, body, dict(headers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _deliver(receiver: Receiver, policy: RetryPolicy = FAST) -> WebhookDelivery:
    delivery = WebhookDelivery(policy, post=receiver)
    delivery.submit(JOB)
    delivery.close(timeout=10)
    return delivery


def test_failed_attempts_are_retried_until_delivered_and_each_is_recorded() -> None:
    """A 503 and a refused connection are retried; every attempt's outcome is kept, in order."""
    receiver = Receiver(503, ConnectionRefusedError("refused"), 200)
    attempts = _deliver(receiver).take_attempts()
    assert [(item.attempt, item.outcome, item.status_code) for item in attempts] == [
        (1, Outcome.FAILED, 503),
        (2, Outcome.FAILED, None),
        (3, Outcome.DELIVERED, 200),
    ]
    assert "refused" in attempts[1].error
    assert receiver.calls[0][2]["Idempotency-Key"] == "a1"
    assert receiver.calls[0][2]["Content-Type"] == "application/json"


def test_a_destination_that_keeps_failing_is_reported_not_dropped() -> None:
    """After the last attempt the job is `gave_up` and the destination shows up as failing."""
    delivery = _deliver(Receiver(500))
    attempts = delivery.take_attempts()
    assert [item.outcome for item in attempts] == [Outcome.FAILED] * 3 + [Outcome.GAVE_UP]
    ((destination, error),) = delivery.failing().items()
    assert destination == "https://hooks.example.com/services/… (team ecommerce)"
    assert "gave_up after attempt 4" in error


def test_a_refusal_is_not_retried() -> None:
    """A 4xx other than 408/429 means the payload will never be accepted: one attempt, `rejected`."""
    receiver = Receiver(400)
    attempts = _deliver(receiver).take_attempts()
    assert [item.outcome for item in attempts] == [Outcome.REJECTED]
    assert len(receiver.calls) == 1


def test_submit_returns_while_a_destination_hangs() -> None:
    """Event processing never waits for a webhook: submit returns while the receiver is stuck."""
    release = threading.Event()

    def stuck(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        release.wait(10)
        return 200

    delivery = WebhookDelivery(FAST, post=stuck)
    accepted = [delivery.submit(DeliveryJob(f"a{i}", "t", "http://127.0.0.1:9/x", b"{}")) for i in range(50)]
    assert all(accepted)
    assert delivery.pending() == 50
    release.set()
    delivery.close(timeout=10)
    assert [item.outcome for item in delivery.take_attempts()] == [Outcome.DELIVERED] * 50


def test_jobs_still_waiting_when_delivery_stops_are_recorded_as_unsent() -> None:
    """Stopping with retries pending leaves an `unsent` record, not a silent loss."""
    slow = RetryPolicy(attempts=3, first_delay=60.0, timeout=1.0)
    tried = threading.Event()
    delivery = WebhookDelivery(slow, post=Receiver(503), on_attempt=lambda _: tried.set())
    delivery.submit(JOB)
    assert tried.wait(10)
    delivery.close(timeout=0.05)
    outcomes = [item.outcome for item in delivery.take_attempts()]
    assert outcomes == [Outcome.FAILED, Outcome.UNSENT]


def test_a_full_queue_drops_with_a_record() -> None:
    """Beyond the queue bound a job is refused and recorded as `dropped`."""
    release = threading.Event()

    def stuck(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        release.wait(10)
        return 200

    delivery = WebhookDelivery(FAST, post=stuck, max_queue=2)
    results = [delivery.submit(DeliveryJob(f"a{i}", "t", "http://127.0.0.1:9/x", b"{}")) for i in range(5)]
    release.set()
    delivery.close(timeout=10)
    assert results.count(False) >= 2
    assert Outcome.DROPPED in {item.outcome for item in delivery.take_attempts()}


def test_webhook_secrets_are_not_shown() -> None:
    """Only the host and first path segment of a webhook URL are shown or stored."""
    assert (
        redact_url("https://hooks.slack.com/services/T000/B000/XXXX") == "https://hooks.slack.com/services/…"
    )
    assert redact_url("http://127.0.0.1:8080/hook?token=s") == "http://127.0.0.1:8080/hook?…"
