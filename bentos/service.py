"""The online prediction service: one pinned model version, its features fetched from Feast per request.

Which version: the `model_tag` argument (`bentoml build --arg model_tag=churn:v1` bakes it into the bento;
`bentoml serve --arg model_tag=...` for a local run), else `CICLO_MODEL_TAG`, else the registry's champion at the
moment the service is imported. The version is a class-level `BentoModel` reference, so a built bento records and
carries exactly that model, and it is read only from BentoML's local store (the bento's own store when serving a
bento), never pulled from anywhere else.

The request and response schemas are generated from the pinned model's lineage (its `FeatureSchema`) and the Feast
entity's key type, so they are only known once the model is chosen: that is why this module resolves the model and
reads its metadata at import time (no pipeline is loaded then; each worker loads it in `__init__`).

Unknown entities, missing and stale features are answered per row with `status` and `reason` and no score, with
HTTP 200 for the request: a request for many ids must not lose the good rows because one id is bad, and the
service never scores a vector the model would have to impute (`None` in, a plausible-looking number out).
"""

import gc
import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import NotFound
from bentoml.validators import ContentType
from feast import FeatureStore
from feast.value_type import ValueType
from pydantic import BaseModel, Field, Strict, StrictStr

from bentos.middleware import BearerTokenAuth, BodySizeLimit, JsonOnly
from bentos.schemas import MAX_ROWS, Prediction, entity_ids_type, feature_row_model, feature_rows_type
from cicloml.errors import ConfigError
from cicloml.feature_store import OnlineFeatureReader, open_store
from cicloml.models.row_scorer import row_scoring
from cicloml.prediction_log import PredictionLog
from cicloml.registry import LoadedModel, ModelRegistry, load_model, read_lineage
from cicloml.settings import Settings, get_settings
from cicloml.spec import load_spec
from cicloml.traffic import TrafficProfiler

LOOKUP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Feature lookups take well under a millisecond on SQLite and a few on Redis; the tail is what matters."""


class ServiceArguments(BaseModel):
    """Bento arguments (`--arg name=value` on `bentoml build` / `bentoml serve`)."""

    model_tag: str | None = None
    """The model version to serve (`name:version`); default CICLO_MODEL_TAG, then the champion."""


def pinned_model_tag(settings: Settings) -> str:
    """The model version to serve: the `model_tag` argument, else CICLO_MODEL_TAG, else the current champion."""
    tag = bentoml.use_arguments(ServiceArguments).model_tag or settings.model_tag
    if tag:
        return str(tag)
    spec = load_spec(settings.spec_path)
    champion = ModelRegistry(settings, spec.name).champion()
    if champion is None:
        raise ConfigError(
            f"no champion for {spec.name!r} yet: train one (python -m flows.train) or pass --arg model_tag=NAME:VERSION"
        )
    return champion


def stored_model(tag: str) -> bentoml.Model:
    """The model from BentoML's local store. Checked here because `BentoModel` would otherwise try to pull a
    missing model from BentoCloud: a service loads models only from the project's own store."""
    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise ConfigError(
            f"model {tag} is not in BentoML's model store; serve with BENTOML_HOME set to the state folder's "
            "bentoml/ (CICLO_STATE_DIR/bentoml), or build a bento that contains it"
        ) from None


def open_feature_store(settings: Settings) -> FeatureStore:
    return open_store(load_spec(settings.spec_path).features.repo, settings)


def entity_id_type(store: FeatureStore, feature_service: str) -> tuple[Any, Any]:
    """The request type of one entity id, from the Feast join key's declared type (bounded, so an id Feast cannot
    encode is a 400, not a failure inside the lookup), and an id of that type for warming up."""
    service = store.get_feature_service(feature_service)
    value_types = {
        column.dtype.to_value_type()
        for projection in service.feature_view_projections
        for column in store.get_feature_view(projection.name).entity_columns
    }
    if value_types == {ValueType.INT64}:
        return Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)], 0
    if value_types == {ValueType.INT32}:
        return Annotated[int, Strict(), Field(ge=-(2**31), le=2**31 - 1)], 0
    if value_types == {ValueType.STRING}:
        return Annotated[StrictStr, Field(min_length=1, max_length=256)], "0"
    raise ConfigError(
        f"feature service {feature_service!r}: entity key type(s) {sorted(map(str, value_types))} are not supported "
        "by the service (one INT64, INT32 or STRING join key)"
    )


@dataclass(frozen=True)
class ServiceMetrics:
    lookup_seconds: Any
    rows: Any
    profile_rows_dropped: Any


