"""Slack alerts against a real local HTTP server standing in for the incoming webhook."""

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from cicloml.alerts import AlertDeliveryError, alert_key, drift_message, send_once
from cicloml.drift import DriftReport, FeatureDrift, QualityIssue

WINDOW = datetime(2026, 11, 22, 13, tzinfo=timezone.utc)
PATH = "/services/T000/B000/secret-token-xyz"
"""The receiver's webhook path: in Slack's, the credential."""


class Receiver:
    """A webhook on a free loopback port: records each POST body, answers with the scripted statuses (then 200).

    With `echo`, a failure answers as some receivers and gateways do: its status line repeats the request path, and
    its body is `echo` with `{path}`, `{url}` and `{url_encoded}` filled in."""

    def __init__(self, statuses: list[int], echo: str | None = None) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                payload = b"ok" if status == 200 else b"server_error"
                if status != 200 and echo is not None:
                    url = receiver.url.get_secret_value()
                    payload = echo.format(path=self.path, url=url, url_encoded=quote(url, safe="")).encode()
                    self.send_response(status, f"No service at {self.path}")
                else:
                    self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = SecretStr(f"http://127.0.0.1:{self.server.server_port}{PATH}")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def report() -> DriftReport:
    def feature(column: str, score: float) -> FeatureDrift:
        return FeatureDrift(
            column=column,
            kind="numeric",
            method="hellinger",
            score=score,
            threshold=0.2,
            drifted=score > 0.2,
            reference_rows=4000,
            current_rows=800,
            reference_null_rate=0.0,
            current_null_rate=0.0,
        )

    return DriftReport(
        model_tag="churn:abc",
        window_start=WINDOW,
        window_end=WINDOW.replace(hour=14),
        min_drifted_features=1,
        features=[feature("monthly_charges", 0.28), feature("tenure_days", 0.13)],
        prediction=None,
        quality_issues=[QualityIssue(column="monthly_charges", rule="out_of_range", detail="30% above max")],
    )


@pytest.fixture
def no_sleep() -> Iterator[list[float]]:
    waits: list[float] = []
    yield waits


def message(report: DriftReport) -> dict:
    return drift_message(
        report,
        flow_run_url="http://prefect.local/runs/1",
        report_url="file:///tmp/drift.html",
        health_url="file:///tmp/health/churn.html",
    )


def test_the_message_names_the_model_window_drifted_features_and_links(report):
    body = message(report)
    text = json.dumps(body)
    assert body["text"] == "Drift in churn:abc: 1 feature(s) differ from training in 2026-11-22 13:00–14:00 UTC"
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "section", "section", "context"]
    assert (
        "`monthly_charges` hellinger 0.280 (threshold 0.2)" in text
        and "tenure_days" not in text.split("Data quality")[0]
    )
    assert "<http://prefect.local/runs/1|Flow run>" in text and "<file:///tmp/drift.html|Drift report>" in text
    assert "<file:///tmp/health/churn.html|Model health>" in text


def test_two_runs_for_the_same_window_post_exactly_once(report, tmp_path, no_sleep):
    key = alert_key(report.model_tag, report.window_start)
    with Receiver([]) as slack:
        first = send_once(slack.url, message(report), key=key, ledger_dir=tmp_path, sleep=no_sleep.append)
        again = send_once(slack.url, message(report), key=key, ledger_dir=tmp_path, sleep=no_sleep.append)
        other = send_once(slack.url, message(report), key=key + "-next", ledger_dir=tmp_path, sleep=no_sleep.append)
    assert (first.status, again.status, other.status) == ("sent", "already_sent", "sent")
    assert len(slack.bodies) == 2 and slack.bodies[0] == message(report)


def test_concurrent_runs_for_the_same_window_post_exactly_once(report, tmp_path):
    key = alert_key(report.model_tag, report.window_start)
    with Receiver([]) as slack:
        results: list[str] = []

        def run() -> None:
            results.append(send_once(slack.url, message(report), key=key, ledger_dir=tmp_path).status)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == ["already_sent"] * 3 + ["sent"]
    assert len(slack.bodies) == 1


