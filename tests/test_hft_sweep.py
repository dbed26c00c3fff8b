"""`vlguard hft` end to end on the tiny model: cells, summary, resume, mismatch, shards, leaks, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hft_fixtures import write_advbench, write_beavertails, write_heldout_prompts, write_sst2
from vlguard.errors import ConfigError, DataValidationError, RunMismatchError
from vlguard.hft.config import HFTConfig, load_hft_config
from vlguard.hft.summary import read_summary
from vlguard.hft.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hft-data")
    write_sst2(folder / "sst2")
    write_advbench(folder / "advbench" / "harmful_behaviors.csv")
    write_beavertails(folder / "beavertails.jsonl")
    write_heldout_prompts(folder / "heldout.jsonl")
    return folder


def _config(data: Path, out: Path, *overrides: str) -> HFTConfig:
    base = [
        "model.name_or_path=tiny",
        f"output_dir={out}",
        "task.name=sst2",
        f"task.data={data / 'sst2'}",
        "task.eval_limit=4",
        "task.max_new_tokens=2",
        "harmful.source=advbench",
        f"harmful.data={data / 'advbench'}",
        "safety.source=beavertails",
        f"safety.data={data / 'beavertails.jsonl'}",
        "attack.n=8",
        "attack.harmful_ratios=[0.0, 0.25]",
        "defences=[sft, vlguard-aux]",
        "defence.aux_n_safety=4",
        "defence.aux_batch_size=2",
        "alignment.enabled=true",
        "alignment.n_safety=4",
        "alignment.n_task=4",
        "alignment.train.method=full",
        "alignment.train.max_steps=1",
        "alignment.train.global_batch_size=4",
        "alignment.train.per_device_batch_size=4",
        "alignment.train.progress=false",
        "finetune.method=lora",
        "finetune.lora.r=4",
        "finetune.max_steps=2",
        "finetune.save_steps=1",
        "finetune.global_batch_size=4",
        "finetune.per_device_batch_size=4",
        "finetune.progress=false",
        "harmful_score.bench=beavertails",
        f"harmful_score.data={data / 'heldout.jsonl'}",
        "harmful_score.judge=refusal",
        "harmful_score.second_judges=[refusal-paper]",
        "harmful_score.max_new_tokens=4",
        "eval.batch_size=8",
    ]
    return load_hft_config(None, [*base, *overrides])


@pytest.fixture(scope="module")
def finished(data: Path, tmp_path_factory: pytest.TempPathFactory, _tiny_cache_root: Path) -> Path:
    """One finished sweep (built once; tests that change it work on a copy)."""
    # A relative output folder (as users give it): the copies the tests make are sweeps of their own.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("VLGUARD_CACHE", str(_tiny_cache_root))
    root = tmp_path_factory.mktemp("hft-sweep")
    monkeypatch.chdir(root)
    try:
        result = run_sweep(_config(data, Path("out")), progress=False)
    finally:
        monkeypatch.undo()
    assert result.summary is not None and result.missing == ()
    return root / "out"


def _copy(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Path:
    shutil.copytree(finished, tmp_path / "out", **kwargs)
    monkeypatch.chdir(tmp_path)
    return Path("out")


def _metric(run_dir: Path, metric: str) -> dict[str, Any]:
    rows = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return next(r for r in rows if r["metric"] == metric and r["group"] == "all")


def _metric_of(run_dir: Path, metric: str, judge: str) -> dict[str, Any]:
    rows = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return next(r for r in rows if r["metric"] == metric and r["group"] == "all" and r["judge"] == judge)


def test_summary_rows_come_from_the_cells_run_folders(finished: Path) -> None:
    from vlguard.train.config import load_config

    rows = read_summary(finished / "summary.json")
    assert [(r["harmful_ratio"], r["defence"]) for r in rows] == [
        (0.0, "sft"), (0.0, "vlguard-aux"), (0.25, "sft"), (0.25, "vlguard-aux"),
    ]  # fmt: skip
    by_cell = {(r["harmful_ratio"], r["defence"]): r for r in rows}
    assert by_cell[(0.25, "sft")]["counts"] == {"task": 6, "harmful": 2, "safety": 0}
    assert by_cell[(0.25, "vlguard-aux")]["counts"] == {"task": 6, "harmful": 2, "safety": 0, "aux_safety": 4}
    for row in rows:
        cell = finished / "cells" / f"p{row['harmful_ratio']:g}-{row['defence']}"
        hs, fa = _metric_of(cell / "hs", "attack_success_rate", "refusal"), _metric(cell / "fa", "accuracy")
        assert row["harmful_score"] == hs["value"] and row["harmful_score_ci"] == [
            hs["ci_low"],
            hs["ci_high"],
        ]
        assert row["finetune_accuracy"] == fa["value"] and row["finetune_accuracy_n"] == fa["n"] == 4
        assert row["harmful_score_n"] == 6 and 0.0 <= row["harmful_score"] <= 1.0
        # the refusal judge is a stand-in for a moderation judge, and says so
        assert row["harmful_score_stand_in"] is True and "stand-in" in row["harmful_score_note"]
        assert row["hs_prompts_seen_in_training"] == 0
        # the second judge scored the same answers; its rate and the agreement are in the row too
        assert row["harmful_score_by_judge"]["refusal"]["value"] == row["harmful_score"]
        paper = _metric_of(cell / "hs", "attack_success_rate", "refusal-paper")
        assert row["harmful_score_by_judge"]["refusal-paper"]["value"] == paper["value"]
        assert row["harmful_score_agreement"][0]["judges"] == ["refusal", "refusal-paper"]
        # each cell is a normal `vlguard train` run folder that reloads as a config
        train_config = load_config(cell / "train" / "train_config.yaml")
        assert train_config.data.instructions == str(cell.relative_to(finished.parent) / "train.jsonl")
        assert train_config.model.name_or_path == "out/alignment/train/model"
        aux = row["defence"] == "vlguard-aux"
        assert (train_config.safety_loss.data is not None) == aux
        provenance = json.loads((cell / "train" / "model" / "vlguard_train.json").read_text())
        assert provenance["counts"] == {k: v for k, v in row["counts"].items() if v and k != "aux_safety"}
        assert (provenance["safety_loss"] is not None) == aux
    lines = [
        json.loads(line)
        for line in (finished / "cells" / "p0.25-sft" / "train.jsonl").read_text().splitlines()
    ]
    assert sorted(line["source"] for line in lines) == ["harmful"] * 2 + ["task"] * 6
    assert (finished / "reference" / "hs" / "metrics.json").is_file()


def test_rerun_resumes_without_training_again(
    finished: Path, data: Path, monkeypatch: pytest.MonkeyPatch, tiny_cache: Path
) -> None:
    import vlguard.train.trainer as trainer

    monkeypatch.chdir(finished.parent)

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    before = (finished / "summary.json").read_text()
    result = run_sweep(_config(data, Path("out")), progress=False)
    assert result.summary is not None and (finished / "summary.json").read_text() == before


def test_a_killed_cell_resumes_through_the_trainer_and_eval(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy(finished, tmp_path, monkeypatch)
    cell = out / "cells" / "p0.25-vlguard-aux"
    # killed after the first checkpoint: no final model, no checkpoint-2, no evaluation yet
    shutil.rmtree(cell / "train" / "model")
    shutil.rmtree(cell / "train" / "checkpoints" / "checkpoint-2")
    for run in ("hs", "fa"):
        shutil.rmtree(cell / run)
    # and one evaluation was killed halfway through its generations (a torn last line)
    other = out / "cells" / "p0-sft" / "hs"
    lines = (other / "generations.jsonl").read_text().splitlines(keepends=True)
    (other / "generations.jsonl").write_text("".join(lines[:3]) + lines[3][:10])
    (other / "metrics.json").unlink()
    result = run_sweep(_config(data, out), progress=False)
    assert result.summary is not None
    assert result.cells_run == ("p0-sft", "p0-vlguard-aux", "p0.25-sft", "p0.25-vlguard-aux")
    provenance = json.loads((cell / "train" / "model" / "vlguard_train.json").read_text())
    assert provenance["global_step"] == 2
    assert len((other / "generations.jsonl").read_text().splitlines()) == 6
    # the same weights and numbers as the uninterrupted sweep (training and greedy decoding are
    # deterministic); only the timing and the Trainer's mean loss of the resumed session differ
    import torch
    from safetensors.torch import load_file

    adapter = "train/model/adapter_model.safetensors"
    a, b = load_file(str(finished / "cells" / cell.name / adapter)), load_file(str(cell / adapter))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = ("train_seconds", "train_loss")
    assert [{k: v for k, v in r.items() if k not in timing} for r in read_summary(out / "summary.json")] == [
        {k: v for k, v in r.items() if k not in timing} for r in read_summary(finished / "summary.json")
    ]


def test_a_rerun_with_other_settings_stops_before_mixing_results(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy(finished, tmp_path, monkeypatch)
    before = (out / "hft_config.yaml").read_text()
    with pytest.raises(
        RunMismatchError, match=r"cells/p0-sft was made with other settings \(differing: finetune\.lr\)"
    ):
        run_sweep(_config(data, out, "finetune.lr=0.5"), progress=False)
    assert (out / "hft_config.yaml").read_text() == before  # the folder's config still says what made it
    # a setting that changes nothing in the results (the progress bar) is not a mismatch
    assert run_sweep(_config(data, out, "finetune.progress=true"), progress=False).summary is not None


def test_shards_share_the_sweep(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy(finished, tmp_path, monkeypatch, ignore=shutil.ignore_patterns("cells", "summary.json"))
    first = run_sweep(_config(data, out), shard=(0, 2), progress=False)
    assert first.cells_run == ("p0-sft", "p0.25-sft") and first.summary is None
    assert first.missing == ("p0-vlguard-aux", "p0.25-vlguard-aux")
    assert not (out / "summary.json").exists()  # never a partial summary
    second = run_sweep(_config(data, out), shard=(1, 2), progress=False)
    assert second.cells_run == ("p0-vlguard-aux", "p0.25-vlguard-aux") and second.summary is not None
    assert len(read_summary(out / "summary.json")) == 4


def test_mistakes_stop_before_any_training(data: Path, tmp_path: Path, tiny_cache: Path) -> None:
    out = tmp_path / "out"
    # the fixture's AdvBench file has 12 rows: 30 samples at 50 % ask for 15
    with pytest.raises(
        ConfigError,
        match=r"15 harmful pairs requested but the harmful pool \(.*harmful_behaviors.csv\) has only 12",
    ):
        run_sweep(_config(data, out, "attack.n=30", "attack.harmful_ratios=[0.0, 0.5]"), progress=False)
    assert not (out / "alignment").exists() and not (out / "cells").exists()
    # a task file with the wrong columns names the file and the field
    bad_task = tmp_path / "bad-sst2"
    bad_task.mkdir()
    (bad_task / "train.tsv").write_text("text\tlabel\na fine film\t1\n", encoding="utf-8")
    (bad_task / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"train.tsv.*'sentence'"):
        run_sweep(_config(data, out, f"task.data={bad_task}"), progress=False)
    assert not (out / "alignment").exists()
    leaky = tmp_path / "leaky.jsonl"
    write_beavertails(leaky, n_unsafe=3, n_safe=0)  # the same prompts as the training pool's unsafe rows
    with pytest.raises(
        ConfigError, match="Harmful Score prompt\\(s\\) of 'beavertails' occur in the sweep's training data"
    ):
        run_sweep(
            _config(
                data,
                out,
                f"harmful_score.data={leaky}",
                "harmful.source=beavertails",
                f"harmful.data={data / 'beavertails.jsonl'}",
                "attack.harmful_ratios=[0.0, 1.0]",
                "eval.seen_prompts=error",
            ),
            progress=False,
        )
    assert not (out / "alignment").exists()


def test_report_of_seeds(finished: Path, tmp_path: Path) -> None:
    from vlguard.report.hft import build_hft_report, write_hft_report

    second = tmp_path / "seed1"
    shutil.copytree(finished, second)
    rows = read_summary(second / "summary.json")
    for row in rows:
        row["seed"] = 1
        row["harmful_score"] = min(1.0, row["harmful_score"] + 0.5)
    (second / "summary.json").write_text(json.dumps(rows))
    report = build_hft_report([finished, second])
    first_rows = read_summary(finished / "summary.json")
    cell = next(r for r in report.rows if r.harmful_ratio == 0.25 and r.defence == "sft")
    original = next(r for r in first_rows if r["harmful_ratio"] == 0.25 and r["defence"] == "sft")
    assert cell.harmful_score.values == (original["harmful_score"], min(1.0, original["harmful_score"] + 0.5))
    assert cell.seeds == (0, 1) and report.rows[0].defence == "start model"
    files = write_hft_report([finished, second], tmp_path / "report")
    html = files[0].read_text()
    assert 'http-equiv="Content-Security-Policy"' in html and "<script" not in html
    assert "stand-in" in html and 'data-chart="hs-vs-p"' in html and 'data-chart="fa-vs-p"' in html
    assert f'data-value="{json.dumps(cell.harmful_score.mean)}"' in html
    assert (tmp_path / "report" / "charts" / "hs-vs-p.png").read_bytes()[:4] == b"\x89PNG"


def test_parallel_cells_run_in_worker_processes(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy(finished, tmp_path, monkeypatch, ignore=shutil.ignore_patterns("cells", "summary.json"))
    result = run_sweep(_config(data, out, "compute.parallel_cells=2"), progress=False)
    assert result.summary is not None and result.missing == ()
    logs = sorted((out / "workers").glob("shard-*.log"))
    assert [log.name for log in logs] == ["shard-0.log", "shard-1.log"]
    assert "cell p0-sft" in logs[0].read_text() and "cell p0-vlguard-aux" in logs[1].read_text()
    # the workers ran the same cells as one process would, to the same numbers
    timing = ("train_seconds", "train_loss")
    assert [{k: v for k, v in r.items() if k not in timing} for r in read_summary(out / "summary.json")] == [
        {k: v for k, v in r.items() if k not in timing} for r in read_summary(finished / "summary.json")
    ]


def test_vlm_cells_train_on_vlguard_refusals_with_their_images(
    data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VLM sweep: the safety pairs are VLGuard's refusals with their images (the bundled sample data)."""
    from vlguard.train.config import load_config

    monkeypatch.chdir(tmp_path)
    config = _config(
        data, Path("vlm"), "alignment.enabled=false", "eval.reference=false", "safety.source=vlguard",
        "safety.data=sample", "safety.with_images=true", "attack.harmful_ratios=[0.25]",
        "defences=[vlguard-mix, vlguard-aux]", "defence.n_safety=2", "defence.aux_n_safety=3",
    )  # fmt: skip
    assert run_sweep(config, progress=False).summary is not None
    mix = Path("vlm/cells/p0.25-vlguard-mix")
    rows = [json.loads(line) for line in (mix / "train.jsonl").read_text().splitlines()]
    safety = [r for r in rows if r["source"] == "safety"]
    assert len(safety) == 2 and all(
        r["images"] and r["messages"][0]["content"][0] == {"type": "image"} for r in safety
    )
    assert all(not r["images"] for r in rows if r["source"] != "safety")  # task and harmful pairs: text only
    train_config = load_config(mix / "train" / "train_config.yaml")
    assert train_config.data.image_mode == "original" and train_config.data.instructions_image_root
    aux = load_config(Path("vlm/cells/p0.25-vlguard-aux/train/train_config.yaml")).safety_loss
    assert aux.data is not None and aux.image_root == train_config.data.instructions_image_root
    provenance = json.loads(Path("vlm/cells/p0.25-vlguard-aux/train/model/vlguard_train.json").read_text())
    assert provenance["safety_loss"]["counts"] == {"safety_loss": 3}


