"""The model registry: BentoML's model store under the state folder, plus an explicit champion pointer.

A model version is a BentoML model holding the fitted pipeline, the whylogs reference profile of its training
features and, for tree ensembles that pass the parity check, the classifier compiled with treelite
(`cicloml.models.compiled`); its lineage and compilation report are its metadata, its gate outcome its labels.
Saving is atomic: each save builds its model in a staging store of its own (`<bentoml home>/staging/<pid>-<uuid>`,
on the same filesystem) and renames the finished version folder into the real store in one step, so a crash never
leaves a version that looks complete, and processes saving at the same moment never touch each other's files. A
save removes its own staging folder when it ends, and a crashed save's folder once it is older than
`STALE_STAGING_SECONDS`. The champion pointer moves only by `promote` and `rollback`, under a lock, and is rewritten
atomically.
"""

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import bentoml
import joblib
import pandas as pd
import treelite
from bentoml._internal.models.model import ModelStore
from bentoml.exceptions import NotFound
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from cicloml.atomic import atomic_path
from cicloml.lineage import Lineage
from cicloml.models.compiled import (
    COMPILED_FILE,
    CompilationReport,
    CompiledClassifier,
    Uncompilable,
    compile_pipeline,
)
from cicloml.profiling import DatasetProfileView, read_profile, write_profile
from cicloml.settings import Settings

MODEL_FILE = "pipeline.joblib"
REFERENCE_PROFILE_FILE = "reference_profile.bin"
COMPILATION_METADATA = "compilation"

# A save fills its staging folder only while BentoML copies the finished model into it (pickling happens in
# BentoML's own temporary folder first), seconds even for a large model; an hour is far beyond that, so a staging
# folder this old belongs to a save that was killed, never to one still running.
STALE_STAGING_SECONDS = 3600

logger = logging.getLogger(__name__)


class ModelVersion(BaseModel):
    tag: str
    created: datetime
    labels: dict[str, str]
    lineage: Lineage
    champion: bool


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    pipeline: Pipeline
    lineage: Lineage
    path: Path
    compiled: CompiledClassifier | None = None
    """The classifier's compiled trees: None when the version has none, or they were not asked for."""

    def reference_profile(self) -> DatasetProfileView:
        return read_profile(self.path / REFERENCE_PROFILE_FILE)


def read_lineage(model: bentoml.Model) -> Lineage:
    """A stored model's lineage, from its metadata alone (the pipeline is not loaded)."""
    return Lineage.model_validate_json(model.info.metadata["lineage"])


def read_compilation(model: bentoml.Model) -> CompilationReport | None:
    """Whether a stored model carries compiled trees, and why (None for versions saved before they were made)."""
    report = model.info.metadata.get(COMPILATION_METADATA)
    return CompilationReport.model_validate_json(str(report)) if report else None


def load_model(model: bentoml.Model, compiled: bool = True) -> LoadedModel:
    """Load a stored model from its own folder: the pipeline and the lineage saved with it, and with `compiled`
    (the `compiled_inference` setting) its compiled trees if it has them.

    Takes any `bentoml.Model`, so a service can load the one its bento pins (from the bento's model store when it
    runs from a bento) without going through the champion pointer.
    """
    pipeline = joblib.load(model.path_of(MODEL_FILE))
    path = Path(model.path)
    return LoadedModel(
        tag=str(model.tag),
        pipeline=pipeline,
        lineage=read_lineage(model),
        path=path,
        compiled=_load_compiled(path / COMPILED_FILE, pipeline) if compiled else None,
    )


def _load_compiled(path: Path, pipeline: Pipeline) -> CompiledClassifier | None:
    if not path.is_file():
        return None
    try:
        return CompiledClassifier.load(path, pipeline.steps[-1][1])
    except (treelite.TreeliteError, Uncompilable):  # e.g. a checkpoint this treelite cannot read: the pipeline scores
        logger.warning("could not load the compiled trees at %s; scoring with the pipeline", path, exc_info=True)
        return None