@cache
def service_metrics() -> ServiceMetrics:
    """Made in the worker, on first use: prometheus_client picks its multiprocess mode when a metric is created,
    and BentoML sets that up for its workers (bentoml.metrics, which did this, is deprecated in 1.4)."""
    from prometheus_client import Counter, Histogram

    return ServiceMetrics(
        lookup_seconds=Histogram(
            "cicloml_feature_lookup_seconds",
            "Online feature lookup latency per request (all ids of the request in one lookup).",
            ["feature_service"],
            buckets=LOOKUP_BUCKETS,
        ),
        rows=Counter(
            "cicloml_prediction_rows",
            "Rows answered, by endpoint and status (ok, unknown_entity, missing_values, stale_values).",
            ["endpoint", "status"],
        ),
        profile_rows_dropped=Counter(
            "cicloml_profile_rows_dropped",
            "Scored rows left out of the traffic profile because the worker's profiling buffer was full.",
        ),
    )


def start_traffic_profiler(settings: Settings, model_tag: str) -> TrafficProfiler | None:
    """This worker's profiler of live traffic (none when CICLO_PROFILE_TRAFFIC is off). Host and pid name its
    files: unique among the workers and replicas writing to one profiles folder at a time."""
    if not settings.profile_traffic:
        return None
    return TrafficProfiler(
        settings.profiles_dir,
        model_tag,
        worker=f"{socket.gethostname()}-{os.getpid()}",
        window_seconds=settings.profile_window_seconds,
        buffer_rows=settings.profile_buffer_rows,
    ).start()


def open_prediction_log(settings: Settings, model_tag: str) -> PredictionLog | None:
    """This worker's log of scored entities (none when CICLO_LOG_PREDICTIONS is off), in the profiles' windows."""
    if not settings.log_predictions:
        return None
    return PredictionLog(
        settings.prediction_log_dir,
        model_tag,
        worker=f"{socket.gethostname()}-{os.getpid()}",
        window_seconds=settings.profile_window_seconds,
    )


SETTINGS = get_settings()
PINNED_MODEL = stored_model(pinned_model_tag(SETTINGS))
FEATURE_SERVICE = str(PINNED_MODEL.info.metadata["feature_service"])
FEATURES = read_lineage(PINNED_MODEL).features
EntityId, WARM_UP_ID = entity_id_type(open_feature_store(SETTINGS), FEATURE_SERVICE)
EntityIds = entity_ids_type(EntityId)
FeatureRow = feature_row_model(FEATURES)
FeatureRows = feature_rows_type(FeatureRow)
# A declared media type: without one BentoML derives it from the output's JSON schema on every response.
Predictions = Annotated[list[Prediction], ContentType("application/json")]


