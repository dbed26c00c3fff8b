"""``vlguard.distributed``: where a process stands in a launch (the multi-process runs are in
test_distributed_generation.py and test_train_distributed.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from vlguard.distributed import (
    ProcessGroup,
    Topology,
    is_main_process,
    local_rank,
    rank,
    topology,
    wait_for_everyone,
    world_size,
)

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def test_topology_reads_the_launchers_variables() -> None:
    assert topology({}) == Topology(rank=0, world_size=1, local_rank=0, local_world_size=1)
    assert topology({}).is_main
    second_node = topology({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert second_node == Topology(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert not second_node.is_main
    # Without the local variables, the launch is taken to be on one node.
    assert topology({"RANK": "2", "WORLD_SIZE": "3"}) == Topology(2, 3, 2, 3)


def test_the_process_functions_follow_this_processs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlguard.cli.common import is_rank_zero

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert (rank(), world_size(), local_rank(), is_main_process(), is_rank_zero()) == (0, 1, 0, True, True)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (rank(), world_size(), local_rank(), is_main_process(), is_rank_zero()) == (1, 2, 1, False, False)


def test_a_plain_process_is_a_group_of_one_without_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as torch_dist

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    group = ProcessGroup.join(dt.timedelta(seconds=5))
    assert group == ProcessGroup(rank=0, world_size=1, owns_group=False) and group.is_main
    group.barrier()
    wait_for_everyone()
    assert group.from_main("rank 0's value") == "rank 0's value"
    group.close()
    assert not torch_dist.is_initialized()
