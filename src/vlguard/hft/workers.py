"""The worker processes of ``compute.parallel_cells``: they never outlive the sweep that started them.

``run_sweep`` starts K workers (``vlguard hft OUTPUT/workers/config.yaml --cells i/K``) and waits for
them. A parent that is killed (``kill -9``, an out-of-memory kill) cannot stop them itself; workers left
running would go on training and writing into the folder that the rerun's workers use. So each worker
follows its parent (:func:`follow_parent`, called when a worker starts, with the parent's pid from
``PARENT_PID_ENV``):

- on Linux it asks the kernel to send it ``SIGKILL`` the moment its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, see prctl(2)), then checks that the parent is still the one that started
  it (it may have died before the request);
- everywhere, a daemon thread checks the parent's pid every ``WATCH_SECONDS`` and kills the worker when
  the parent is gone (its parent pid changes when it is re-parented).

A worker killed this way leaves what any killed run leaves, which a rerun resumes: checkpoints marked
complete, whole appended lines, stage folders whose locks the operating system released.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

logger = logging.getLogger(__name__)

# The environment variable that tells a worker its parent's pid (set by run_workers).
PARENT_PID_ENV = "VLGUARD_HFT_PARENT_PID"
# How often the fallback thread looks at the parent's pid.
WATCH_SECONDS = 1.0
# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1


def worker_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment of a worker of this process: ``environ`` plus this process's pid."""
    return {**environ, PARENT_PID_ENV: str(os.getpid())}


def follow_parent_from_environment() -> None:
    """In a worker (``PARENT_PID_ENV`` set): die with the parent; elsewhere nothing."""
    value = os.environ.get(PARENT_PID_ENV)
    if value and value.isdigit():
        follow_parent(int(value))


def follow_parent(parent_pid: int) -> None:
    """Kill this process as soon as ``parent_pid`` (the process that started it) is gone."""
    _request_death_signal()
    if os.getppid() != parent_pid:  # died before the request (or it failed): stop now
        _die()
    threading.Thread(target=_watch, args=(parent_pid,), name="vlguard-follow-parent", daemon=True).start()


def _request_death_signal() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux; nothing where there is no such call."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            logger.warning(
                "prctl(PR_SET_PDEATHSIG) failed (errno %d); watching the parent instead", ctypes.get_errno()
            )
    except (OSError, AttributeError) as err:
        logger.warning("no prctl (%s); watching the parent instead", err)


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_SECONDS)
    _die()


def _die() -> None:
    logger.error("the sweep that started this worker is gone; stopping")
    os.kill(os.getpid(), signal.SIGKILL)
