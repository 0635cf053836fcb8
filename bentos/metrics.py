"""BentoML's request metrics, labelled by route rather than by raw path, so that no caller can grow them.

BentoML 1.4 labels its request counters, durations and in-progress gauges with `scope["path"]`, the path as sent:
every distinct path a scanner tries (answered 401 or 404) is a new time series in every worker, kept until it
restarts (`RunnerTrafficMetricsMiddleware` in `bentoml/_internal/server/http/instruments.py`; no upstream issue found).
5,000 GETs to random paths took a worker from 569 to 718 MB and `/metrics` from 107 KB to 41 MB. Here the
same middleware keeps its metrics and its place (outermost, so it still times everything, refusals included), but
an endpoint label is one of the service's routes, `UNROUTED`, or, for a request refused before the service saw it
(401, 404, 413, 415), `REFUSED`.
"""

from typing import Any

from bentoml._internal.context import server_context
from bentoml._internal.server.http import instruments

BENTOML_ROUTES = ("/", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz", "/metrics")
"""What BentoML serves beside the service's own APIs."""
STATIC_PREFIX = "/static_content/"
UNROUTED = "unrouted"
"""The one label for every path the service has no route for."""
REFUSED = "refused"
"""The one label for requests refused before the service saw them: by the token, the route, the size, the type."""
REFUSED_STATUSES = frozenset({401, 404, 413, 415})

LABELLED_METRICS = (
    "metrics_request_duration",
    "metrics_request_total",
    "metrics_request_in_progress",
    "metrics_websocket_connections",
    "metrics_websocket_data_received",
    "metrics_websocket_data_sent",
)


def route_label(path: str, routes: frozenset[str]) -> str:
    """The endpoint label of a request for `path`: its route, or `UNROUTED`."""
    if path in routes:
        return path
    return STATIC_PREFIX.rstrip("/") if path.startswith(STATIC_PREFIX) else UNROUTED


class _LabelledByRoute:
    """A metric whose `endpoint` label is mapped to a route before BentoML's middleware uses it."""

    def __init__(self, metric: Any, routes: frozenset[str]) -> None:
        self._metric = metric
        self._routes = routes

    def labels(self, **labels: Any) -> Any:
        refused = labels.get("http_response_code") in REFUSED_STATUSES
        labels["endpoint"] = REFUSED if refused else route_label(labels["endpoint"], self._routes)
        return self._metric.labels(**labels)


class RouteLabelledTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """`RunnerTrafficMetricsMiddleware` (BentoML's HTTP metrics for a service) with route labels."""

    def _setup(self) -> None:  # type: ignore[override]
        super()._setup()  # BentoML injects the metrics client and buckets
        routes = frozenset([*server_context.service_routes, *BENTOML_ROUTES])
        for name in LABELLED_METRICS:
            setattr(self, name, _LabelledByRoute(getattr(self, name), routes))


def label_requests_by_route() -> None:
    """Make BentoML's service app build its metrics middleware with route labels (it imports the class by name
    from `instruments` when it assembles the app, in each worker)."""
    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledTrafficMetrics  # type: ignore[misc]