@bentoml.service(
    name="cicloml",
    workers=1,
    # Deliberate limits: a prediction takes milliseconds, so 10 s means something is stuck (504); past 256 requests
    # in flight a caller gets 429 at once instead of joining a queue that grows without bound. BentoML splits the
    # limit evenly across workers, and connections do not spread evenly (64 clients put up to 49 on one of two
    # workers here), so it is sized for that: a full queue on one worker waits well under a second.
    traffic={"timeout": 10, "max_concurrency": 256},
)
class PredictionService:
    """Scores entities with the pinned model on the features Feast holds for them, or on features the caller sends."""

    model_ref = bentoml.models.BentoModel(PINNED_MODEL.tag)

    def __init__(self) -> None:
        # One model and one feature reader per worker, for its lifetime.
        self.model: LoadedModel = load_model(self.model_ref)
        self.score_rows = row_scoring(self.model.pipeline, FEATURES)
        self.reader = OnlineFeatureReader(open_feature_store(get_settings()), FEATURE_SERVICE)
        self.metrics = service_metrics()
        self.traffic = start_traffic_profiler(get_settings(), self.model.tag)
        self.prediction_log = open_prediction_log(get_settings(), self.model.tag)
        self._warm_up()
        # Everything loaded so far lives as long as the worker. Frozen, the collector stops walking it: a full
        # collection over the ~400k objects of the loaded stack takes ~250 ms, a stall in some request's latency.
        gc.collect()
        gc.freeze()

    def _warm_up(self) -> None:
        """Run one lookup and one prediction before the worker reports ready, so that the first caller does not
        pay for lazy imports and first-call setup (several hundred milliseconds otherwise)."""
        self.reader.fetch([WARM_UP_ID])
        self.score_rows({name: [None] for name in FEATURES.features})

    def __is_ready__(self) -> bool:
        """/readyz: ready once this worker holds the model and an open feature reader."""
        return getattr(self, "model", None) is not None and getattr(self, "reader", None) is not None

    @bentoml.on_shutdown
    def close_traffic_logs(self) -> None:
        """Write this worker's partial traffic profile and prediction log. BentoML runs it in each worker on graceful
        shutdown (SIGTERM), once the requests in flight are answered."""
        if getattr(self, "traffic", None) is not None:
            self.traffic.close()
        if getattr(self, "prediction_log", None) is not None:
            self.prediction_log.close()

    # The endpoints are `async def` although they block: a request is 1-3 ms under the GIL (a SQLite or nearby
    # Redis lookup and a small model), so running it on the event loop beats handing it to BentoML's thread pool,
    # which costs a thread switch and GIL hand-offs per request (about 30% more requests/s here, measured with
    # benchmarks/bench_serve.py). Throughput scales with workers.
    @bentoml.api(route="/predict")
    async def predict(self, entity_ids: EntityIds) -> Predictions:  # type: ignore[valid-type]
        """Score entities by id on their online features; unknown, missing or stale ones get a status, no score."""
        return self._predict_entities(entity_ids, "predict")

    @bentoml.api(route="/predict_features")
    async def predict_features(self, rows: FeatureRows) -> Predictions:  # type: ignore[valid-type]
        """Score feature vectors the caller already has (every feature of the model's feature service required)."""
        columns = {name: [getattr(row, name) for row in rows] for name in FEATURES.features}
        scores = self._score(columns)
        self._profile(columns, scores)
        self.metrics.rows.labels("predict_features", "ok").inc(len(scores))
        return [self._scored(None, value) for value in scores]

    # max_latency_ms is a shedding threshold, not a batching window: BentoML's dispatcher answers 503 to a request
    # it predicts will wait longer (its latency model is crude while it warms up, so 25 ms shed requests at once
    # on two cores). How long it holds a batch open is learned separately from measured call times.
    @bentoml.api(route="/predict_batch", batchable=True, max_batch_size=MAX_ROWS, max_latency_ms=1000)
    async def predict_batch(self, entity_ids: EntityIds) -> Predictions:  # type: ignore[valid-type]
        """`/predict` with adaptive batching: concurrent requests are merged into one lookup and one model call."""
        return self._predict_entities(entity_ids, "predict_batch")

    # --- scoring ------------------------------------------------------------------------------------------------

    def _predict_entities(self, entity_ids: list[Any], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        online = self.reader.fetch(entity_ids)
        self.metrics.lookup_seconds.labels(FEATURE_SERVICE).observe(time.perf_counter() - started)

        usable = [row for row, status in enumerate(online.statuses) if status == "ok"]
        columns = {name: [online.columns[name][row] for row in usable] for name in FEATURES.features}
        usable_scores = self._score(columns)
        self._profile(columns, usable_scores)
        if self.prediction_log is not None and usable_scores:
            self.prediction_log.record([entity_ids[row] for row in usable], usable_scores)
        scores = dict(zip(usable, usable_scores, strict=True))
        issues = iter(online.issues)  # one per row that is not ok, in row order
        predictions = []
        for row, (entity_id, status) in enumerate(zip(entity_ids, online.statuses, strict=True)):
            if status == "ok":
                predictions.append(self._scored(entity_id, scores[row]))
            else:
                issue = next(issues)
                predictions.append(
                    Prediction(
                        entity_id=entity_id,
                        status=issue.status,
                        score=None,
                        decision=None,
                        reason=issue.reason,
                        model_tag=self.model.tag,
                    )
                )
        for status in set(online.statuses):
            self.metrics.rows.labels(endpoint, status).inc(online.statuses.count(status))
        return predictions

    def _score(self, columns: dict[str, list[Any]]) -> list[float]:
        if not columns[FEATURES.features[0]]:
            return []
        return self.score_rows(columns).tolist()

    def _profile(self, columns: dict[str, list[Any]], scores: list[float]) -> None:
        """Hand scored rows to the traffic profiler (a buffer append; profiling happens on its own thread)."""
        if self.traffic is not None and scores:
            dropped = self.traffic.record(columns, scores)
            if dropped:
                self.metrics.profile_rows_dropped.inc(dropped)

    def _scored(self, entity_id: Any, value: float) -> Prediction:
        return Prediction(
            entity_id=entity_id,
            status="ok",
            score=value,
            decision=value >= self.model.lineage.threshold,
            reason=None,
            model_tag=self.model.tag,
        )


def _install_middleware(settings: Settings) -> None:
    """Auth outermost (a caller without the token learns nothing, not even the size limit), then the media type,
    then the size limit."""
    if settings.api_token is not None:
        PredictionService.add_asgi_middleware(BearerTokenAuth, token=settings.api_token.get_secret_value())
    PredictionService.add_asgi_middleware(JsonOnly)
    PredictionService.add_asgi_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)


_install_middleware(SETTINGS)
