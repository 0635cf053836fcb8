"""The flow benchmarks/bench_operations.py deploys: it does nothing, so all of a run's latency is orchestration."""

from prefect import flow


@flow(name="bench-tick")
def tick() -> None:
    """Nothing: the benchmark times when the run starts, not what it does."""
