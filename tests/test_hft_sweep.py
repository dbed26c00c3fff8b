"""`vlguard hft` end to end on the tiny model: cells, summary, resume, mismatch, shards, leaks, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hft_fixtures import write_beavertails, write_hft_data
from vlguard.errors import ConfigError, DataValidationError, RunMismatchError
from vlguard.hft.config import HFTConfig, load_hft_config
from vlguard.hft.summary import read_summary
from vlguard.hft.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hft_data(tmp_path_factory.mktemp("hft-data"))


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


def test_a_finished_sweep_resumes_through_a_symlink_another_path_or_after_a_move(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stages record the aligned start model relative to the sweep folder, so another spelling of
    the folder's path is the same sweep: nothing is trained or evaluated again, the summary is the same."""
    import vlguard.hft.sweep as sweep
    import vlguard.train.trainer as trainer

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished stage was redone")

    monkeypatch.setattr(trainer, "train", refuse)
    monkeypatch.setattr(sweep, "run_generation", refuse)
    _copy(finished, tmp_path, monkeypatch)  # made as the relative path "out"
    summary = (finished / "summary.json").read_text()
    for spelling in (tmp_path / "out", Path("link"), tmp_path / "moved" / "sweep"):
        if spelling.name == "link":
            spelling.symlink_to(tmp_path / "out", target_is_directory=True)
        if spelling.name == "sweep":
            spelling.parent.mkdir()
            shutil.move(tmp_path / "out", spelling)
        result = run_sweep(_config(data, spelling), progress=False)
        assert result.summary is not None and result.missing == (), spelling
        assert (spelling / "summary.json").read_text() == summary, spelling
    moved = tmp_path / "moved" / "sweep"
    assert json.loads((moved / "cells" / "p0-sft" / "stage.json").read_text())["start_model"] == (
        "alignment/train/model"
    )
    # A folder of an older version recorded the path as the sweep was given: still the same sweep.
    for settings_file in moved.glob("cells/*/stage.json"):
        recorded = json.loads(settings_file.read_text())
        settings_file.write_text(json.dumps({**recorded, "start_model": "runs/old/alignment/train/model"}))
    assert run_sweep(_config(data, moved), progress=False).summary is not None
    # ... but another model is another start model.
    settings_file = moved / "cells" / "p0-sft" / "stage.json"
    recorded = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**recorded, "start_model": "runs/old/alignment/merged"}))
    with pytest.raises(RunMismatchError, match=r"differing: start_model"):
        run_sweep(_config(data, moved), progress=False)


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


