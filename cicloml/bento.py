"""Bentos: building one per model version, and deploying it to BentoCloud when credentials are configured."""

import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from bentoml._internal.bento.bento import BentoStore
from bentoml._internal.tag import Tag
from bentoml.exceptions import NotFound

from cicloml.errors import ConfigError
from cicloml.settings import Settings

BENTO_NAME = "cicloml"
"""The bento's name (bentofile.yaml `name`); its version is the pinned model's version."""

BENTOML = Path(sys.executable).with_name("bentoml")
"""The `bentoml` command of this environment."""


def bentoml_environment(settings: Settings) -> dict[str, str]:
    """The environment for a `bentoml` subprocess: this one (PATH, proxies, HOME, credentials) with BentoML's home
    and cicloml's settings pointed at this state folder. A fresh process is how a command gets this store:
    BentoML fixes its home when it is first imported."""
    return {
        **os.environ,
        "BENTOML_HOME": str(settings.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        "CICLO_STATE_DIR": str(settings.state_dir),
        "CICLO_SPEC_PATH": str(settings.spec_path),
    }


def bento_tag_for(model_tag: str) -> str:
    """`cicloml:<model version>`: one bento per model version, so the tag says what it serves."""
    return f"{BENTO_NAME}:{Tag.from_taglike(model_tag).version}"


def build_bento(settings: Settings, model_tag: str, project_dir: Path) -> tuple[str, bool]:
    """Build the bento pinning `model_tag` from `project_dir`'s bentofile.yaml, into the state folder's BentoML home.

    Returns the bento tag and whether it was built now (False: a bento for this version already existed, and
    bentos are immutable, so it is reused). The build runs in a subprocess because it imports the service, which
    finds its model through BentoML's global model store, fixed by BENTOML_HOME when bentoml is first imported:
    a fresh process gets the state folder's store whatever the calling process imported before.
    """
    model = Tag.from_taglike(model_tag)
    if not model.version:
        raise ConfigError(f"model tag {model_tag!r} has no version; pin one (name:version)")
    bento_tag = bento_tag_for(model_tag)
    # One build per bento at a time: the retrain flow and `cicloml serve` both build a new champion's bento as soon
    # as it is promoted, and the second `bentoml build` of a tag fails ("already exists"). The later one waits here
    # and then reuses the first one's bento.
    locks = settings.bentoml_home / "build-locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{model.version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            BentoStore(str(settings.bentoml_home / "bentos")).get(bento_tag)
            return bento_tag, False
        except NotFound:
            pass
        return _build(settings, model, bento_tag, project_dir), True


def _build(settings: Settings, model: Tag, bento_tag: str, project_dir: Path) -> str:
    command = [
        str(BENTOML),
        "build",
        "--bentofile",
        str(project_dir / "bentofile.yaml"),
        "--arg",
        f"model_tag={model}",
        "--version",
        str(model.version),
        "--label",
        f"model={model.name}",
        "--label",
        f"model_version={model.version}",
        "--output",
        "tag",
    ]
    result = subprocess.run(command, cwd=project_dir, env=bentoml_environment(settings), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed for {model}:\n{_tail(result)}")
    built = [line.removeprefix("__tag__:") for line in result.stdout.splitlines() if line.startswith("__tag__:")]
    if built != [bento_tag]:
        raise RuntimeError(f"bentoml build reported {built}, expected {bento_tag}")
    return bento_tag


@dataclass(frozen=True)
class DeployReport:
    """What happened to a bento on BentoCloud: applied to a deployment, or skipped (and why)."""

    status: Literal["deployed", "skipped"]
    bento_tag: str
    deployment: str
    message: str


def bentocloud_credentials(settings: Settings) -> str | None:
    """Where BentoCloud credentials come from (`BENTO_CLOUD_API_KEY`, or a `bentoml cloud login` context in
    the state folder's BentoML home), or None when there are none."""
    if settings.bento_cloud_api_key is not None:
        return "BENTO_CLOUD_API_KEY"
    logins = settings.bentoml_home / ".yatai.yaml"
    if logins.is_file():
        config = yaml.safe_load(logins.read_text()) or {}
        current = config.get("current_context_name")
        if any(context.get("name") == current for context in config.get("contexts") or []):
            return f"bentoml cloud login context {current!r} ({logins})"
    return None


def deploy_bento(settings: Settings, bento_tag: str, config_file: Path) -> DeployReport:
    """Create or update the BentoCloud deployment described by `config_file` to serve `bento_tag`.

    Runs `bentoml deployment apply` (the deploy that also updates: `bentoml deploy` only creates), which pushes
    the bento first, so a new champion reaches BentoCloud as a deployment update with its rollout strategy. With
    no credentials it does nothing and says so.
    """
    config = yaml.safe_load(config_file.read_text()) or {}
    deployment = config.get("name")
    if not deployment:
        raise ConfigError(f"{config_file}: set `name`, the BentoCloud deployment to create or update")
    credentials = bentocloud_credentials(settings)
    if credentials is None:
        return DeployReport(
            "skipped",
            bento_tag,
            deployment,
            "BentoCloud credentials are not configured, so nothing was deployed: set BENTO_CLOUD_API_KEY "
            f"(and BENTO_CLOUD_API_ENDPOINT), or run `BENTOML_HOME={settings.bentoml_home} bentoml cloud login`",
        )
    command = [str(BENTOML), "deployment", "apply", bento_tag, "--config-file", str(config_file)]
    result = subprocess.run(command, env=bentoml_environment(settings), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml deployment apply failed for {bento_tag} ({deployment}):\n{_tail(result)}")
    return DeployReport("deployed", bento_tag, deployment, f"{bento_tag} applied to {deployment} ({credentials})")


def _tail(result: subprocess.CompletedProcess[str], lines: int = 20) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])
