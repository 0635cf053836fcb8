"""The service's request tracing in process: one span per request, recorded only when sampled, ids either way."""

import asyncio
from typing import Any

import httpx
import pytest
from bentoml._internal.context import trace_context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from bentos.tracing import RequestSpanOnly

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def request_id(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, then answers the request id the tracing set for it (as BentoML's response header does)."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": format(trace_context.request_id or 0, "016x").encode()})


class Recorded(SpanProcessor):
    """Every span recorded, sampled or not (an exporter sees only the sampled ones)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def traced(sample_rate: float, headers: dict[str, str] | None = None, calls: int = 1) -> tuple[list[str], list[Any]]:
    """The request ids `calls` requests got, and the spans recorded meanwhile."""
    recorded = Recorded()
    provider = TracerProvider()
    provider.add_span_processor(recorded)
    app = RequestSpanOnly(request_id, tracer_provider=provider, sample_rate=sample_rate)

    async def run() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [(await client.post("/predict", content=b"{}", headers=headers)).text for _ in range(calls)]

    return asyncio.run(run()), recorded.spans


def test_an_unsampled_request_gets_an_id_and_records_nothing() -> None:
    ids, spans = traced(sample_rate=0.0, calls=3)
    assert spans == []
    assert len(set(ids)) == 3 and "0" * 16 not in ids


@pytest.mark.parametrize(
    ("sample_rate", "headers"), [(1.0, None), (0.0, {"traceparent": SAMPLED_PARENT})], ids=["sampled", "parent"]
)
def test_a_sampled_request_records_one_span_not_one_per_message(sample_rate: float, headers: Any) -> None:
    (request_id_text,), spans = traced(sample_rate, headers)
    assert [span.name for span in spans] == ["POST /predict"]
    assert spans[0].context.trace_flags.sampled
    assert format(spans[0].context.span_id, "016x") == request_id_text
    if headers:
        assert format(spans[0].context.trace_id, "032x") == SAMPLED_PARENT.split("-")[1]
