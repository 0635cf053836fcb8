"""Bentos: building one per model version, and deploying it to BentoCloud when credentials are configured.

A bento carries the project it serves, wherever that project lives: `build_bento` assembles a build context with
cicloml's service and library, the spec that `CICLO_SPEC_PATH` names and the Feast repository its `features.repo`
names (paths rewritten for the bento's layout, and a snapshot of the registry), then runs `bentoml build` in it.
The bento then serves on its own: `bentoml serve <name>:<version>` with only `BENTOML_HOME` (and the online store's
connection) set, as a container runs it.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from bentoml._internal.bento.bento import BentoStore
from bentoml._internal.tag import Tag
from bentoml.exceptions import NotFound

import bentos
import cicloml
from cicloml.errors import ConfigError
from cicloml.redaction import redact
from cicloml.settings import Settings
from cicloml.spec import load_spec

BENTOFILE = Path(bentos.__file__).resolve().parents[1] / "bentofile.yaml"
"""The bento build (`bentofile.yaml` beside cicloml's service): what every bento takes, its Python packages."""

BENTO_PROJECT = "project"
"""Where a bento keeps the project it serves, under its `src/`: `cicloml.yaml` and the Feast repository."""
BENTO_FEATURE_REPO = "feature_repo"
"""The Feast repository's folder in `project/`."""
REGISTRY_SNAPSHOT = "registry.db"

FEAST_SQLITE_DEFAULT_PATH = "data/online.db"

BENTOML = Path(sys.executable).with_name("bentoml")
"""The `bentoml` command of this environment."""


def bentoml_environment(settings: Settings) -> dict[str, str]:
    """The environment for a `bentoml` subprocess: this one (PATH, proxies, HOME, credentials) with BentoML's home
    and cicloml's settings pointed at this state folder. A fresh process is how a command gets this store:
    BentoML fixes its home when it is first imported. (A bento reads the spec it carries, whatever
    CICLO_SPEC_PATH says: `bentos.service.project_spec_path`.)"""
    return {
        **os.environ,
        "BENTOML_HOME": str(settings.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        "CICLO_STATE_DIR": str(settings.state_dir),
        "CICLO_SPEC_PATH": str(settings.spec_path),
    }


def bento_tag_for(model_tag: str) -> str:
    """A bento is named after its model and versioned with it: the bento serving `churn:abc` is `churn:abc`."""
    return str(Tag.from_taglike(model_tag))


def deployment_name(model_name: str) -> str:
    """The BentoCloud deployment of a model: `cicloml-<name>` (BentoCloud names take hyphens, not underscores)."""
    return f"cicloml-{model_name.replace('_', '-')}"


def build_bento(settings: Settings, model_tag: str) -> tuple[str, bool]:
    """Build the bento pinning `model_tag` for the project the settings' spec names, into the state folder's BentoML
    home.

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
    with open(locks / f"{model.name}-{model.version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            BentoStore(str(settings.bentoml_home / "bentos")).get(bento_tag)
            return bento_tag, False
        except NotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="build-", dir=settings.bentoml_home) as folder:
            context = Path(folder)
            write_build_context(settings, context)
            return _build(settings, model, bento_tag, context), True


def write_build_context(settings: Settings, context: Path) -> None:
    """Lay out what a bento takes in `context`: `bentofile.yaml` (named after the model), cicloml's service and
    library, and `project/`: the spec and the Feast repository it names, rewritten to be read from there."""
    spec = load_spec(settings.spec_path)
    _copy_sources(Path(bentos.__file__).parent, context / "bentos")
    _copy_sources(Path(cicloml.__file__).parent, context / "cicloml")
    project = context / BENTO_PROJECT
    _copy_feature_repo(settings, spec.features.repo, project / BENTO_FEATURE_REPO)
    raw_spec = yaml.safe_load(settings.spec_path.read_text())
    raw_spec.setdefault("features", {})["repo"] = BENTO_FEATURE_REPO
    (project / "cicloml.yaml").write_text(yaml.safe_dump(raw_spec, sort_keys=False))
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    bentofile["name"] = spec.name
    bentofile.setdefault("labels", {})["project"] = spec.name
    (context / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))


def _copy_sources(package: Path, target: Path) -> None:
    for source in package.rglob("*.py"):
        if "__pycache__" not in source.parts:
            destination = target / source.relative_to(package)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _copy_feature_repo(settings: Settings, repo: Path, target: Path) -> None:
    """The Feast repository as the bento reads it: its definitions (the files `feast apply` imports), a snapshot of
    the registry as it is now (so the bento serves the definitions it was built with, wherever the registry lives),
    and its configuration pointing at that snapshot, with relative SQLite paths made absolute (they named files
    beside the repository, not inside the bento)."""
    from feast.repo_operations import get_repo_files  # Feast is slow to import: only building needs it

    from cicloml.feature_store import CONFIG_FILES, open_store

    repo = repo.resolve()
    for source in get_repo_files(repo):
        destination = target / source.relative_to(repo)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    store = open_store(repo, settings)
    target.mkdir(parents=True, exist_ok=True)
    (target / REGISTRY_SNAPSHOT).write_bytes(store.registry.proto().SerializeToString())
    for config_file in CONFIG_FILES.values():
        if (repo / config_file).is_file():
            config = yaml.safe_load((repo / config_file).read_text())
            (target / config_file).write_text(yaml.safe_dump(_bento_config(config, repo), sort_keys=False))


def _bento_config(config: dict[str, Any], repo: Path) -> dict[str, Any]:
    config["registry"] = {"registry_type": "file", "path": REGISTRY_SNAPSHOT, "cache_ttl_seconds": 0}
    from cicloml.online_stores import PLAIN_SQLITE_TYPE, SQLITE_TYPES  # imports Feast, as building does anyway

    online = config.get("online_store", PLAIN_SQLITE_TYPE)
    online = {"type": online} if isinstance(online, str) else dict(online)
    if online.get("type", PLAIN_SQLITE_TYPE) in SQLITE_TYPES:
        path = str(online.get("path", FEAST_SQLITE_DEFAULT_PATH))
        if "${" not in path and not Path(path).is_absolute():
            online["path"] = str(repo / path)
    config["online_store"] = online
    return config


def _build(settings: Settings, model: Tag, bento_tag: str, context: Path) -> str:
    command = [
        str(BENTOML),
        "build",
        "--bentofile",
        str(context / "bentofile.yaml"),
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
    result = subprocess.run(command, cwd=context, env=bentoml_environment(settings), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed for {model}:\n{_tail(result, settings)}")
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
    """Create or update the BentoCloud deployment of the bento's model (`deployment_name`), configured by
    `config_file`, to serve `bento_tag`.

    Runs `bentoml deployment apply` (the deploy that also updates: `bentoml deploy` only creates), which pushes
    the bento first, so a new champion reaches BentoCloud as a deployment update with its rollout strategy. With
    no credentials it does nothing and says so.
    """
    config = yaml.safe_load(config_file.read_text()) or {}
    deployment = config["name"] = deployment_name(Tag.from_taglike(bento_tag).name)
    credentials = bentocloud_credentials(settings)
    if credentials is None:
        return DeployReport(
            "skipped",
            bento_tag,
            deployment,
            "BentoCloud credentials are not configured, so nothing was deployed: set BENTO_CLOUD_API_KEY "
            f"(and BENTO_CLOUD_API_ENDPOINT), or run `BENTOML_HOME={settings.bentoml_home} bentoml cloud login`",
        )
    with tempfile.NamedTemporaryFile("w", prefix="deployment-", suffix=".yaml", delete=False) as named:
        yaml.safe_dump(config, named, sort_keys=False)
    command = [str(BENTOML), "deployment", "apply", bento_tag, "--config-file", named.name]
    try:
        result = subprocess.run(command, env=bentoml_environment(settings), capture_output=True, text=True)
    finally:
        os.unlink(named.name)
    if result.returncode != 0:
        raise RuntimeError(
            f"bentoml deployment apply failed for {bento_tag} ({deployment}):\n{_tail(result, settings)}"
        )
    return DeployReport("deployed", bento_tag, deployment, f"{bento_tag} applied to {deployment} ({credentials})")


def _tail(result: subprocess.CompletedProcess[str], settings: Settings, lines: int = 20) -> str:
    """The end of a `bentoml` command's output, secrets redacted: the command runs with BENTO_CLOUD_API_KEY (and
    every CICLO_* secret) in its environment, and its errors may repeat a request with the key."""
    output = redact((result.stdout + result.stderr).strip(), settings.secrets)
    return "\n".join(output.splitlines()[-lines:])
