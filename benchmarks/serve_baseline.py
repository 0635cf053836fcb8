"""The baseline for benchmarks/bench_serve.py: `/predict` of the prediction service as a minimal FastAPI app.

It does what `bentos.service.PredictionService.predict` does for a request, and nothing else: the same strict
request body (`{"entity_ids": [...]}`, 1 to MAX_ROWS INT64 ids), the same `OnlineFeatureReader` lookup (one per
request, unknown/missing/stale rows answered with a status and no score), the same model called through
`cicloml.models.row_scorer.row_scoring` on the same columns (with the version's compiled trees when the
`compiled_inference` setting is on, as the service), and the same response rows (`bentos.schemas.Prediction`).
No BentoML serving code runs: no BentoML app, middleware, metrics, access log or worker supervisor; the model is
read from BentoML's local model store by `cicloml.registry`, as the service's worker does.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field, Strict

from bentos.schemas import MAX_ROWS, Prediction
from cicloml.contract import FeatureContract
from cicloml.errors import ConfigError
from cicloml.feature_store import OnlineFeatureReader, open_store
from cicloml.models.row_scorer import row_scoring
from cicloml.registry import LoadedModel, ModelRegistry
from cicloml.settings import get_settings
from cicloml.spec import load_spec

EntityId = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]


class PredictRequest(BaseModel):
    """The body the service's `/predict` takes (BentoML names the JSON field after the method's parameter)."""

    model_config = ConfigDict(extra="forbid")

    entity_ids: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_ROWS)]


class Worker:
    """What one worker process holds for its lifetime, like the service's `__init__`."""

    def __init__(self) -> None:
        settings = get_settings()
        spec = load_spec(settings.spec_path)
        registry = ModelRegistry(settings, spec.name)
        tag = settings.model_tag or registry.champion()
        if tag is None:
            raise ConfigError("no champion to serve: set CICLO_MODEL_TAG or promote a model")
        self.model: LoadedModel = registry.load(tag)
        self.features = self.model.lineage.features
        self.score_rows = row_scoring(self.model.pipeline, self.features, self.model.compiled)
        store = open_store(spec.features.repo, settings)
        self.reader = OnlineFeatureReader(
            store,
            FeatureContract.resolve(store, self.model.lineage.feature_service, features=self.features.input_names),
        )

    def predict(self, entity_ids: list[Any]) -> list[Prediction]:
        online = self.reader.fetch(entity_ids)
        usable = [row for row, status in enumerate(online.statuses) if status == "ok"]
        columns = {name: [online.columns[name][row] for row in usable] for name in self.features.features}
        values = self.score_rows(columns).tolist() if usable else []
        scores = dict(zip(usable, values, strict=True))
        issues = iter(online.issues)  # one per row that is not ok, in row order
        predictions = []
        for row, (entity_id, status) in enumerate(zip(entity_ids, online.statuses, strict=True)):
            if status == "ok":
                value = scores[row]
                predictions.append(
                    Prediction(
                        entity_id=entity_id,
                        status="ok",
                        score=value,
                        decision=value >= self.model.lineage.threshold,
                        reason=None,
                        model_tag=self.model.tag,
                    )
                )
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
        return predictions


WORKER: Worker | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global WORKER
    WORKER = Worker()
    yield


app = FastAPI(title="cicloml serving baseline", lifespan=lifespan)


@app.get("/readyz")
def readyz(response: Response) -> dict[str, int]:
    response.status_code = 200 if WORKER is not None else 503
    return {"pid": os.getpid()}


@app.post("/predict")
def predict(request: PredictRequest) -> list[Prediction]:
    assert WORKER is not None, "lifespan startup has run"
    return WORKER.predict(request.entity_ids)
