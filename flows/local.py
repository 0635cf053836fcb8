"""Running flows in this process (`make demo`, `python -m flows.<name>`), outside a worker."""

import socket
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache
from typing import ParamSpec, TypeVar
from uuid import UUID

import psutil
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Crashed

from cicloml.processes import ProcessRecord, find
from flows.temporary_server import start_temporary_server

P = ParamSpec("P")
R = TypeVar("R")

PROCESS_TAG = "cicloml-local-process"
"""Tags a flow run started through a temporary server with the process running it: `<tag>=<host>/<pid>/<started>`.
Prefect 3.8.8 records no PID for a run executed in the calling process (`infrastructure_pid` is set by workers)."""
PAGE = 200


def run_locally(flow: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `flow` (and its subflows) with flow-run heartbeats off.

    Heartbeats let an automation mark a deployment's run crashed when its worker dies; a run started by hand has
    no such watcher. Here they cost about a second per flow run: Prefect 3.8's heartbeat thread sleeps in
    one-second steps and is joined when the flow ends. Runs started by a worker keep Prefect's default.

    With no API URL configured, Prefect's temporary server is started first, so that it dies with this process
    (`flows.temporary_server`); runs a killed local process left RUNNING in that local database are marked Crashed
    (`mark_orphaned_runs_crashed`), and this process's runs are tagged so that the next local start can do the same
    for them. With an API URL configured (a server, `prefect_test_harness`), nothing of this happens.
    """
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with tags(process_tag()) if _temporary_server_ready() else nullcontext():
            return flow(*args, **kwargs)


@cache
def _temporary_server_ready() -> bool:
    """Start the temporary server and sweep the runs killed processes left, once per process: the sweep reads every
    RUNNING run, which is work for each flow call only if done for each (it was, and cost a local run time)."""
    if start_temporary_server() is None:
        return False
    mark_orphaned_runs_crashed()
    return True


def process_tag(record: ProcessRecord | None = None) -> str:
    record = record or ProcessRecord.of(psutil.Process())
    return f"{PROCESS_TAG}={socket.gethostname()}/{record.pid}/{record.started!r}"


def gone_process(run_tags: list[str]) -> ProcessRecord | None:
    """The process a run's tags name, if it ran on this host and is gone; None if it lives, or is not known here."""
    for tag in run_tags:
        name, _, value = tag.partition("=")
        if name != PROCESS_TAG:
            continue
        host, _, rest = value.partition("/")
        pid, _, started = rest.partition("/")
        try:
            record = ProcessRecord(pid=int(pid), started=float(started))
        except ValueError:
            return None
        return record if host == socket.gethostname() and find(record) is None else None
    return None


def mark_orphaned_runs_crashed() -> list[UUID]:
    """Set Crashed the RUNNING flow runs whose local process (per `PROCESS_TAG`) is gone; their ids.

    A run tagged by a process that still lives (another local run at the same time), untagged (started by a worker
    or before this tag existed) or tagged on another host is left as it is.
    """
    running = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))
    crashed: list[UUID] = []
    with get_client(sync_client=True) as client:
        runs = []
        while page := client.read_flow_runs(
            flow_run_filter=running, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=len(runs)
        ):
            runs += page
            if len(page) < PAGE:
                break
        for run in runs:
            if (gone := gone_process(run.tags)) is not None:
                message = f"The process that ran it is gone (PID {gone.pid} on {socket.gethostname()})."
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed.append(run.id)
    return crashed
