"""whylogs profiles of feature frames: the training reference saved with each model, and live traffic.

whylogs stays behind this module (its last release is from 2024 and its hosted platform is gone), so it can be
replaced in one place. Only its local writers are used.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cicloml.atomic import atomic_path

# whylogs 1.6.4 still uses np.unicode_, which NumPy 2 removed (whylabs/whylogs-python#1568); restore the alias
# before whylogs is imported. Analytics off: the vendor's endpoint no longer exists.
np.unicode_ = np.str_  # type: ignore[attr-defined]
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")

import whylogs as why  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402


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
