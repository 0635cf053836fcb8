"""Rotating logs: a file past its size moves to .1 (older ones up, a bounded number kept); the wrapper that runs a
command with its output rotated passes signals on and ends as the command did."""

import signal
import subprocess
import sys
import time

from cicloml.logs import RotatingFile


def test_a_file_past_its_size_rotates_and_only_so_many_are_kept(tmp_path):
    path = tmp_path / "server.log"
    log = RotatingFile(path, max_bytes=100, keep=2)
    for line in range(40):
        log.write(f"line {line:03d} of the log\n".encode())  # 20 bytes each: 5 a file
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [file.name for file in files] == ["server.log", "server.log.1", "server.log.2"]
    assert all(file.stat().st_size <= 100 for file in files)
    assert path.read_text().splitlines()[-1] == "line 039 of the log"
    assert (tmp_path / "server.log.1").read_text().splitlines()[-1] == "line 034 of the log"


def test_the_wrapper_writes_the_output_and_exits_as_the_command_did(tmp_path):
    path = tmp_path / "part.log"
    command = [sys.executable, "-c", "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"]
    done = subprocess.run([sys.executable, "-m", "cicloml.logs", str(path), "--", *command], timeout=60)
    assert done.returncode == 3
    assert path.read_text().split() == ["hello", "oops"]


def test_the_wrapper_passes_sigterm_on_and_dies_of_the_same_signal(tmp_path):
    path = tmp_path / "part.log"
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('stopping', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    wrapper = subprocess.Popen([sys.executable, "-m", "cicloml.logs", str(path), "--", sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while "ready" not in (path.read_text() if path.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 0  # the command handled it and exited 0
    assert path.read_text().split() == ["ready", "stopping"]
