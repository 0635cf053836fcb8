"""What Prometheus is told: the configuration `make up` writes, the targets file `cicloml serve` keeps, and the
restart counter it exposes (in process, no server started)."""

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import generate_latest

from cicloml import stack
from cicloml.errors import ConfigError
from cicloml.prometheus import (
    JOB,
    RULES_PATH,
    prometheus_command,
    prometheus_config,
    target_groups,
    targets_file,
    write_config,
)
from cicloml.serving import ChampionServer
from cicloml.settings import Settings
from tests.conftest import ROOT, ciclo_environment

TOKEN = "scrape-token-" + "x" * 20


def test_the_targets_name_the_backend_only_while_it_serves() -> None:
    serving = target_groups("127.0.0.1:5001", "127.0.0.1:5002", "churn:v1")
    assert serving == [
        {"targets": ["127.0.0.1:5001"], "labels": {"component": "supervisor"}},
        {"targets": ["127.0.0.1:5002"], "labels": {"component": "backend", "model_tag": "churn:v1"}},
    ]
    assert target_groups("127.0.0.1:5001", None, None) == serving[:1]


def test_the_config_scrapes_the_targets_file_and_loads_the_packaged_rules(tmp_path: Path) -> None:
    config = prometheus_config(tmp_path / "targets.json", None)
    [job] = config["scrape_configs"]
    assert job == {"job_name": JOB, "file_sd_configs": [{"files": [str(tmp_path / "targets.json")]}]}
    assert config["rule_files"] == [str(RULES_PATH)] and RULES_PATH.is_file()


def test_with_a_token_the_config_reads_it_from_an_owner_only_file(tmp_path: Path) -> None:
    with ciclo_environment(tmp_path / "state", api_token=TOKEN) as settings:
        config_path = write_config(settings)
    text = config_path.read_text()
    assert TOKEN not in text  # the configuration holds no secret
    [job] = yaml.safe_load(text)["scrape_configs"]
    token_path = Path(job["authorization"]["credentials_file"])
    assert job["authorization"]["type"] == "Bearer" and token_path.read_text() == TOKEN
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert job["file_sd_configs"] == [{"files": [str(targets_file(settings))]}]
    assert targets_file(settings).parent.is_dir()  # Prometheus can only watch a folder that exists

    with ciclo_environment(tmp_path / "state") as settings:  # the token unset again: not sent, not left lying
        [job] = yaml.safe_load(write_config(settings).read_text())["scrape_configs"]
    assert "authorization" not in job and not token_path.exists()


def test_the_server_listens_on_loopback_with_its_database_in_the_state_folder(settings: Settings) -> None:
    command = prometheus_command(settings.prometheus_dir / "prometheus.yml", settings.prometheus_dir / "data", 9191)
    assert command == [
        "prometheus",
        f"--config.file={settings.prometheus_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={settings.prometheus_dir / 'data'}",
        "--storage.tsdb.retention.time=15d",
        "--storage.tsdb.retention.size=1GB",
        "--web.listen-address=127.0.0.1:9191",
    ]


def test_cicloml_serve_names_its_current_backend_and_counts_restarts(settings: Settings) -> None:
    server = ChampionServer(settings, registry=None)  # type: ignore[arg-type]
    server._metrics_address = "127.0.0.1:5001"
    server.backend = SimpleNamespace(port=5002, model_tag="churn:v1")  # type: ignore[assignment]

    server.status = "serving"
    server._write_targets()
    assert json.loads(targets_file(settings).read_text()) == target_groups(
        "127.0.0.1:5001", "127.0.0.1:5002", "churn:v1"
    )
    server.status = "restarting"  # a backend being restarted is not scraped: it would only count as down
    server._write_targets()
    assert json.loads(targets_file(settings).read_text()) == target_groups("127.0.0.1:5001", None, None)

    registry = server._metrics_registry()
    assert "cicloml_serve_backend_restarts_total 0.0" in generate_latest(registry).decode()
    server.restart_count = 3
    assert "cicloml_serve_backend_restarts_total 3.0" in generate_latest(registry).decode()


def test_make_up_says_what_to_install_when_prometheus_is_missing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"apt-get install prometheus.*CICLO_PROMETHEUS=false"):
        stack.up(settings, ROOT)
    assert stack.read_stack(settings) is None  # nothing started
