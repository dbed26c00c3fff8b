"""Shared fixtures: the reference data beside the project, and one tiny model per test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VLGUARD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data in ../shared/data; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "vlguard" / "test.json").is_file():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set VLGUARD_SHARED_DATA to its folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def vlguard_data_dir(shared_data: Path) -> Path:
    """The real VLGuard annotations (train.json, test.json, gpt4_safe_safes.json); no images."""
    return shared_data / "vlguard"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaVA saved to a folder, built once per test run."""
    from vlguard.models.tiny import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-model") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama text LM (``tiny-lm``) saved to a folder, built once per test run."""
    from vlguard.models.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "model", seed=0)


@pytest.fixture(scope="session")
def _tiny_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlguard.models.resolve import ensure_tiny_model

    root = tmp_path_factory.mktemp("vlguard-cache")
    ensure_tiny_model("tiny", cache_root=root / "models")
    ensure_tiny_model("tiny-lm", cache_root=root / "models")
    return root


@pytest.fixture()
def tiny_cache(_tiny_cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``VLGUARD_CACHE`` pointing at a folder where ``tiny`` and ``tiny-lm`` are already built (once per run)."""
    monkeypatch.setenv("VLGUARD_CACHE", str(_tiny_cache_root))
    return _tiny_cache_root


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread, as in subprocesses started with OMP_NUM_THREADS=1 (same float rounding)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


STAND_IN_VLLM = Path(__file__).resolve().parent / "vllm_stand_in"


def _drop_vllm_modules() -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture()
def stand_in_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The vLLM stand-in (``tests/vllm_stand_in``) importable as ``vllm``, with an empty call record."""
    saved = {m: sys.modules[m] for m in sys.modules if m == "vllm" or m.startswith("vllm.")}
    _drop_vllm_modules()
    monkeypatch.syspath_prepend(str(STAND_IN_VLLM))
    import vllm

    vllm.CALLS.clear()
    vllm.FAIL_ON_CHAT_CALL = None
    yield vllm
    _drop_vllm_modules()
    sys.modules.update(saved)
