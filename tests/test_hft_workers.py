"""Workers of `compute.parallel_cells` die with the sweep that started them: each way alone, on a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)"
    ),
]

# A parent that starts one worker (which follows it, by the one way asked for) and waits for ever.
PARENT = textwrap.dedent("""
    import os, subprocess, sys
    worker = subprocess.Popen([sys.executable, "-c", WORKER, sys.argv[1]], env={**os.environ, "P": str(os.getpid())})
    print(worker.pid, flush=True)
    worker.wait()
""")
WORKER = textwrap.dedent("""
    import os, sys, time
    import vlguard.hft.workers as workers
    if sys.argv[1] == "watchdog":  # as where there is no prctl: the thread alone
        workers._request_death_signal = lambda: None
        workers.WATCH_SECONDS = 0.1
    else:  # the kernel's signal alone: the thread would look only after an hour
        workers.WATCH_SECONDS = 3600
    workers.follow_parent(int(os.environ["P"]))
    print("following", flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("way", ["kernel", "watchdog"])
def test_a_worker_dies_when_its_parent_is_killed(way: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", f"WORKER = {WORKER!r}\n{PARENT}", way],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())  # the worker shares the parent's stdout
    try:
        assert parent.stdout.readline().strip() == "following"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), f"the worker outlived its parent ({way})"
    finally:
        parent.kill()
        parent.wait()
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_stops_at_once() -> None:
    """Started by a parent that died before the worker could ask to follow it."""
    code = "import os, vlguard.hft.workers as w; w.follow_parent(os.getppid() + 1); print('ran on')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "ran on" not in done.stdout
