"""Running flows in this process (`make demo`, `python -m flows.<name>`), outside a worker."""

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

P = ParamSpec("P")
R = TypeVar("R")


def run_locally(flow: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `flow` (and its subflows) with flow-run heartbeats off.

    Heartbeats let an automation mark a deployment's run crashed when its worker dies; a run started by hand has
    no such watcher. Here they cost about a second per flow run: Prefect 3.8's heartbeat thread sleeps in
    one-second steps and is joined when the flow ends. Runs started by a worker keep Prefect's default.
    """
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(*args, **kwargs)
