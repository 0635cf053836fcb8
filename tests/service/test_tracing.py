"""The service's request tracing in process: one span per request, recorded only when sampled, ids either way."""

import asyncio
from typing import Any

import httpx
import pytest
from bentoml._internal.context import trace_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from bentos.tracing import RequestSpanOnly

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def request_id(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, then answers the request id the tracing set for it (as BentoML's response header does) and
    the current span's trace and span ids (which BentoML's log lines carry)."""
    while (await receive()).get("more_body"):
        pass
    current = trace.get_current_span().get_span_context()
    ids = f"{trace_context.request_id or 0:016x} {current.trace_id:032x} {current.span_id:016x}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": ids.encode()})


class Recorded(SpanProcessor):
    """Every span recorded, sampled or not (an exporter sees only the sampled ones)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def traced(sample_rate: float, headers: dict[str, str] | None = None, calls: int = 1) -> tuple[list[str], list[Any]]:
    """The ids `calls` requests got (request id, current trace id and span id), and the spans recorded meanwhile."""
    recorded = Recorded()
    provider = TracerProvider()
    provider.add_span_processor(recorded)
    app = RequestSpanOnly(request_id, tracer_provider=provider, sample_rate=sample_rate)

    async def run() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [(await client.post("/predict", content=b"{}", headers=headers)).text for _ in range(calls)]

    return asyncio.run(run()), recorded.spans


@pytest.mark.parametrize("headers", [None, {"traceparent": UNSAMPLED_PARENT}], ids=["no-parent", "unsampled-parent"])
def test_an_unsampled_request_gets_ids_and_records_nothing(headers: Any) -> None:
    answers, spans = traced(sample_rate=0.0, headers=headers, calls=3)
    assert spans == []
    ids = [answer.split() for answer in answers]
    assert len({request_id for request_id, _, _ in ids}) == 3
    for request_id, trace_id, span_id in ids:
        assert request_id == span_id != "0" * 16 and trace_id != "0" * 32  # the current span's: logs carry them
        if headers:
            assert trace_id == UNSAMPLED_PARENT.split("-")[1]  # the caller's trace continues, unrecorded


@pytest.mark.parametrize(
    ("sample_rate", "headers"), [(1.0, None), (0.0, {"traceparent": SAMPLED_PARENT})], ids=["sampled", "parent"]
)
def test_a_sampled_request_records_one_span_not_one_per_message(sample_rate: float, headers: Any) -> None:
    (answer,), spans = traced(sample_rate, headers)
    request_id, trace_id, span_id = answer.split()
    assert [span.name for span in spans] == ["POST /predict"]
    assert spans[0].context.trace_flags.sampled
    assert format(spans[0].context.span_id, "016x") == request_id == span_id
    assert format(spans[0].context.trace_id, "032x") == trace_id
    if headers:
        assert format(spans[0].context.trace_id, "032x") == SAMPLED_PARENT.split("-")[1]
