"""Processes cicloml starts, found again and stopped with everything they started.

A PID alone is not a process: once it exits, the number can be given to another one. A `ProcessRecord` keeps the
creation time beside the PID, and `find` returns the process only while both still match. Stopping takes the
whole family, the recorded members as well as the live descendants: a child whose parent was killed is reparented
to PID 1 and no longer found below it (BentoML's workers, for one, outlive a `kill -9` of their server).
"""

from collections.abc import Iterable
from contextlib import suppress

import psutil
from pydantic import BaseModel

STOP_TIMEOUT_S = 30.0


class ProcessRecord(BaseModel):
    """Enough to find one process again, and to be sure a PID still means it."""

    pid: int
    started: float
    """The process's creation time (psutil), which a reused PID would not match."""

    @classmethod
    def of(cls, process: psutil.Process) -> "ProcessRecord":
        return cls(pid=process.pid, started=process.create_time())


def find(record: ProcessRecord) -> psutil.Process | None:
    """The live process `record` names, or None when it is gone or its PID now belongs to another one."""
    with suppress(psutil.NoSuchProcess):
        found = psutil.Process(record.pid)
        if abs(found.create_time() - record.started) < 0.01 and found.status() != psutil.STATUS_ZOMBIE:
            return found
    return None


def family(root: psutil.Process) -> list[psutil.Process]:
    """`root` and every process it started, as far as they still descend from it."""
    members = [root]
    with suppress(psutil.NoSuchProcess):
        members += root.children(recursive=True)
    return members


def stop_tree(root: psutil.Process, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM `root` and everything it started, then SIGKILL what is left after `timeout` seconds."""
    stop_all(family(root), timeout)


def stop_all(processes: Iterable[psutil.Process], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each process, wait up to `timeout` seconds for them all, then SIGKILL the ones still there."""
    members = list(processes)
    for member in members:
        with suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for member in alive:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=10)
