"""Work per call: every backend says how many requests it wants per ``generate`` call, the eval loop hands
it exactly that many and appends after each call, so a crash loses at most one call and resumes exactly.

The ``vllm`` backend runs against the stand-in engine (tests/vllm_stand_in): vLLM cannot run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from api_server import chat_reply, scripted_server
from conftest import STAND_IN_VLLM
from vlguard.data.sample import sample_dataset_dir
from vlguard.errors import ConfigError, VLGuardError
from vlguard.evaluate import EvalConfig, run_generation
from vlguard.generation import BACKENDS, GenerationRequest
from vlguard.records import Generation


def _config(run_dir: Path, **overrides: Any) -> EvalConfig:
    """The bundled sample benchmark (27 prompts with their images), 20 of them."""
    settings: dict[str, Any] = dict(
        model="tiny",
        data=str(sample_dataset_dir()),
        image_mode="original",
        limit=20,
        batch_size=2,
        max_new_tokens=3,
        run_dir=str(run_dir),
    )
    settings.update(overrides)
    return EvalConfig(**settings)


def _spy_on_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[list[int], list[Any]]:
    """Record the size of every ``generate`` call of backend ``name`` (and the backends made)."""
    make = BACKENDS[name]
    sizes: list[int] = []
    made: list[Any] = []

    def factory(model: str, **kwargs: Any) -> Any:
        backend = make(model, **kwargs)
        inner = backend.generate

        def generate(requests: list[GenerationRequest]) -> list[Generation]:
            sizes.append(len(requests))
            return inner(requests)

        backend.generate = generate  # type: ignore[method-assign]
        made.append(backend)
        return backend

    monkeypatch.setitem(BACKENDS, name, factory)
    return sizes, made


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hf_backend_gets_a_few_padded_batches_per_call(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes, made = _spy_on_calls(monkeypatch, "tiny")
    run_dir = run_generation(_config(tmp_path / "run", backend="tiny", limit=12), progress=False)
    assert made[0].requests_per_call == 2 * 4  # batch_size 2 × four padded batches
    assert sizes == [8, 4]
    assert len(_lines(run_dir / "generations.jsonl")) == 12
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["requests_per_call"] == 8
    assert manifest["data_parallel"] == {"processes": 1}


def test_hf_answers_the_whole_pending_set_longest_first_and_a_crash_resumes_exactly(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hf backend orders all pending samples by prompt length (not only within one call of 4 batches);
    a crash between calls still loses at most one call, and the finished file is in sample order."""
    make = BACKENDS["tiny"]
    calls: list[list[GenerationRequest]] = []
    fail_on_call: list[int] = []

    def factory(model: str, **kwargs: Any) -> Any:
        backend = make(model, **kwargs)
        inner = backend.generate

        def generate(requests: list[GenerationRequest]) -> list[Generation]:
            calls.append(list(requests))
            if len(calls) in fail_on_call:
                raise RuntimeError("killed")
            return inner(requests)

        backend.generate = generate  # type: ignore[method-assign]
        return backend

    monkeypatch.setitem(BACKENDS, "tiny", factory)
    clean = run_generation(_config(tmp_path / "clean", backend="tiny", limit=12), progress=False)
    assert [len(c) for c in calls] == [8, 4]
    from vlguard.generation.hf import HFBackend

    tokens = HFBackend("tiny")._token_lengths

    def lengths(requests: list[GenerationRequest]) -> list[int]:
        return tokens([r.prompt for r in requests])

    assert all(r.image is not None for c in calls for r in c)
    # Every prompt of the first call is at least as long as every prompt of the second.
    assert min(lengths(calls[0])) >= max(lengths(calls[1])) and len(set(lengths(calls[0] + calls[1]))) > 3
    generations = _lines(clean / "generations.jsonl")
    assert [g["sample_id"] for g in generations] == [s["id"] for s in _lines(clean / "samples.jsonl")]

    calls.clear()
    fail_on_call.append(2)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="killed"):
        run_generation(_config(crashed, backend="tiny", limit=12), progress=False)
    assert len(_lines(crashed / "generations.jsonl")) == 8  # the first call, in the order it was answered
    calls.clear()
    fail_on_call.clear()
    run_generation(_config(crashed, backend="tiny", limit=12), progress=False)
    assert [len(c) for c in calls] == [4]  # only the rest
    assert (crashed / "generations.jsonl").read_bytes() == (clean / "generations.jsonl").read_bytes()


def test_openai_backend_gets_rounds_of_its_concurrency_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes, made = _spy_on_calls(monkeypatch, "openai")
    with scripted_server(lambda body, index: chat_reply(f"reply {index}")) as server:
        options = {"base_url": server.url, "api_key_env": "VLGUARD_NO_SUCH_KEY", "max_concurrency": 3}
        run_dir = run_generation(
            _config(tmp_path / "api", backend="openai", model="served-vlm", backend_options=options),
            progress=False,
        )
        assert len(server.requests) == 20  # every prompt went over real HTTP, once
    assert made[0].requests_per_call == 4 * 3
    assert sizes == [12, 8]
    assert len(_lines(run_dir / "generations.jsonl")) == 20
    assert json.loads((run_dir / "manifest.json").read_text())["backend"]["requests_per_call"] == 12

    # The option overrides the default; nonsense is a clear error.
    sizes.clear()
    with scripted_server(lambda body, index: chat_reply("ok")) as server:
        options = {"base_url": server.url, "api_key_env": "VLGUARD_NO_SUCH_KEY", "requests_per_call": 7}
        run_generation(
            _config(tmp_path / "api7", backend="openai", model="m", backend_options=options), progress=False
        )
    assert sizes == [7, 7, 6]
    with pytest.raises(ConfigError, match="requests_per_call must be a whole number of at least 1"):
        BACKENDS["openai"]("m", base_url="http://127.0.0.1:9/v1", requests_per_call=0)


