"""whylogs profiles of feature frames: the training reference saved with each model, and live traffic.

whylogs stays behind this module (its last release is from 2024 and its hosted platform is gone), so it can be
replaced in one place. Only its local writers are used.
"""

import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from cicloml.atomic import atomic_path

# whylogs 1.6.4 still uses np.unicode_, which NumPy 2 removed (whylabs/whylogs-python#1568); restore the alias
# before whylogs is imported. Analytics off: the vendor's endpoint no longer exists.
np.unicode_ = np.str_  # type: ignore[attr-defined]
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")

# DatasetProfile is re-exported (for cicloml.traffic): other modules import whylogs' names from here only.
import whylogs as why  # noqa: E402
from whylogs.core import DatasetProfile as DatasetProfile  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402

SCORE_COLUMN = "score"
"""The model's score in profiles: traffic profiles carry it, and so does the training reference."""

WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"
"""A window's folder name: its UTC start, sortable as text."""

PROFILE_SUFFIX = ".bin"


def profile_frame(frame: pd.DataFrame) -> DatasetProfileView:
    """A mergeable statistical profile (counts, nulls, distributions, frequent items) of every column."""
    return why.log(pandas=frame).view()


def write_profile(view: DatasetProfileView, path: Path) -> Path:
    """Write a profile so a reader never sees half of it."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(view.serialize())
    return path


def read_profile(path: Path) -> DatasetProfileView:
    return DatasetProfileView.deserialize(path.read_bytes())


def model_folder(profiles_dir: Path, model_tag: str) -> Path:
    """Where one model version's traffic profiles live: `<profiles_dir>/<model name>/<model version>/`."""
    name, separator, version = model_tag.partition(":")
    if not (name and separator and version) or "/" in model_tag:
        raise ValueError(f"model tag {model_tag!r} is not name:version")
    return profiles_dir / name / version


def window_folder(profiles_dir: Path, model_tag: str, window_start: datetime) -> Path:
    """Where every worker's profile of one model version's traffic in one window lives (named by its UTC start)."""
    return model_folder(profiles_dir, model_tag) / window_start.strftime(WINDOW_FORMAT)


def window_starts(profiles_dir: Path, model_tag: str) -> list[datetime]:
    """The starts of the windows that have traffic profiles for `model_tag`, oldest first."""
    folder = model_folder(profiles_dir, model_tag)
    names = sorted(path.name for path in folder.glob("*") if path.is_dir()) if folder.is_dir() else []
    return [datetime.strptime(name, WINDOW_FORMAT).replace(tzinfo=timezone.utc) for name in names]


def newest_finished_window(starts: list[datetime], window_seconds: int, now: datetime) -> datetime:
    """The newest of `starts` (not empty) whose window has ended by `now`, else the newest: the current window is
    still being written."""
    finished = [start for start in starts if start + timedelta(seconds=window_seconds) <= now]
    return (finished or starts)[-1]


def window_profile_paths(folder: Path) -> list[Path]:
    """The finished profile files in a window folder. A `.tmp-` file (a write a crash interrupted) is never one."""
    return sorted(path for path in folder.glob(f"*{PROFILE_SUFFIX}") if not path.name.startswith("."))


def read_window_profiles(folder: Path) -> DatasetProfileView:
    """One window's traffic across all workers: their profiles merged (whylogs sketches merge without loss of counts).

    The merged metadata keeps the model tag and window, sums `rows` and lists the workers.
    """
    paths = window_profile_paths(folder)
    if not paths:
        raise FileNotFoundError(f"no traffic profiles in {folder}")
    views = [read_profile(path) for path in paths]
    # Read before merging: whylogs' merge updates the first view's metadata in place.
    each = [dict(view.metadata) for view in views]
    merged = views[0]
    for view in views[1:]:
        merged = merged.merge(view)
    metadata = {
        **each[0],
        "worker": ",".join(meta.get("worker", path.stem) for meta, path in zip(each, paths, strict=True)),
        "rows": str(sum(int(meta.get("rows", 0)) for meta in each)),
    }
    return with_metadata(merged, metadata)


def with_metadata(view: DatasetProfileView, metadata: Mapping[str, str]) -> DatasetProfileView:
    """A copy of `view` with exactly this metadata (whylogs' own merge mutates and mixes the inputs' metadata)."""
    return DatasetProfileView(
        columns=view.get_columns(),
        dataset_timestamp=view.dataset_timestamp,
        creation_timestamp=view.creation_timestamp,
        metadata=dict(metadata),
    )