class ModelRegistry:
    """Versions of one model name (the project spec's `name`) and which of them is the champion.

    Any number of processes may register versions at the same time: each save stages in its own folder and
    publishes with one rename.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self._compiled_inference = settings.compiled_inference
        self._store_dir = settings.bentoml_home / "models"
        self.store = ModelStore(str(self._store_dir))
        self._staging_root = settings.bentoml_home / "staging"
        self._pointer_path = settings.registry_dir / f"{name}.json"

    # --- versions -------------------------------------------------------------------------------------------

    def register(
        self,
        pipeline: Pipeline,
        lineage: Lineage,
        reference: DatasetProfileView,
        labels: dict[str, str],
        check_frame: pd.DataFrame | None = None,
    ) -> str:
        """Save a new version atomically and return its tag (`name:version`).

        A tree ensemble is saved with its compiled trees if they match the pipeline on `check_frame` (the test
        split, with the model's features) and on edge rows; otherwise without them, and its compilation report
        (metadata) says why. Compiled or not, the setting `compiled_inference` decides only what serving uses."""
        compiled, compilation = compile_pipeline(pipeline, lineage.features, check_frame)
        if compiled is None and compilation.max_difference is not None:
            logger.warning("registering %s without compiled trees: %s", self.name, compilation.reason)
        else:
            logger.info("%s: %s", self.name, compilation.reason)
        self._remove_stale_staging()
        # Unique per process and per call, so no two saves ever share (or remove) a staging folder.
        staging_dir = self._staging_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            staging = ModelStore(str(staging_dir))
            # BentoML metadata takes only non-null basic values, so the lineage travels as one JSON string.
            metadata = {
                "feature_service": lineage.feature_service,
                "lineage": lineage.model_dump_json(),
                COMPILATION_METADATA: compilation.model_dump_json(),
            }
            with bentoml.models.create(self.name, labels=labels, metadata=metadata, _model_store=staging) as model:
                joblib.dump(pipeline, model.path_of(MODEL_FILE))
                write_profile(reference, Path(model.path_of(REFERENCE_PROFILE_FILE)))
                if compiled is not None:  # atomic with the version: staged with it, published by its rename
                    compiled.save(Path(model.path_of(COMPILED_FILE)))
            staged = Path(staging.get(model.tag).path)
            final = self._store_dir / model.tag.name / str(model.tag.version)
            final.parent.mkdir(parents=True, exist_ok=True)  # the first versions of a name may arrive together
            os.rename(staged, final)  # the one step that makes the version visible
            # Concurrent saves each replace `latest` whole: it names a complete version, whichever save wrote last.
            with atomic_path(final.parent / "latest") as latest:
                latest.write_text(str(model.tag.version))
            return str(model.tag)
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)

    def _remove_stale_staging(self) -> None:
        """Remove what saves killed mid-way left in the staging root: folders older than `STALE_STAGING_SECONDS`."""
        cutoff = time.time() - STALE_STAGING_SECONDS
        try:
            leftovers = list(self._staging_root.iterdir())
        except FileNotFoundError:
            return
        for leftover in leftovers:
            try:
                stale = leftover.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue  # another save removed it since the listing
            if stale:
                shutil.rmtree(leftover, ignore_errors=True)  # ignore_errors: another save may be removing it too

    def load(self, tag: str) -> LoadedModel:
        """A version's pipeline and lineage, and its compiled trees when the `compiled_inference` setting is on."""
        return load_model(self._get(tag), compiled=self._compiled_inference)

    def compilation(self, tag: str) -> CompilationReport | None:
        """Whether a version carries compiled trees, and why (without loading it)."""
        return read_compilation(self._get(tag))

    def lineage(self, tag: str) -> Lineage:
        """A version's lineage (features, threshold, metrics...) without loading its pipeline."""
        return read_lineage(self._get(tag))

    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        try:
            models = self.store.list(self.name)
        except NotFound:
            return []
        champion = self.champion()
        versions = [
            ModelVersion(
                tag=str(model.tag),
                created=model.info.creation_time,
                labels=dict(model.info.labels),
                lineage=Lineage.model_validate_json(model.info.metadata["lineage"]),
                champion=str(model.tag) == champion,
            )
            for model in models
        ]
        return sorted(versions, key=lambda version: version.created)

    def resolve(self, tag: str) -> str:
        """The full `name:version` tag of a stored version (`name:latest` resolves); LookupError if absent."""
        return str(self._get(tag).tag)

    def label(self, tag: str) -> dict[str, str]:
        return dict(self._get(tag).info.labels)

    def _get(self, tag: str) -> bentoml.Model:
        try:
            return self.store.get(tag)
        except NotFound:
            raise LookupError(
                f"no model version {tag!r} in the registry ({self.name}); see `cicloml models list`"
            ) from None

    # --- bentos built for a version ------------------------------------------------------------------------------

    def record_bento(self, tag: str, bento_tag: str) -> None:
        """Record that `bento_tag` serves model version `tag`.

        Kept beside the champion pointer rather than in the model's own metadata: a stored model is immutable
        (BentoML has no update), and a version may be built into several bentos over time.
        """
        self._get(tag)
        with self._pointer_lock():
            bentos = self._bentos()
            if bento_tag not in bentos.get(tag, []):
                bentos[tag] = [*bentos.get(tag, []), bento_tag]
                with atomic_path(self._bentos_path) as temporary:
                    temporary.write_text(json.dumps(bentos, indent=2, sort_keys=True))

    def bentos(self, tag: str) -> list[str]:
        """The bentos built for model version `tag`, oldest first."""
        return self._bentos().get(tag, [])

    @property
    def _bentos_path(self) -> Path:
        return self._pointer_path.with_suffix(".bentos.json")

    def _bentos(self) -> dict[str, list[str]]:
        if not self._bentos_path.exists():
            return {}
        return dict(json.loads(self._bentos_path.read_text()))

    # --- the champion pointer ---------------------------------------------------------------------------------

    def champion(self) -> str | None:
        history = self._history()
        return history[-1] if history else None

    def promote(self, tag: str) -> None:
        """Make `tag` the champion (the previous one stays in the history for rollback)."""
        self._get(tag)
        with self._pointer_lock():
            history = self._history()
            if not history or history[-1] != tag:
                self._write_history([*history, tag])

    def rollback(self) -> str:
        """Restore the previous champion; return its tag."""
        with self._pointer_lock():
            history = self._history()
            if len(history) < 2:
                raise LookupError(f"{self.name} has no previous champion to roll back to")
            self._write_history(history[:-1])
            return history[-2]

    def _history(self) -> list[str]:
        if not self._pointer_path.exists():
            return []
        return list(json.loads(self._pointer_path.read_text())["history"])

    def _write_history(self, history: list[str]) -> None:
        with atomic_path(self._pointer_path) as temporary:
            temporary.write_text(json.dumps({"champion": history[-1], "history": history}, indent=2))

    @contextmanager
    def _pointer_lock(self) -> Iterator[None]:
        self._pointer_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._pointer_path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
