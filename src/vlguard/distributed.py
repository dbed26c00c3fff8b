"""This process's place in a data-parallel launch: the one module that reads the launcher's environment.

``torchrun`` and ``accelerate launch`` start one process per device and tell each where it stands through
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``. Launched plainly, a process is rank 0
of 1. Nothing else in vlguard reads those variables (a test checks); everything asks here.

Two ways to wait for the other processes, for the two kinds of work:

- :func:`wait_for_everyone`, through accelerate: the barrier of training and of the HFT sweep, which
  starts the launcher's process group when none is running yet (the group the Trainer then uses);
- :class:`ProcessGroup`, through ``torch.distributed``: data-parallel generation, which only needs
  barriers and one broadcast, so it starts a ``gloo`` group of its own when none is running (gloo
  works with or without GPUs) and ends it when done.

Standard library only at import time (the CLI imports this to decide which process prints).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """Where a process stands: its rank among all processes and among those of its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes shared files and reports."""
        return self.rank == 0


def topology(environ: Mapping[str, str] | None = None) -> Topology:
    """The topology the launcher set in ``environ`` (default: this process's environment).

    ``LOCAL_RANK`` defaults to ``RANK`` and ``LOCAL_WORLD_SIZE`` to ``WORLD_SIZE`` (one node).
    """
    env = os.environ if environ is None else environ
    rank = int(env.get("RANK", "0"))
    world_size = int(env.get("WORLD_SIZE", "1"))
    return Topology(
        rank=rank,
        world_size=world_size,
        local_rank=int(env.get("LOCAL_RANK", str(rank))),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world_size))),
    )


def rank() -> int:
    """This process's rank (0 when launched plainly)."""
    return topology().rank


def world_size() -> int:
    """How many processes the launch has (1 when launched plainly)."""
    return topology().world_size


def local_rank() -> int:
    """This process's rank on its node: the index of its GPU."""
    return topology().local_rank


def is_main_process() -> bool:
    """Whether this process is rank 0 (always, when launched plainly)."""
    return topology().is_main


def wait_for_everyone() -> None:
    """Wait for every process of the launch (no-op alone), through accelerate's process state."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


@dataclass(frozen=True)
class ProcessGroup:
    """A ``torch.distributed`` group for barriers and broadcasts (rank 0 of 1 when launched plainly).

    ``join`` uses the group already running, or starts a ``gloo`` group that ``close`` ends again.
    """

    rank: int
    world_size: int
    owns_group: bool = False  # True when ``join`` started the group (and ``close`` must end it)

    @classmethod
    def join(cls, timeout: dt.timedelta) -> ProcessGroup:
        """This process's group; ``timeout`` bounds every collective call of a group started here."""
        where = topology()
        owns = False
        if where.world_size > 1:
            import torch.distributed as torch_dist

            if not torch_dist.is_initialized():
                # gloo: only barriers cross processes (no tensors), and it works with or without GPUs.
                torch_dist.init_process_group("gloo", timeout=timeout)
                owns = True
            logger.info("data-parallel: rank %d of world size %d", where.rank, where.world_size)
        return cls(rank=where.rank, world_size=where.world_size, owns_group=owns)

    @property
    def is_main(self) -> bool:
        """Rank 0."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process of the group (no-op alone)."""
        if self.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.barrier()

    def from_main(self, value: str | None) -> str | None:
        """Rank 0's ``value`` on every rank (so that every rank can fail alike on what rank 0 found)."""
        if self.world_size == 1:
            return value
        import torch.distributed as torch_dist

        box = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leave the process group (after the last barrier), so processes exit cleanly."""
        if self.owns_group:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()
