"""build-bento: the bento that serves the champion (or a given version), tagged with the model version, and its
BentoCloud deployment when credentials are configured."""

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.bento import DeployReport
from cicloml.errors import ConfigError
from cicloml.registry import ModelRegistry
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from flows import tasks
from flows.local import run_locally

PROJECT_DIR = Path(__file__).resolve().parents[1]
DEPLOYMENT_CONFIG = PROJECT_DIR / "bentos" / "deployment.yaml"


class BuildBentoParams(BaseModel):
    model_tag: str | None = None
    """The model version to serve (`name:version`); default the champion."""
    deploy: bool = True
    """Apply bentos/deployment.yaml on BentoCloud with the bento, as deployment cicloml-<model name> (skipped, and
    said so, without credentials)."""


class BuildBentoResult(BaseModel):
    model_tag: str
    bento_tag: str
    built: bool
    """False when a bento for this model version already existed (bentos are immutable; it is reused)."""
    deployment: DeployReport | None
    """What happened on BentoCloud; None when the run did not ask to deploy."""


@flow(name="build-bento")
def build_bento(params: BuildBentoParams = BuildBentoParams()) -> BuildBentoResult:
    """Build the bento pinning one model version (default the champion) with the project it serves, tag it like
    the model (`<name>:<version>`), and record the bento on the model in the registry."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    registry = ModelRegistry(settings, spec.name)
    model_tag = params.model_tag or registry.champion()
    if model_tag is None:
        raise ConfigError(f"no champion for {spec.name!r} yet: train one first (python -m flows.train)")
    model_tag = registry.resolve(model_tag)  # a missing version fails here, before a build

    bento_tag, built = tasks.build_bento(settings, model_tag)
    registry.record_bento(model_tag, bento_tag)
    logger = get_run_logger()
    logger.info("%s serves %s (%s)", bento_tag, model_tag, "built" if built else "already built")

    deployment = tasks.deploy_bento(settings, bento_tag, DEPLOYMENT_CONFIG) if params.deploy else None
    if deployment is not None:
        logger.info("BentoCloud deployment %s: %s. %s", deployment.deployment, deployment.status, deployment.message)
        create_markdown_artifact(
            key="bentocloud-deployment",
            markdown=f"**{deployment.status}**: `{bento_tag}` → deployment `{deployment.deployment}`\n\n"
            f"{deployment.message}",
            description=deployment.status,
        )
    return BuildBentoResult(model_tag=model_tag, bento_tag=bento_tag, built=built, deployment=deployment)


if __name__ == "__main__":
    print(run_locally(build_bento).model_dump_json())
