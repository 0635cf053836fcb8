"""Links to the current flow run, for messages that leave Prefect (Slack)."""

from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL


def flow_run_url() -> str | None:
    """The Prefect UI page of the running flow, or None where no UI serves it (a local run without a server)."""
    if not PREFECT_UI_URL.value() or flow_run.id is None:
        return None
    return str(flow_run.ui_url)
