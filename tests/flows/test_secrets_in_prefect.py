"""A webhook whose error answer echoes its own URL: a flow whose alert fails records the failure in Prefect (its
state message, its logs) without the URL, its path or their encoded forms."""

from urllib.parse import quote

import pytest
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker

from cicloml.alerts import AlertDeliveryError, send_once
from tests.unit.test_alerts import PATH, Receiver

pytestmark = pytest.mark.slow


def test_a_failed_alert_leaves_no_secret_in_prefects_database(tmp_path):
    with Receiver(
        [404], echo='{{"error": "no webhook at {path}", "url": "{url}", "encoded": "{url_encoded}"}}'
    ) as hook:

        @flow(name="alert-that-fails")
        def alert() -> None:
            get_run_logger().info("sending the alert")
            send_once(hook.url, {"text": "drift"}, key="drift:test", ledger_dir=tmp_path, sleep=lambda _: None)

        state = alert(return_state=True)
        url = hook.url.get_secret_value()

    assert state.is_failed()
    with pytest.raises(AlertDeliveryError):
        state.result()
    APILogWorker.drain_all(timeout=30)  # Prefect ships logs to its API in batches, from a worker thread
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    recorded = [run.state.message or "", *(log.message for log in logs)]
    assert any("sending the alert" in text for text in recorded)  # the logs were read
    assert any("404" in text for text in recorded)  # and the failure is there, said plainly
    for secret in (url, PATH, quote(url, safe=""), quote(PATH, safe="")):
        assert not any(secret in text for text in recorded), secret
