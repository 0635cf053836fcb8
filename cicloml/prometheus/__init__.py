"""Prometheus for `cicloml serve`: where it finds what to scrape, and the configuration `make up` runs it with.

`cicloml serve` starts each backend on a free loopback port, so the backend to scrape moves with every restart and
every switch to a new champion. The server therefore keeps a file_sd targets file (`targets_file`) up to date,
rewritten atomically, which Prometheus watches: the backend while it serves (one target: BentoML's workers share
one port, and its metrics are multiprocess, so any worker's `/metrics` answers for all of them) and the server's
own small metrics endpoint, which counts backend restarts. The rules (`rules.yml`, tested by `rules_test.yml` with
`promtool test rules`) ship in this package; the configuration and Prometheus's database live in the state folder.
"""

import json
from pathlib import Path
from typing import Any

import yaml

from cicloml.atomic import atomic_path
from cicloml.settings import Settings

RULES_PATH = Path(__file__).with_name("rules.yml")
RULES_TEST_PATH = Path(__file__).with_name("rules_test.yml")
JOB = "cicloml"
INTERVAL = "15s"
"""Scrape and rule evaluation interval: Prometheus's usual default, which the rules' windows (5 m and up) suit."""


def targets_file(settings: Settings) -> Path:
    """The file_sd targets file `cicloml serve` keeps (Prometheus, or any other, can watch it)."""
    return settings.state_dir / "serve" / "prometheus-targets.json"


def target_groups(supervisor: str, backend: str | None, model_tag: str | None) -> list[dict[str, Any]]:
    """file_sd target groups: the server's own metrics (`host:port`) always, the backend only while it serves."""
    groups: list[dict[str, Any]] = [{"targets": [supervisor], "labels": {"component": "supervisor"}}]
    if backend is not None:
        groups.append({"targets": [backend], "labels": {"component": "backend", "model_tag": str(model_tag)}})
    return groups


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    # Atomic: Prometheus re-reads the file on every change and must never see half of it.
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(groups, indent=2))


def prometheus_config(targets_path: Path, token_path: Path | None) -> dict[str, Any]:
    """The configuration: one job over the targets file, the bearer token read from `token_path` when the
    service requires one (`/metrics` answers 401 without it), and the rules."""
    job: dict[str, Any] = {"job_name": JOB, "file_sd_configs": [{"files": [str(targets_path)]}]}
    if token_path is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": str(token_path)}
    return {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(RULES_PATH)],
        "scrape_configs": [job],
    }


def write_config(settings: Settings) -> Path:
    """Write `prometheus.yml` under the state folder (and the token beside it, readable by its owner only, so that
    the configuration holds no secret); its path."""
    token_path = settings.prometheus_dir / "api-token"
    if settings.api_token is None:
        token_path.unlink(missing_ok=True)  # a token set for an earlier run is not left lying there
    else:
        with atomic_path(token_path) as temporary:
            temporary.touch(mode=0o600)  # owner-only before the secret is written
            temporary.write_text(settings.api_token.get_secret_value())
    config = prometheus_config(targets_file(settings), token_path if settings.api_token is not None else None)
    # Prometheus watches the targets file's folder: one missing when it starts is not watched (it would re-read the
    # file only every 5 minutes), and `cicloml serve` creates it only once it runs.
    targets_file(settings).parent.mkdir(parents=True, exist_ok=True)
    config_path = settings.prometheus_dir / "prometheus.yml"
    with atomic_path(config_path) as temporary:
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path


def prometheus_command(config_path: Path, data_dir: Path, port: int) -> list[str]:
    """The server on 127.0.0.1:`port`, its database in `data_dir`, bounded: 15 days or 1 GB, whichever comes first
    (a stack left running for months must not fill the disk)."""
    return [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=15d",
        "--storage.tsdb.retention.size=1GB",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