def test_a_500_then_a_429_are_retried_until_it_is_delivered(report, tmp_path, no_sleep):
    with Receiver([500, 429]) as slack:
        delivery = send_once(slack.url, message(report), key="k", ledger_dir=tmp_path, sleep=no_sleep.append)
    assert (delivery.status, delivery.attempts, len(slack.bodies)) == ("sent", 3, 3)
    assert no_sleep == [1.0, 0.0]  # backoff after the 500, Slack's Retry-After after the 429


def test_repeated_500s_fail_visibly_without_the_url_and_a_rerun_tries_again(report, tmp_path, no_sleep, caplog):
    caplog.set_level(logging.DEBUG)
    with Receiver([500] * 10) as slack:
        with pytest.raises(AlertDeliveryError, match="answered 500") as failure:
            send_once(slack.url, message(report), key="k", ledger_dir=tmp_path, sleep=no_sleep.append)
        assert len(slack.bodies) == 4
        secret = slack.url.get_secret_value()
        assert "secret-token-xyz" not in str(failure.value) and secret not in caplog.text
        slack.statuses = []
        assert send_once(slack.url, message(report), key="k", ledger_dir=tmp_path).status == "sent"


def test_an_unreachable_webhook_fails_without_the_url(report, tmp_path, no_sleep, caplog):
    caplog.set_level(logging.DEBUG)
    with Receiver([]) as slack:
        url = slack.url
    with pytest.raises(AlertDeliveryError, match="reaching the Slack webhook") as failure:
        send_once(url, message(report), key="k", ledger_dir=tmp_path, sleep=no_sleep.append)
    assert "secret-token-xyz" not in str(failure.value) and "secret-token-xyz" not in caplog.text


def test_without_a_webhook_nothing_is_sent(report, tmp_path):
    assert send_once(None, message(report), key="k", ledger_dir=tmp_path).status == "no_webhook"
    assert not any(tmp_path.iterdir())


ECHOES = {
    "path": "no_service: POST {path} is not a webhook",
    "url": "no_service: {url}",
    "encoded path": "no_service: " + quote(PATH, safe=""),
    "encoded path, lower-case hex": "no_service: " + quote(PATH, safe="").lower(),
    "encoded url": "forwarding failed for url={url_encoded}",
    "inside JSON": '{{"error": "no_service", "request": {{"method": "POST", "path": "{path}"}}}}',
}


def leaks(text: str, url: str) -> list[str]:
    """The forms of the webhook URL that `text` holds (the token itself in any case, or the URL or path in any
    encoding)."""
    forms = [url, PATH, quote(PATH, safe=""), quote(url, safe=""), "secret-token-xyz"]
    return [form for form in forms if form.lower() in text.lower()]


@pytest.mark.parametrize("status, attempts", [(404, 1), (500, 4)], ids=["404 not retried", "500 retried"])
@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
def test_an_error_answer_that_repeats_the_url_is_redacted_in_the_error_and_the_log(
    report, tmp_path, no_sleep, caplog, status, attempts, echo
):
    caplog.set_level(logging.DEBUG)
    with Receiver([status] * 10, echo=echo) as slack:
        url = slack.url.get_secret_value()
        with pytest.raises(AlertDeliveryError, match=rf"answered {status} No service at \[redacted\]: ") as failure:
            send_once(slack.url, message(report), key="k", ledger_dir=tmp_path, sleep=no_sleep.append)
    assert len(slack.bodies) == attempts and len(no_sleep) == attempts - 1
    error = str(failure.value)
    assert "[redacted]" in error.split("[redacted]: ", 1)[1]  # the body is there, its echo taken out
    assert leaks(error, url) == [] and leaks(caplog.text, url) == []
    assert failure.value.__cause__ is None and failure.value.__context__ is None  # no chained httpx error to log


def test_a_transport_error_that_names_the_url_is_redacted(report, tmp_path, no_sleep, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    url = f"https://hooks.slack.example{PATH}"

    def refuse(target: str, **_: object) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {target} (proxy said: no route to {quote(PATH, safe='')})")

    monkeypatch.setattr(httpx, "post", refuse)
    with pytest.raises(AlertDeliveryError, match="ConnectError reaching the Slack webhook: cannot reach") as failure:
        send_once(SecretStr(url), message(report), key="k", ledger_dir=tmp_path, sleep=no_sleep.append)
    assert len(no_sleep) == 3
    assert leaks(str(failure.value), url) == [] and leaks(caplog.text, url) == []
    assert failure.value.__cause__ is None and failure.value.__context__ is None
