"""BentoML's request tracing, at the cost of what it exports.

BentoML 1.4 wraps every service app in OpenTelemetry's ASGI middleware, with a sampler that records every span,
sampled or not (`TraceIdRatioBasedAlwaysRecording`, "so that we can get the trace_id"), and the middleware opens a
child span for each ASGI `receive` and `send` besides the request's own: five recorded spans per prediction, each
with its attributes, although an exporter only ever receives sampled spans and, without `tracing.exporter_type`,
nothing receives any. Measured on a worker serving a no-op endpoint with this service's middleware (wrk, 8
connections, the worker's CPU time per request): ~480 µs as BentoML sets it up, ~360 µs without the message spans,
~305 µs with one unrecorded span, ~210 µs without the middleware at all.

Here a request that can be sampled gets one span, recorded only when sampled: the same sampling decisions (the
configured `tracing.sample_rate`, a remote parent's decision honoured), and a sampled request's span exported as
before, without the per-message children. A request that cannot be (a sample rate of 0, BentoML's default, and no
trace propagated by the caller) skips the middleware: it only gets the ids a span would have had. Either way the
ids are the current span's, so the access log and `X-BentoML-Request-ID` carry them as before.
"""

from typing import Any

import opentelemetry.instrumentation.asgi as otel_asgi
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.context import trace_context
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext

_OpenTelemetryMiddleware = otel_asgi.OpenTelemetryMiddleware


def _note_request_id(span: Span, _scope: dict[str, Any]) -> None:
    """BentoML's hook, reading the id from any span: an unrecorded span has no `context` attribute."""
    trace_context.request_id = span.get_span_context().span_id


class RequestSpanOnly(_OpenTelemetryMiddleware):
    """OpenTelemetry's ASGI middleware with one span per request, recorded only when sampled, and none made for a
    request that cannot be sampled."""

    def __init__(
        self, app: Any, *, tracer_provider: TracerProvider, sample_rate: float | None = None, **options: Any
    ) -> None:
        """`sample_rate`: BentoML's `tracing.sample_rate` unless given. The provider is BentoML's, the process's
        one: its exporters stay, its sampler stops recording what it does not sample."""
        rate = BentoMLContainer.tracing.sample_rate.get() if sample_rate is None else sample_rate
        tracer_provider.sampler = ParentBased(TraceIdRatioBased(rate or 0.0))
        options.update(server_request_hook=_note_request_id, exclude_spans=["receive", "send"])
        super().__init__(app, tracer_provider=tracer_provider, **options)
        self.new_ids = tracer_provider.id_generator
        self.samples_roots = bool(rate)
        # The headers a caller's trace arrives in (W3C's `traceparent` by default; OTEL_PROPAGATORS may add others).
        self.trace_headers = frozenset(field.lower().encode() for field in propagate.get_global_textmap().fields)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.samples_roots or self._carries_trace(scope):
            return await super().__call__(scope, receive, send)
        span = NonRecordingSpan(SpanContext(self.new_ids.generate_trace_id(), self.new_ids.generate_span_id(), False))
        _note_request_id(span, scope)
        token = context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)

    def _carries_trace(self, scope: dict[str, Any]) -> bool:
        return any(name in self.trace_headers for name, _ in scope["headers"])


def trace_requests_only() -> None:
    """Make BentoML's service app build its tracing middleware as `RequestSpanOnly` (it imports the class by name
    from the instrumentation module when it assembles the app, in each worker)."""
    otel_asgi.OpenTelemetryMiddleware = RequestSpanOnly  # type: ignore[misc,assignment]