def test_vllm_engine_sees_whole_calls_not_batch_size_chunks(
    tmp_path: Path, tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    # --batch-size 2 (as for hf) no longer cuts the engine's work into chunks of 2: by default the whole
    # selection (20 < 1024) goes to the engine in one LLM.chat call.
    run_dir = run_generation(
        _config(tmp_path / "vllm", backend="vllm", model=str(tiny_model_dir)), progress=False
    )
    chats = [c for c in stand_in_vllm.CALLS if c["event"] == "chat"]
    assert [c["conversations"] for c in chats] == [20]
    assert chats[0]["images"] == 20  # the samples' own images, as PIL images
    assert chats[0]["sampling"]["temperature"] == 0.0 and chats[0]["sampling"]["max_tokens"] == 3
    generations = _lines(run_dir / "generations.jsonl")
    samples = _lines(run_dir / "samples.jsonl")
    assert [g["sample_id"] for g in generations] == [s["id"] for s in samples]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["requests_per_call"] == 1024
    assert manifest["backend"]["vllm_version"] == "0.33.0+stand-in"

    # A smaller requests_per_call (backend option) gives calls of exactly that size.
    stand_in_vllm.CALLS.clear()
    run_generation(
        _config(
            tmp_path / "vllm7",
            backend="vllm",
            model=str(tiny_model_dir),
            backend_options={"requests_per_call": 7},
        ),
        progress=False,
    )
    assert [c["conversations"] for c in stand_in_vllm.CALLS if c["event"] == "chat"] == [7, 7, 6]


def test_a_crash_between_calls_loses_at_most_one_call_and_resumes_exactly(
    tmp_path: Path, tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    def config(run_dir: Path) -> EvalConfig:
        return _config(
            run_dir,
            backend="vllm",
            model=str(tiny_model_dir),
            limit=12,
            backend_options={"requests_per_call": 4},
        )

    clean = run_generation(config(tmp_path / "clean"), progress=False)
    stand_in_vllm.CALLS.clear()
    stand_in_vllm.FAIL_ON_CHAT_CALL = stand_in_vllm._chat_calls + 3  # the engine dies in the third call
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="stand-in engine failure"):
        run_generation(config(crashed), progress=False)
    # The two finished calls were appended; nothing of the failed one.
    assert len(_lines(crashed / "generations.jsonl")) == 8
    assert not (crashed / "metrics.json").exists()

    stand_in_vllm.FAIL_ON_CHAT_CALL = None
    stand_in_vllm.CALLS.clear()
    run_generation(config(crashed), progress=False)
    assert [c["conversations"] for c in stand_in_vllm.CALLS if c["event"] == "chat"] == [4]  # only the rest
    resumed = _lines(crashed / "generations.jsonl")
    assert Counter(g["sample_id"] for g in resumed) == Counter(
        s["id"] for s in _lines(crashed / "samples.jsonl")
    )  # every sample exactly once
    assert (crashed / "generations.jsonl").read_bytes() == (clean / "generations.jsonl").read_bytes()


class _ForgetfulBackend:
    """A backend that drops the last request of each call (a defect the eval loop must not save)."""

    name = "forgetful"
    requests_per_call = 5

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return [Generation(r.sample_id, "ok") for r in requests[:-1]]


def test_a_backend_that_answers_short_is_an_error_and_nothing_of_that_call_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory: Callable[..., Any] = lambda model, **kwargs: _ForgetfulBackend()  # noqa: E731
    monkeypatch.setitem(BACKENDS, "forgetful", factory)
    run_dir = tmp_path / "run"
    with pytest.raises(VLGuardError, match=r"answered 4 request\(s\) of 5"):
        run_generation(_config(run_dir, backend="forgetful", model="m"), progress=False)
    assert not (run_dir / "generations.jsonl").exists() or not _lines(run_dir / "generations.jsonl")


@pytest.mark.slow
def test_two_vllm_engines_one_per_gpu_merge_into_the_single_engine_run(
    tmp_path: Path, tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    """Data parallel under torchrun: each process pins its own GPU and shard; rank 0 merges the shards."""
    parallel = tmp_path / "parallel"
    log = tmp_path / "engine.jsonl"
    data = str(sample_dataset_dir())
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "vlguard.cli.main", "generate", "--backend", "vllm", "--model", str(tiny_model_dir),
        "--data", data, "--limit", "20", "--max-new-tokens", "3", "--no-progress",
        "--backend-option", "requests_per_call=4", "--run-dir", str(parallel),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(STAND_IN_VLLM), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "0,1",
        "VLLM_STAND_IN_LOG": str(log),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "merged 20 generations from 2 shard file(s)" in result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    engines = sorted(
        (e["rank"], e["cuda_visible_devices"], e["multiproc_method"]) for e in events if e["event"] == "init"
    )
    assert engines == [("0", "0", "spawn"), ("1", "1", "spawn")]  # one engine per GPU, spawned
    assert sorted(e["conversations"] for e in events if e["event"] == "chat") == [2, 2, 4, 4, 4, 4]
    assert not list(parallel.glob("generations.rank*.jsonl"))
    manifest = json.loads((parallel / "manifest.json").read_text())
    assert manifest["data_parallel"] == {"processes": 2}
    assert manifest["backend"]["devices"] == ["0"]  # rank 0's engine

    single = run_generation(
        _config(tmp_path / "single", backend="vllm", model=str(tiny_model_dir), batch_size=16), progress=False
    )
    assert (parallel / "generations.jsonl").read_bytes() == (single / "generations.jsonl").read_bytes()