def _start_hft(config: HFTConfig, config_file: Path, *args: str) -> Any:
    """``vlguard hft CONFIG`` in a process of its own (as a user starts it), output discarded."""
    import os
    import subprocess
    import sys

    from vlguard.hft.config import dump_hft_config

    config_file.write_text(dump_hft_config(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "vlguard.cli.main", "hft", str(config_file), "--no-progress", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_lock(folder: Path, pid: int, process: Any) -> None:
    """Until ``pid`` holds the lock of ``folder`` (its process must keep running meanwhile)."""
    import time

    from vlguard.runs import LOCK_FILE

    deadline = time.monotonic() + 300
    lock = folder / LOCK_FILE
    while not (lock.is_file() and f"pid {pid}," in lock.read_text()):
        assert process.poll() is None, "the first process stopped"
        assert time.monotonic() < deadline, f"{folder} was never locked by pid {pid}"
        time.sleep(0.2)


def test_a_second_sweep_in_the_same_folder_stops_at_once(
    data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two concurrent `vlguard hft` in one folder: the second stops at once, naming the first."""
    import re

    import vlguard.hft.sweep as sweep
    from vlguard.runs import RunLockedError

    out = tmp_path / "out"
    # a long alignment keeps the first one busy
    first = _start_hft(_config(data, out, "alignment.train.max_steps=100000"), tmp_path / "hft.yaml")
    try:
        _wait_for_lock(out, first.pid, first)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the second sweep went on although the folder is in use")

        monkeypatch.setattr(sweep, "load_pools", refuse)
        with pytest.raises(
            RunLockedError,
            match=rf"{re.escape(str(out))} is in use by another vlguard process \(pid {first.pid}, .*"
            "use another output_dir",
        ):
            run_sweep(_config(data, out, "alignment.train.max_steps=100000"), progress=False)
        assert first.poll() is None, "the first sweep goes on"
    finally:
        first.kill()
        first.wait()


def test_a_shard_aligns_when_no_other_shard_does(
    data: Path,
    tmp_path: Path,
    tiny_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--cells 1/2` without shard 0: the first shard to get there aligns (under the stage's lock); while
    another process holds that lock it waits, and takes over when the holder stops without finishing."""
    import subprocess
    import sys
    import textwrap
    import time

    import vlguard.hft.sweep as sweep

    out = tmp_path / "out"
    monkeypatch.setattr(sweep, "ALIGNMENT_POLL_SECONDS", 0.5)

    class Clock:
        """The sweep's clock: a wait of more than a minute fails the test instead of lasting forever."""

        polls = 0

        def sleep(self, seconds: float) -> None:
            self.polls += 1
            assert self.polls <= 120, "still waiting for the alignment stage after a minute"
            time.sleep(seconds)

    monkeypatch.setattr(sweep, "time", Clock())
    # Another process holds the alignment stage for a few seconds, then dies without aligning.
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from vlguard.runs import lock_run_folder
            with lock_run_folder({str(out / "alignment")!r}):
                print("locked", flush=True)
                time.sleep(4)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        config = _config(data, out, "attack.harmful_ratios=[0.0]")
        with caplog.at_level("INFO", logger="vlguard.hft.sweep"):
            result = run_sweep(config, shard=(1, 2), progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert "another process runs it" in caplog.text and f"pid {holder.pid}" in caplog.text
    assert (out / "alignment" / "train" / "model" / "COMPLETE").is_file()
    assert result.cells_run == ("p0-vlguard-aux",) and result.missing == ("p0-sft",)
    assert (out / "cells" / "p0-vlguard-aux" / "hs" / "metrics.json").is_file()


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


def _variant(
    finished: Path, folder: Path, config_changes: dict[str, Any], row_changes: dict[str, Any]
) -> Path:
    """A copy of the finished sweep as if made with other settings (its config and summary rows changed)."""
    import yaml

    shutil.copytree(finished, folder)
    config = yaml.safe_load((folder / "hft_config.yaml").read_text())
    for dotted, value in config_changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    (folder / "hft_config.yaml").write_text(yaml.safe_dump(config))
    rows = [{**row, **row_changes} for row in read_summary(folder / "summary.json")]
    for row in rows:
        row["harmful_score"] = round(1 - row["harmful_score"], 6)
    (folder / "summary.json").write_text(json.dumps(rows))
    return folder


def test_report_pools_only_sweeps_that_differ_by_their_seed(finished: Path, tmp_path: Path) -> None:
    from vlguard.report.hft import build_hft_report, hft_table_rows, write_hft_report

    seed1 = _variant(finished, tmp_path / "seed1", {"seed": 1, "compute.threads": 2}, {"seed": 1})
    other = _variant(
        finished, tmp_path / "other", {"attack.n": 4, "finetune.lr": 0.5},
        {"n": 4, "counts": {"task": 3, "harmful": 1, "safety": 0}},
    )  # fmt: skip
    report = build_hft_report([finished, seed1, other])
    assert [(x.folders, x.seeds) for x in report.experiments] == [
        ((str(finished), str(seed1)), (0, 1)), ((str(other),), (0,)),
    ]  # fmt: skip
    pooled, apart = report.experiments
    assert pooled.label == "attack.n=8, finetune.lr=0.0002" and apart.label == "attack.n=4, finetune.lr=0.5"
    first = {(r["harmful_ratio"], r["defence"]): r for r in read_summary(finished / "summary.json")}
    by_experiment = {(r.experiment, r.harmful_ratio, r.defence): r for r in report.rows}
    for (ratio, defence), row in first.items():
        mine = by_experiment[(pooled.label, ratio, defence)]
        assert mine.harmful_score.values == (row["harmful_score"], round(1 - row["harmful_score"], 6))
        assert mine.counts == row["counts"]
        theirs = by_experiment[(apart.label, ratio, defence)]
        assert theirs.harmful_score.values == (round(1 - row["harmful_score"], 6),)
        assert theirs.harmful_score.ci is not None  # one seed: shown with its interval
        assert theirs.counts == {"task": 3, "harmful": 1, "safety": 0}
    assert [r.experiment for r in report.rows if r.defence == "start model"] == [pooled.label, apart.label]
    exported = hft_table_rows(report)
    assert {row["experiment"] for row in exported} == {pooled.label, apart.label}
    assert {row["n_task"] for row in exported if row["experiment"] == apart.label and "n_task" in row} == {3}
    files = write_hft_report([finished, seed1, other], tmp_path / "report")
    html, markdown = files[0].read_text(), files[1].read_text()
    assert "Mean over 3 seeds" not in html + markdown and "Sweeps shown apart" in markdown
    assert "<th>Sweep</th>" in html and f'data-experiment="{apart.label}"' in html
    # One sweep with another seed's settings pools as before.
    assert [len(x.folders) for x in build_hft_report([finished, seed1]).experiments] == [2]


def test_report_labels_name_the_sweeps(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlguard.cli.main import main

    other = _variant(finished, tmp_path / "other", {"finetune.lr": 0.5}, {})
    out = tmp_path / "tables"
    argv = [
        "report",
        str(finished),
        str(other),
        "--label",
        "slow lr",
        "--label",
        "fast lr",
        "--format",
        "json",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    exported = json.loads((out / "hft_report.json").read_text())
    assert exported["title"] == "Harmful fine-tuning: sst2, slow lr vs fast lr"
    assert [row["experiment"] for row in exported["rows"] if row["defence"] == "start model"] == [
        "slow lr",
        "fast lr",
    ]
    # one sweep, labelled
    assert (
        main(["report", str(finished), "--label", "mine", "--format", "json", "--out", str(tmp_path / "one")])
        == 0
    )
    rows = json.loads((tmp_path / "one" / "hft_report.json").read_text())["rows"]
    assert {row["experiment"] for row in rows} == {"mine"}
    capsys.readouterr()
    assert main(["report", str(finished), str(other), "--label", "a", "--out", str(tmp_path / "x")]) == 2
    assert "1 label(s) given for 2 sweep folder(s)" in capsys.readouterr().err


def _process_state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process from /proc, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def _workers_of(parent: int) -> list[int]:
    """The worker processes (``--cells i/K``) that ``parent`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        state = _process_state(int(entry.name)) if entry.name.isdigit() else None
        if state is not None and state[0] == parent:
            try:
                if b"--cells" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    state = _process_state(pid)
    return state is not None and state[1] not in ("Z", "X")  # a zombie has finished


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the workers through /proc (Linux)")
def test_parallel_cells_run_in_worker_processes(
    finished: Path, data: Path, tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import time

    out = _copy(finished, tmp_path, monkeypatch, ignore=shutil.ignore_patterns("cells", "summary.json"))
    config = _config(data, out, "compute.parallel_cells=2")
    # kill -9 of the sweep while its workers train: they die with it.
    parent = _start_hft(config, tmp_path / "hft.yaml")
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        logs = [out / "workers" / f"shard-{i}.log" for i in range(2)]
        while not all(log.is_file() and "cell p0-" in log.read_text(errors="replace") for log in logs):
            assert parent.poll() is None, "the sweep stopped"
            assert time.monotonic() < deadline, "the workers never started a cell"
            time.sleep(0.2)
        workers = _workers_of(parent.pid)
        assert len(workers) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the sweep that started them"
    finally:
        parent.kill()
        parent.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    # The rerun resumes every cell where the killed workers left it.
    result = run_sweep(config, progress=False)
    assert result.summary is not None and result.missing == ()
    logs = sorted((out / "workers").glob("shard-*.log"))
    assert [log.name for log in logs] == ["shard-0.log", "shard-1.log"]
    assert all(b"\x00" not in log.read_bytes() for log in logs), "a log has a hole of NUL bytes"
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
