"""Log files that rotate, for the output of the processes cicloml starts.

A process writing to a plain file grows it without bound. Here its output comes through a pipe and is written to a
`RotatingFile`: past `MAX_BYTES` the file becomes `<name>.1` (the older ones move up, `KEEP` are kept) and a new one
starts. `cicloml serve` copies each bento's output this way on a thread (`copy_output`); `make up` starts each part
under `python -m cicloml.logs PATH -- COMMAND...`, which does the same for a process that outlives the command
that started it, passes SIGTERM, SIGINT and SIGHUP on, and exits as the command did.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

MAX_BYTES = 10 * 2**20
KEEP = 3
"""At most (KEEP + 1) x MAX_BYTES of log per process: 40 MiB."""


class RotatingFile:
    """An append-only log file rotated by size. Not thread-safe: one writer."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 (closed in close())

    def write(self, data: bytes) -> None:
        if self._file.tell() + len(data) > self.max_bytes and self._file.tell() > 0:
            self._rotate()
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        for number in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")  # noqa: SIM115


def copy_output(stream: IO[bytes], path: Path) -> threading.Thread:
    """Copy `stream` (a process's stdout) to a `RotatingFile` at `path` on a daemon thread until it closes."""

    def copy() -> None:
        log = RotatingFile(path)
        try:
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                log.write(chunk)
        finally:
            log.close()

    thread = threading.Thread(target=copy, name=f"log-{path.name}", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    """`python -m cicloml.logs PATH -- COMMAND...`: run COMMAND with its output to a rotating PATH."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m cicloml.logs PATH -- COMMAND [ARGUMENT...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for forwarded in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(forwarded, lambda number, frame: child.send_signal(number))
    assert child.stdout is not None
    copy_output(child.stdout, Path(argv[0])).join()
    status = child.wait()
    if status < 0:  # killed by a signal: end the same way, so whoever waits on this process sees it
        if -status != signal.SIGKILL:  # the one signal whose handling cannot be set
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
