"""Building the bento: the prediction service with one model version pinned, tagged with that version."""

import os
import subprocess
import sys
from pathlib import Path

from bentoml._internal.bento.bento import BentoStore
from bentoml._internal.tag import Tag
from bentoml.exceptions import NotFound

from cicloml.errors import ConfigError
from cicloml.settings import Settings

BENTO_NAME = "cicloml"
"""The bento's name (bentofile.yaml `name`); its version is the pinned model's version."""


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
    try:
        BentoStore(str(settings.bentoml_home / "bentos")).get(bento_tag)
        return bento_tag, False
    except NotFound:
        pass

    # The environment is passed through (PATH, proxies, HOME), with BentoML and cicloml pointed at this state.
    environment = {
        **os.environ,
        "BENTOML_HOME": str(settings.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        "CICLO_STATE_DIR": str(settings.state_dir),
        "CICLO_SPEC_PATH": str(settings.spec_path),
    }
    command = [
        str(Path(sys.executable).with_name("bentoml")),
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
    result = subprocess.run(command, cwd=project_dir, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"bentoml build failed for {model}:\n{tail}")
    built = [line.removeprefix("__tag__:") for line in result.stdout.splitlines() if line.startswith("__tag__:")]
    if built != [bento_tag]:
        raise RuntimeError(f"bentoml build reported {built}, expected {bento_tag}")
    return bento_tag, True
