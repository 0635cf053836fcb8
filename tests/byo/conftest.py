"""A Feast repository cicloml did not write (`feature_repo/`) with seeded click data, in a project folder of its own:
a STRING and an INT64 join key, a feature service over a compound key, an on-demand view in `python` mode with a
request source and one in `pandas` mode, a Bool, an Array(Float32) embedding, a UnixTimestamp, a Map and a Json
feature (excluded), a view without a push source, and Feast's plain SQLite online store with paths relative to the
repository, as `feast init` writes them."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cicloml.settings import Settings
from tests.byo.world import ClickWorld, generate_click_world
from tests.conftest import ciclo_environment

REPO_TEMPLATE = Path(__file__).parent / "feature_repo"
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
EXCLUDED = ["preferences", "attributes"]


@dataclass(frozen=True)
class Project:
    """The user's project folder: their Feast repository, its data (labels beside the sources), and the spec."""

    folder: Path
    world: ClickWorld

    @property
    def repo(self) -> Path:
        return self.folder / "feature_repo"

    @property
    def labels_path(self) -> Path:
        return self.repo / "data" / "clicks.parquet"

    @property
    def spec_path(self) -> Path:
        return self.folder / "cicloml.yaml"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    def write_spec(self, **sections: dict) -> None:
        """A spec for the repository as a user would write it (sections given here replace the defaults)."""
        spec = {
            "name": "clicks",
            "features": {
                "repo": "feature_repo",
                "entity": ["item", "user"],
                "feature_service": "click_v1",
                "exclude": EXCLUDED,
            },
            "labels": {
                "path": str(self.labels_path),
                "column": "clicked",
                "event_time": "event_timestamp",
                "available_time": "known_at",
            },
            "checks": {"min_rows": 200},
            "model": {"family": "sklearn", "params": {"max_iter": 60}},
            **sections,
        }
        self.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


def make_project(folder: Path, end: datetime = END, **world: int) -> Project:
    """Copy the repository into `folder` and write its seeded data under `feature_repo/data/`."""
    shutil.copytree(REPO_TEMPLATE, folder / "feature_repo", ignore=shutil.ignore_patterns("__pycache__", "data"))
    project = Project(folder=folder, world=generate_click_world(end, **world))
    project.world.write(project.repo / "data")
    return project


@contextmanager
def project_environment(project: Project, **settings: str) -> Iterator[Settings]:
    """cicloml pointed at the project's spec and a state folder of its own."""
    with ciclo_environment(project.state_dir, spec_path=str(project.spec_path), **settings) as current:
        yield current
