"""The task runner the flows' parallel parts run on, chosen by settings: threads (the embedded default) or Dask.

`CICLO_TASK_RUNNER=dask` sends the tasks that flows `.map` (per-model drift checks, backfill dates) and a
hyperparameter search's candidates (joblib's dask backend) to a Dask cluster through prefect-dask: the scheduler at
`CICLO_DASK_ADDRESS`, else a temporary local cluster of processes for each flow run. The flows do not change;
prefect_dask is imported only when Dask is chosen.
"""

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import joblib
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from cicloml.settings import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")


def task_runner(settings: Settings) -> TaskRunner:
    """Threads in the flow's process, or Dask: the scheduler at `settings.dask_address`, else a temporary
    `distributed.LocalCluster` of worker processes (one per core) started and stopped with the flow run."""
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if PREFECT_API_URL.value() is None:
        # The workers get the flow run's settings, and with no API URL in them each worker process starts a
        # temporary Prefect server of its own (seconds per worker), which the flow's server never hears from.
        get_logger(__name__).warning(
            "CICLO_TASK_RUNNER=dask without a Prefect server (PREFECT_API_URL): each Dask worker starts its own"
        )
    return DaskTaskRunner(address=settings.dask_address) if settings.dask_address else DaskTaskRunner()


class ConfiguredTaskRunner(ThreadPoolTaskRunner):
    """`@flow(task_runner=ConfiguredTaskRunner())`: the runner `task_runner` picks from the settings when each flow
    run starts, not when the flow is imported (a deployment's worker, a test that changes the environment).

    Prefect starts every flow run with `flow.task_runner.duplicate()`, so this runner only stands in for the
    configured one until then.
    """

    def duplicate(self) -> TaskRunner:  # type: ignore[override]
        return task_runner(get_settings())


def spread_joblib(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, with the joblib work it starts (a hyperparameter search's candidates) sent to the Dask cluster when
    the flow calling it runs on the Dask runner; unchanged on threads."""

    @functools.wraps(fn)
    def spread(*args: P.args, **kwargs: P.kwargs) -> R:
        with _joblib_on_cluster():
            return fn(*args, **kwargs)

    return spread


@contextmanager
def _joblib_on_cluster() -> Iterator[None]:
    # Only a Dask runner imports prefect_dask: asking sys.modules keeps the threads runner from importing it.
    prefect_dask = sys.modules.get("prefect_dask")
    flow_run = FlowRunContext.get()
    runner = flow_run.task_runner if flow_run else None
    if prefect_dask is None or not isinstance(runner, prefect_dask.DaskTaskRunner):
        yield
        return
    # The runner's own client, from the flow's process: the candidates run on the workers and the search waits here.
    # (Not prefect_dask.get_dask_client() in a task on a worker: joblib then sends that short-lived client's
    # backend along with the candidates' nested calls, and candidates failed with FutureCancelledError and NaN
    # scores.) Nested joblib calls inside a candidate (the pipeline's column transformer) use the worker's client.
    with joblib.parallel_config(backend="dask", client=runner.client):
        yield
