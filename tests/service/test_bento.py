"""`bentoml build` of the service: the bento pins the model version, carries the Dockerfile, and is recorded."""

import re
from datetime import datetime, timezone

import pytest
import yaml
from bentoml._internal.bento.build_config import BentoPathSpec

from cicloml.bento import build_bento
from cicloml.registry import ModelRegistry
from tests.conftest import ROOT, ciclo_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def test_bentofile_pins_the_versions_of_constraints_txt() -> None:
    """The bento's requirements are exact pins that must move with the project's tested set."""
    pinned = dict(
        line.strip().lower().split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    packages = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    for requirement in packages:
        name, version = requirement.lower().split("==", 1)
        assert pinned.get(name) == version, f"bentofile.yaml pins {requirement}; constraints.txt has {pinned.get(name)}"


def test_the_bento_takes_the_service_the_library_and_the_project(tmp_path) -> None:
    """The build context holds cicloml's service and library and the project it serves, nothing else."""
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    spec = BentoPathSpec(config["include"], config["exclude"], str(tmp_path))  # an empty folder: no .bentoignore
    for path in (
        "bentos/service.py",
        "cicloml/models/row_scorer.py",
        "project/cicloml.yaml",
        "project/feature_repo/feature_store.yaml",
        "project/feature_repo/registry.db",
    ):
        assert spec.includes(path), path
    for path in ("bentofile.yaml.bak", "tests/unit/test_spec.py", "cicloml/__pycache__/spec.cpython-311.pyc"):
        assert not spec.includes(path), path


def test_build_pins_the_model_carries_the_dockerfile_and_is_recorded_on_the_model(tmp_path_factory) -> None:
    with ciclo_environment(tmp_path_factory.mktemp("bento")) as settings:
        model_tag = build_served_state(settings, END, customers=200)
        version = model_tag.split(":")[1]

        bento_tag, built = build_bento(settings, model_tag)
        assert (bento_tag, built) == (model_tag, True)  # a bento is named and versioned like its model
        bento_dir = settings.bentoml_home / "bentos" / "churn" / version
        info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
        assert [model["tag"] for service in info["services"] for model in service["models"]] == [model_tag]
        assert info["args"] == {"model_tag": model_tag}
        assert info["labels"] == {"project": "churn", "model": "churn", "model_version": version}
        dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
        assert re.search(r"^FROM .*python", dockerfile, re.MULTILINE | re.IGNORECASE)
        for path in ("src/bentos/service.py", "src/cicloml/contract.py", "src/project/feature_repo/feature_views.py"):
            assert (bento_dir / path).is_file(), path
        # The project as the bento reads it: the spec points at the bundled repository, whose registry is a snapshot.
        bundled = yaml.safe_load((bento_dir / "src/project/cicloml.yaml").read_text())
        assert bundled["features"] == {
            **yaml.safe_load((ROOT / "cicloml.yaml").read_text())["features"],
            "repo": "feature_repo",
        }
        feast_config = yaml.safe_load((bento_dir / "src/project/feature_repo/feature_store.yaml").read_text())
        assert feast_config["registry"] == {"registry_type": "file", "path": "registry.db", "cache_ttl_seconds": 0}
        assert feast_config["online_store"]["path"] == "${CICLO_STATE_DIR}/feast/online.db"  # filled when it serves
        assert (bento_dir / "src/project/feature_repo/registry.db").stat().st_size > 0

        registry = ModelRegistry(settings, "churn")
        registry.record_bento(model_tag, bento_tag)
        registry.record_bento(model_tag, bento_tag)  # idempotent
        assert registry.bentos(model_tag) == [bento_tag]

        # Bentos are immutable: a second build for the same version reuses the first.
        assert build_bento(settings, model_tag) == (bento_tag, False)
