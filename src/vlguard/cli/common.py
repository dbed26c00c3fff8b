"""Helpers shared by the command modules (standard library only, so that ``--help`` stays fast)."""

from __future__ import annotations

import os


def is_rank_zero() -> bool:
    """Whether this process prints results: always, unless it is a non-zero rank of a torchrun/accelerate job."""
    # RANK is set by torchrun / accelerate launch; every rank runs the command, one reports.
    return os.environ.get("RANK", "0") == "0"