def test_the_sweep_runs_data_parallel_under_accelerate(data: Path, tmp_path: Path, tiny_cache: Path) -> None:
    """Two gloo processes (CPU): every training run is data-parallel, generation is sharded, rank 0 writes."""
    import os
    import subprocess
    import sys

    from vlguard.hft.config import dump_hft_config

    repo = Path(__file__).resolve().parents[1]
    config = _config(
        data, tmp_path / "ddp", "attack.harmful_ratios=[0.25]", "alignment.train.per_device_batch_size=2",
        "finetune.per_device_batch_size=2",
    )  # fmt: skip
    config_file = tmp_path / "hft.yaml"
    config_file.write_text(dump_hft_config(config))
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--config_file", str(repo / "configs/accelerate/ddp-cpu-2proc.yaml"),
        "-m", "vlguard.cli.main", "hft", str(config_file), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "ddp"
    assert len(read_summary(out / "summary.json")) == 2
    for stage in ("alignment/train", "cells/p0.25-sft/train", "cells/p0.25-vlguard-aux/train"):
        provenance = json.loads((out / stage / "model" / "vlguard_train.json").read_text())
        fingerprints = provenance["rank_fingerprints"]
        assert provenance["world_size"] == 2 and len(set(fingerprints)) == 1, stage
    hs = out / "cells" / "p0.25-sft" / "hs"
    assert len((hs / "generations.jsonl").read_text().splitlines()) == 6
    assert not list(hs.glob("generations.rank*.jsonl"))  # the shards were merged and removed
