"""The online prediction service: one pinned model version, its features fetched from Feast per request.

Which version: the `model_tag` argument (`bentoml build --arg model_tag=churn:v1` bakes it into the bento;
`bentoml serve --arg model_tag=...` for a local run), else `CICLO_MODEL_TAG`, else the registry's champion at the
moment the service is imported. The version is a class-level `BentoModel` reference, so a built bento records and
carries exactly that model, and it is read only from BentoML's local store (the bento's own store when serving a
bento), never pulled from anywhere else.

The request and response schemas are generated from the pinned model's lineage (its `FeatureSchema`) and its feature
contract in Feast (join keys, request fields of on-demand views), so they are only known once the model is chosen:
that is why this module resolves the model and reads its metadata at import time (no pipeline is loaded then; each
worker loads it in `__init__`).

Unknown entities, missing and stale features are answered per row with `status` and `reason` and no score, with
HTTP 200 for the request: a request for many ids must not lose the good rows because one id is bad, and the
service never scores a vector the model would have to impute (`None` in, a plausible-looking number out).
"""

import functools
import gc
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import NotFound
from bentoml.validators import ContentType
from feast import FeatureStore
from pydantic import BaseModel

from bentos.metrics import label_requests_by_route
from bentos.middleware import BearerTokenAuth, BodySizeLimit, JsonOnly, KnownFieldsOnly, TruthfulOpenAPI
from bentos.openapi import truthful
from bentos.schemas import (
    MAX_ROWS,
    Prediction,
    Status,
    entity_ids_type,
    entity_rows_type,
    feature_row_model,
    feature_rows_type,
    takes_entity_ids,
    warm_up_entity,
)
from bentos.timeout import cancel_timers_when_done
from bentos.tracing import trace_requests_only
from cicloml.bento import BENTO_PROJECT
from cicloml.contract import FeatureContract
from cicloml.errors import ConfigError
from cicloml.feature_store import OnlineFeatureReader, OnlineFeatures, open_store
from cicloml.models.inputs import encode_columns
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


def project_spec_path(settings: Settings) -> Path:
    """The spec of the project served: the one a bento carries (`cicloml.bento` puts it beside this package), else
    (run from a checkout) CICLO_SPEC_PATH's. A bento serves what it was built with, wherever it runs."""
    bundled = Path(__file__).resolve().parents[1] / BENTO_PROJECT / "cicloml.yaml"
    return bundled if bundled.is_file() else settings.spec_path


def pinned_model_tag(settings: Settings) -> str:
    """The model version to serve: the `model_tag` argument, else CICLO_MODEL_TAG, else the current champion."""
    tag = bentoml.use_arguments(ServiceArguments).model_tag or settings.model_tag
    if tag:
        return str(tag)
    spec = load_spec(project_spec_path(settings))
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
    return open_store(load_spec(project_spec_path(settings)).features.repo, settings)


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
        segment_seconds=settings.profile_segment_seconds,
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
        segment_seconds=settings.profile_segment_seconds,
    )


