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


def test_the_bento_takes_the_project_files_and_nothing_from_the_state_folder(tmp_path) -> None:
    """A state folder inside the project holds earlier bentos' copies of the same files (and the bento being built):
    taking them would nest bentos in bentos until the paths grow too long."""
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    spec = BentoPathSpec(config["include"], config["exclude"], str(tmp_path))  # an empty folder: no .bentoignore
    for path in ("cicloml.yaml", "bentos/service.py", "cicloml/models/row_scorer.py", "features/feature_store.yaml"):
        assert spec.includes(path), path
    for path in (
        ".ciclo/bentoml/bentos/cicloml/v1/src/cicloml.yaml",
        ".ciclo/bentoml/tmp/bentoml_bento_x/src/cicloml/settings.py",
        "state/bentoml/bentos/cicloml/v1/src/cicloml.yaml",  # a state folder of another name (CICLO_STATE_DIR)
        "tests/unit/test_spec.py",
    ):
        assert not spec.includes(path), path


def test_build_pins_the_model_carries_the_dockerfile_and_is_recorded_on_the_model(tmp_path_factory) -> None:
    with ciclo_environment(tmp_path_factory.mktemp("bento")) as settings:
        model_tag = build_served_state(settings, END, customers=200)
        version = model_tag.split(":")[1]

        bento_tag, built = build_bento(settings, model_tag, ROOT)
        assert (bento_tag, built) == (f"cicloml:{version}", True)
        bento_dir = settings.bentoml_home / "bentos" / "cicloml" / version
        info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
        assert [model["tag"] for service in info["services"] for model in service["models"]] == [model_tag]
        assert info["args"] == {"model_tag": model_tag}
        assert info["labels"] == {"project": "cicloml", "model": "churn", "model_version": version}
        dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
        assert re.search(r"^FROM .*python", dockerfile, re.MULTILINE | re.IGNORECASE)
        for path in ("src/bentos/service.py", "src/features/feature_store.yaml", "src/cicloml.yaml"):
            assert (bento_dir / path).is_file(), path

        registry = ModelRegistry(settings, "churn")
        registry.record_bento(model_tag, bento_tag)
        registry.record_bento(model_tag, bento_tag)  # idempotent
        assert registry.bentos(model_tag) == [bento_tag]

        # Bentos are immutable: a second build for the same version reuses the first.
        assert build_bento(settings, model_tag, ROOT) == (bento_tag, False)
