"""BentoCloud deployment: the config file is one BentoML accepts, and `deploy_bento` runs `bentoml deployment
apply` only with credentials (a stand-in `bentoml` records the call: there is no BentoCloud to reach here)."""

import json
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from bentoml._internal.cloud.schemas.schemasv2 import CreateDeploymentSchema
from bentoml._internal.utils.cattr import bentoml_cattr
from bentoml.exceptions import NotFound

from cicloml import bento
from cicloml.bento import bentocloud_credentials, deploy_bento, deployment_name
from cicloml.settings import Settings
from tests.conftest import ROOT

CONFIG = ROOT / "bentos" / "deployment.yaml"


@pytest.fixture
def fake_bentoml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `bentoml` that writes its arguments and BENTOML_HOME to calls.jsonl and exits with $FAKE_EXIT."""
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "bentoml"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "config = open(sys.argv[sys.argv.index('--config-file') + 1]).read()\n"
        f"open({str(calls)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'home': os.environ['BENTOML_HOME'], "
        "'config': config}) + '\\n')\n"
        "print('deployment output line')\n"
        "sys.exit(int(os.environ.get('FAKE_EXIT', '0')))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(bento, "BENTOML", script)
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)
    return calls


def test_the_deployment_config_is_one_bentocloud_accepts():
    config = yaml.safe_load(CONFIG.read_text())
    assert "name" not in config  # the deployment is named after the model it serves
    schema = bentoml_cattr.structure(
        {**config, "name": deployment_name("churn"), "bento": "churn:v1"}, CreateDeploymentSchema
    )
    assert schema.name == "cicloml-churn"
    assert list(schema.services) == ["cicloml"]  # the @bentoml.service name
    assert schema.services["cicloml"].scaling.min_replicas >= 1


def test_without_credentials_nothing_runs_and_the_report_says_how_to_configure_them(settings, fake_bentoml):
    settings = Settings()  # re-read after the fixture removed any BENTO_CLOUD_API_KEY
    report = deploy_bento(settings, "churn:v1", CONFIG)
    assert (report.status, report.bento_tag, report.deployment) == ("skipped", "churn:v1", "cicloml-churn")
    assert "BENTO_CLOUD_API_KEY" in report.message and f"BENTOML_HOME={settings.bentoml_home}" in report.message
    assert not fake_bentoml.exists()


def test_with_an_api_key_the_deployment_is_applied_with_the_bento(settings, fake_bentoml, monkeypatch):
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "a-key")
    settings = Settings()  # re-read: the key is set now
    report = deploy_bento(settings, "click_model:v1", CONFIG)
    assert report.status == "deployed" and "BENTO_CLOUD_API_KEY" in report.message
    [call] = [json.loads(line) for line in fake_bentoml.read_text().splitlines()]
    assert call["argv"][:4] == ["deployment", "apply", "click_model:v1", "--config-file"]
    assert call["home"] == str(settings.bentoml_home)
    # The deployment is named after the model (BentoCloud names take hyphens); the rest is the config file's.
    assert yaml.safe_load(call["config"]) == {**yaml.safe_load(CONFIG.read_text()), "name": "cicloml-click-model"}
    assert not Path(call["argv"][4]).exists()  # the rewritten config is removed afterwards


def test_a_cloud_login_in_the_state_folder_counts_as_credentials(settings):
    settings.bentoml_home.mkdir(parents=True)
    logins = settings.bentoml_home / ".yatai.yaml"
    logins.write_text(yaml.safe_dump({"contexts": [], "current_context_name": "default"}))
    assert bentocloud_credentials(settings) is None
    context = {"name": "default", "endpoint": "https://cloud.bentoml.com", "api_token": "t"}
    logins.write_text(yaml.safe_dump({"contexts": [context], "current_context_name": "default"}))
    assert "cloud login context 'default'" in bentocloud_credentials(settings)


def test_a_failed_apply_raises_with_the_command_output(settings, fake_bentoml, monkeypatch):
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "a-key")
    monkeypatch.setenv("FAKE_EXIT", "1")
    settings = Settings()
    with pytest.raises(RuntimeError, match="(?s)apply failed for churn:v1.*deployment output line"):
        deploy_bento(settings, "churn:v1", CONFIG)


def test_concurrent_builds_of_one_bento_build_it_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retrain flow and `cicloml serve` both build a new champion's bento at once: the second waits for the
    first and reuses its bento instead of failing on a tag that now exists."""
    built: list[str] = []

    def slow_build(settings: Settings, model: object, bento_tag: str, context: Path) -> str:
        time.sleep(0.3)  # long enough for the other caller to arrive while this build runs
        built.append(bento_tag)
        return bento_tag

    class Store:
        def __init__(self, path: str) -> None:
            pass

        def get(self, tag: str) -> None:
            if tag not in built:
                raise NotFound(tag)

    monkeypatch.setattr(bento, "_build", slow_build)
    monkeypatch.setattr(bento, "write_build_context", lambda settings, context: None)
    monkeypatch.setattr(bento, "BentoStore", Store)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: bento.build_bento(settings, "churn:v1"), range(2)))
    assert built == ["churn:v1"]
    assert sorted(results) == [("churn:v1", False), ("churn:v1", True)]