SETTINGS = get_settings()
PINNED_MODEL = stored_model(pinned_model_tag(SETTINGS))
FEATURE_SERVICE = str(PINNED_MODEL.info.metadata["feature_service"])
FEATURES = read_lineage(PINNED_MODEL).features
# Exactly what the model reads from the feature service: the views behind its features, the on-demand views that
# compute some of them, and the request fields those take.
CONTRACT = FeatureContract.resolve(open_feature_store(SETTINGS), FEATURE_SERVICE, features=FEATURES.input_names)
BY_ID = takes_entity_ids(CONTRACT)
EntityIds = entity_ids_type(CONTRACT) if BY_ID else None
EntityRows = None if BY_ID else entity_rows_type(CONTRACT)
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
        self.model: LoadedModel = load_model(self.model_ref, compiled=get_settings().compiled_inference)
        self.score_rows = row_scoring(self.model.pipeline, FEATURES, self.model.compiled)
        self.reader = OnlineFeatureReader(open_feature_store(get_settings()), CONTRACT)
        self.metrics = service_metrics()
        # Labelled metrics looked up once (prometheus_client takes a lock and builds a key on every `labels()`).
        self.lookup_seconds = self.metrics.lookup_seconds.labels(FEATURE_SERVICE)
        self.rows_answered = functools.cache(self.metrics.rows.labels)
        self.traffic = start_traffic_profiler(get_settings(), self.model.tag)
        self.prediction_log = open_prediction_log(get_settings(), self.model.tag)
        # BentoML 1.4 binds an API method anew on every request (`APIMethod.__get__` wraps it and reads its
        # signature with `inspect`); bound once here, an instance attribute, found before the class's descriptor.
        for name in PredictionService.apis:
            setattr(self, name, getattr(self, name))
        self._warm_up()
        # Everything loaded so far lives as long as the worker. Frozen, the collector stops walking it: a full
        # collection over the ~400k objects of the loaded stack takes ~250 ms, a stall in some request's latency.
        gc.collect()
        gc.freeze()

    def _warm_up(self) -> None:
        """Run one lookup and one prediction before the worker reports ready, so that the first caller does not
        pay for lazy imports and first-call setup (several hundred milliseconds otherwise)."""
        warm_up = warm_up_entity(CONTRACT)
        self.reader.fetch({name: [value] for name, value in warm_up.items()})
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
    if BY_ID:

        @bentoml.api(route="/predict")
        async def predict(self, entity_ids: EntityIds) -> Predictions:  # type: ignore[valid-type]
            """Score entities by id on their online features; unknown, missing or stale ones get a status, no
            score."""
            return self._predict_entities({CONTRACT.join_keys[0]: entity_ids}, "predict")

        # max_latency_ms is a shedding threshold, not a batching window: BentoML's dispatcher answers 503 to a
        # request it predicts will wait longer (its latency model is crude while it warms up, so 25 ms shed requests
        # at once on two cores). How long it holds a batch open is learned separately from measured call times.
        @bentoml.api(route="/predict_batch", batchable=True, max_batch_size=MAX_ROWS, max_latency_ms=1000)
        async def predict_batch(self, entity_ids: EntityIds) -> Predictions:  # type: ignore[valid-type]
            """`/predict` with adaptive batching: concurrent requests are merged into one lookup and one model
            call."""
            return self._predict_entities({CONTRACT.join_keys[0]: entity_ids}, "predict_batch")

    else:

        @bentoml.api(route="/predict")
        async def predict(self, entities: EntityRows) -> Predictions:  # type: ignore[valid-type]
            """Score entities, each given by its join keys and the request fields the feature service's on-demand
            views read; unknown, missing or stale ones get a status, no score."""
            return self._predict_entities(_columns(entities, CONTRACT.entity_fields), "predict")

        @bentoml.api(route="/predict_batch", batchable=True, max_batch_size=MAX_ROWS, max_latency_ms=1000)
        async def predict_batch(self, entities: EntityRows) -> Predictions:  # type: ignore[valid-type]
            """`/predict` with adaptive batching: concurrent requests are merged into one lookup and one model
            call."""
            return self._predict_entities(_columns(entities, CONTRACT.entity_fields), "predict_batch")

    @bentoml.api(route="/predict_features")
    async def predict_features(self, rows: FeatureRows) -> Predictions:  # type: ignore[valid-type]
        """Score feature vectors the caller already has: every feature of the model's feature service, as Feast
        returns them (on-demand features as their outputs)."""
        columns, _ = encode_columns(
            FEATURES.feature_inputs, _columns(rows, FEATURES.input_names), datetime.now(timezone.utc)
        )
        scores = self._score(columns)
        self._profile(columns, scores)
        self.rows_answered("predict_features", "ok").inc(len(scores))
        return [self._scored(None, value) for value in scores]

    # --- scoring ------------------------------------------------------------------------------------------------

    def _predict_entities(self, entities: dict[str, list[Any]], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        online = self.reader.fetch(entities)
        self.lookup_seconds.observe(time.perf_counter() - started)

        statuses: list[Status] = list(online.statuses)
        reasons = {issue.row: issue.reason for issue in online.issues}
        usable = [row for row, status in enumerate(statuses) if status == "ok"]
        columns, invalid = self._encode(online, usable)
        if invalid:  # an array feature of another length than the model was trained on: said, not scored
            for position, names in invalid.items():
                statuses[usable[position]] = "missing_values"
                reasons[usable[position]] = f"features {', '.join(names)} do not have the length the model reads"
            usable = [row for row, status in enumerate(statuses) if status == "ok"]
            columns, _ = self._encode(online, usable)
        usable_scores = self._score(columns)
        self._profile(columns, usable_scores)
        if self.prediction_log is not None and usable_scores:
            keys = {key: [entities[key][row] for row in usable] for key in CONTRACT.join_keys}
            self.prediction_log.record(keys, usable_scores)

        scores = dict(zip(usable, usable_scores, strict=True))
        predictions = [
            self._scored(online.entity(row), scores[row])
            if status == "ok"
            else Prediction(
                entity_id=online.entity(row),
                status=status,
                score=None,
                decision=None,
                reason=reasons[row],
                model_tag=self.model.tag,
            )
            for row, status in enumerate(statuses)
        ]
        for status in set(statuses):
            self.rows_answered(endpoint, status).inc(statuses.count(status))
        return predictions

    def _encode(self, online: OnlineFeatures, rows: list[int]) -> tuple[dict[str, Any], dict[int, list[str]]]:
        """The model columns of `rows`, and the rows whose values could not be encoded (by position in `rows`)."""
        raw = {name: [online.columns[name][row] for row in rows] for name in FEATURES.input_names}
        return encode_columns(FEATURES.feature_inputs, raw, datetime.now(timezone.utc))

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


def _columns(rows: list[Any], names: list[str]) -> dict[str, list[Any]]:
    """Validated request rows as one list per field."""
    return {name: [getattr(row, name) for row in rows] for name in names}


label_requests_by_route()
trace_requests_only()
cancel_timers_when_done()


def _install_middleware(settings: Settings) -> None:
    """Auth outermost (a caller without the token learns nothing, not even the size limit), then the media type,
    then the size limit, then one rule for unknown fields; and the OpenAPI document as all of that answers."""
    if settings.api_token is not None:
        PredictionService.add_asgi_middleware(BearerTokenAuth, token=settings.api_token.get_secret_value())
    PredictionService.add_asgi_middleware(JsonOnly)
    PredictionService.add_asgi_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    entities = frozenset({"entity_ids" if BY_ID else "entities"})
    fields = {"/predict": entities, "/predict_batch": entities, "/predict_features": frozenset({"rows"})}
    PredictionService.add_asgi_middleware(KnownFieldsOnly, fields=fields)
    rewrite = functools.partial(truthful, token=settings.api_token is not None)
    PredictionService.add_asgi_middleware(TruthfulOpenAPI, rewrite=rewrite)


_install_middleware(SETTINGS)
