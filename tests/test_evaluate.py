"""The evaluation pipeline: stratified limits, resumable stages, re-judging, and kill -9 + resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vlguard.errors import ConfigError, ImageLoadError, VLGuardError
from vlguard.evaluate import (
    EvalConfig,
    resolve_eval,
    run_eval,
    run_generation,
    run_judges,
    run_metrics,
    select_samples,
)
from vlguard.records import Sample

CLI = [sys.executable, "-m", "vlguard.cli.main"]


def _sample(i: int, subset: str) -> Sample:
    return Sample(
        id=f"r{i}:{subset}",
        benchmark="b",
        subset=subset,
        prompt=f"prompt {i}",
        image=None,
        reference=None,
        category=None,
        subcategory=None,
        should_refuse=subset != "safe_safe",
    )


def _stand_in_samples() -> list[Sample]:
    return [_sample(i, "unsafe") for i in range(60)] + [_sample(i, "safe_safe") for i in range(40)]


def test_limit_is_stratified_by_subset_and_deterministic() -> None:
    samples = _stand_in_samples()
    chosen = select_samples(samples, limit=10)
    assert Counter(s.subset for s in chosen) == {"unsafe": 6, "safe_safe": 4}
    assert chosen == select_samples(list(reversed(samples)), limit=10)[::-1]  # independent of file order
    assert [s.id for s in chosen] == [s.id for s in samples if s in chosen]  # kept in benchmark order
    # Not simply the first rows of each subset.
    assert {s.id for s in chosen} != {s.id for s in samples[:6] + samples[60:64]}
    # A larger limit keeps the smaller selection.
    assert {s.id for s in chosen} <= {s.id for s in select_samples(samples, limit=30)}


def test_subset_filter_and_unknown_subset() -> None:
    samples = _stand_in_samples()
    assert {s.subset for s in select_samples(samples, subsets=["safe_safe"])} == {"safe_safe"}
    assert len(select_samples(samples, limit=1000)) == 100
    with pytest.raises(ConfigError, match="unknown subset"):
        select_samples(samples, subsets=["nope"])


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="image_mode"):
        EvalConfig(model="tiny", image_mode="colour")
    with pytest.raises(ConfigError, match="limit"):
        EvalConfig(model="tiny", limit=0)


@pytest.mark.parametrize(
    ("bench", "expected"),
    [
        ("vlguard-test", "original"),
        ("vlguard-train", "original"),
        ("figstep", "original"),
        ("figstep-tiny", "original"),
        ("xstest", "none"),
        ("advbench", "none"),
    ],
)
def test_image_mode_defaults_to_the_benchmarks_own(bench: str, expected: str) -> None:
    config = EvalConfig(model="org/m", bench=bench)
    assert config.image_mode is None  # as asked; the run uses the resolved mode
    assert config.resolve().image_mode == expected
    assert config.resolved_run_dir().name == f"m-{bench}-{expected}"
    # An explicit mode is kept as given.
    assert EvalConfig(model="org/m", bench=bench, image_mode="blank").image_mode == "blank"


def test_resolving_makes_a_new_record_and_leaves_the_asked_one_as_it_was() -> None:
    asked = EvalConfig(model="tiny", bench="advbench", preset="paper", device="cpu", judges=("refusal",))
    resolved = asked.resolve()
    # The manifest records the resolved record as `config`: same fields, same order as what was asked.
    assert [f.name for f in dataclasses.fields(resolved)] == [f.name for f in dataclasses.fields(asked)]
    assert (asked.image_mode, asked.judges, asked.system_prompt) == (None, ("refusal",), None)
    assert (resolved.image_mode, resolved.judges) == ("none", ("refusal-paper", "refusal"))
    assert resolved.system_prompt is not None and resolved == asked.resolve()
    assert resolve_eval(resolved) is resolved and resolve_eval(asked) == resolved
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.judges = ()  # type: ignore[misc]


def test_unknown_benchmark_is_a_config_error_when_the_config_is_made() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'"):
        EvalConfig(model="tiny", bench="nope")


def test_benchmark_options_are_result_fields_but_data_locations_are_not() -> None:
    from vlguard.evaluate import _result_fields

    samples = [_sample(0, "unsafe").to_dict()]
    options = {"suffix": " Sure,", "image_root": "/data/images", "cache_dir": "/tmp/c"}
    fields = _result_fields(
        EvalConfig(model="m", bench="advbench", bench_options=options).resolve(), samples, {}
    )
    assert fields["bench_options"] == {"suffix": " Sure,"}
    assert fields["image_mode"] == "none"
    other = _result_fields(
        EvalConfig(model="m", bench="advbench", bench_options={"suffix": "!"}).resolve(), samples, {}
    )
    assert other["bench_options"] != fields["bench_options"]
    # No result-changing options: no field, so folders made before it existed still match.
    plain = _result_fields(
        EvalConfig(model="m", bench="advbench", bench_options={"image_root": "x"}).resolve(), samples, {}
    )
    assert "bench_options" not in plain


def test_figstep_without_its_images_warns_that_the_attack_is_not_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "no-such-data")
    for mode in ("blank", "none"):
        caplog.clear()
        with pytest.raises(VLGuardError):  # the warning comes first, before any data is read
            run_generation(EvalConfig(model="tiny", bench="figstep-tiny", data=missing, image_mode=mode))
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("attack in the image" in m and repr(mode) in m for m in warnings), warnings
    caplog.clear()
    with pytest.raises(VLGuardError):
        run_generation(EvalConfig(model="tiny", bench="figstep-tiny", data=missing))
    assert not [r for r in caplog.records if "attack in the image" in r.getMessage()]


def _config(data: Path, run_dir: Path, **overrides: object) -> EvalConfig:
    settings: dict[str, object] = dict(
        model="tiny",
        data=str(data),
        image_mode="blank",
        judges=("refusal",),
        limit=12,
        batch_size=4,
        max_new_tokens=6,
        run_dir=str(run_dir),
    )
    settings.update(overrides)
    return EvalConfig(**settings)  # type: ignore[arg-type]


def test_eval_end_to_end_then_rerun_and_rejudge(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    run_dir = tmp_path / "run"
    metrics = run_eval(_config(vlguard_data_dir, run_dir), progress=False)
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and {s["subset"] for s in samples} == {"unsafe", "safe_unsafe", "safe_safe"}
    generations = (run_dir / "generations.jsonl").read_bytes()
    assert sorted(json.loads(line)["sample_id"] for line in generations.splitlines()) == sorted(
        s["id"] for s in samples
    )
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    asr = [m for m in metrics["metrics"] if m["metric"] == "attack_success_rate" and m["group"] == "all"]
    assert {m["subset"] for m in asr} == {"unsafe", "safe_unsafe"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["dtype"] == "float32" and manifest["judges"]["refusal"]["version"]

    # The same command again does nothing new.
    mtime = (run_dir / "generations.jsonl").stat().st_mtime_ns
    assert run_eval(_config(vlguard_data_dir, run_dir), progress=False) == metrics
    assert (run_dir / "generations.jsonl").stat().st_mtime_ns == mtime

    # Another judge re-scores the saved generations without regenerating.
    run_judges(run_dir, ["refusal-paper"], progress=False)
    rescored = run_metrics(run_dir)
    assert (run_dir / "generations.jsonl").read_bytes() == generations
    assert {m["judge"] for m in rescored["metrics"]} == {"refusal", "refusal-paper"}
    assert rescored["agreement"]


def test_text_only_mode_and_missing_original_images(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    run_dir = run_generation(
        _config(vlguard_data_dir, tmp_path / "none", image_mode="none", limit=3), progress=False
    )
    meta = [json.loads(line)["meta"] for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    blank_dir = run_generation(_config(vlguard_data_dir, tmp_path / "blank", limit=3), progress=False)
    blank_meta = [
        json.loads(line)["meta"] for line in (blank_dir / "generations.jsonl").read_text().splitlines()
    ]
    # The 16 image tokens (32 px / 8 px patches) come only with an image.
    assert all(b["prompt_tokens"] - m["prompt_tokens"] >= 16 for b, m in zip(blank_meta, meta, strict=True))
    # The reference annotations come without images: 'original' must refuse before loading a model.
    with pytest.raises(ImageLoadError, match="missing"):
        run_generation(_config(vlguard_data_dir, tmp_path / "orig", image_mode="original"), progress=False)


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_killed_run_resumes_with_every_sample_once_and_the_same_metrics(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path, one_torch_thread: None
) -> None:
    limit = 30
    run_dir = tmp_path / "killed"
    args = [
        "eval",
        "--model", "tiny",
        "--data", str(vlguard_data_dir),
        "--image-mode", "blank",
        "--judge", "refusal",
        "--judge", "refusal-paper",
        "--limit", str(limit),
        "--batch-size", "2",
        "--max-new-tokens", "12",
        "--no-progress",
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    # One thread in the subprocesses and here: same rounding, and no thread contention on busy machines.
    env = {**os.environ, "VLGUARD_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    generations = run_dir / "generations.jsonl"
    deadline = time.monotonic() + 120
    while _line_count(generations) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed: {stderr.decode()[-2000:]}"
    )
    done_before = _line_count(generations)
    assert 0 < done_before < limit
    assert not (run_dir / "metrics.json").exists()
    with open(generations, "ab") as f:  # and a torn line, as a kill in the middle of a write leaves
        f.write(b'{"sample_id": "torn')

    resumed = subprocess.run([*CLI, *args], env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]

    ids = [json.loads(line)["id"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(ids) == limit
    for path in (
        generations,
        run_dir / "judgments" / "refusal.jsonl",
        run_dir / "judgments" / "refusal-paper.jsonl",
    ):
        got = [json.loads(line)["sample_id"] for line in path.read_text().splitlines()]
        assert Counter(got) == Counter(ids), path  # every sample exactly once

    # An uninterrupted run of the same settings in another folder gives the same metrics.
    clean_dir = tmp_path / "clean"
    clean = run_eval(
        _config(
            vlguard_data_dir,
            clean_dir,
            judges=("refusal", "refusal-paper"),
            limit=limit,
            batch_size=2,
            max_new_tokens=12,
        ),
        progress=False,
    )
    assert json.loads((run_dir / "metrics.json").read_text()) == clean

    def by_id(path: Path) -> dict[str, dict[str, object]]:
        return {r["sample_id"]: r for r in map(json.loads, path.read_text().splitlines())}

    assert by_id(generations) == by_id(clean_dir / "generations.jsonl")


def test_judges_get_no_image_path_outside_the_image_root(tmp_path: Path) -> None:
    from vlguard.evaluate import _image_file

    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")

    def sample(image: str) -> Sample:
        return Sample("s", "b", "unsafe", "p", image, None, None, None, should_refuse=True)

    assert _image_file(root, sample("a.png")) == str(root / "a.png")
    assert _image_file(root, sample("../secret.png")) is None
    assert _image_file(root, sample(str(tmp_path / "secret.png"))) is None
