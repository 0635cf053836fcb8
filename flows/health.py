"""The model-health page after each check: rewritten from the model's history (`cicloml.health_report`) and linked
from the run's artifacts, so the run in the Prefect UI and a Slack message can both point at it."""

from pathlib import Path

from prefect.artifacts import create_link_artifact

from cicloml.health_report import write_health_page
from cicloml.settings import Settings


def publish_health_page(settings: Settings, model: str) -> Path:
    """Write `model`'s health page over its last windows and link it from the flow run; its path."""
    path = write_health_page(settings, model)
    create_link_artifact(key="model-health", link=path.as_uri(), link_text=f"model health: {model} (HTML)")
    return path
