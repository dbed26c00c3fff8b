"""`vlguard data stats|validate|convert|mix`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vlguard.cli import main as cli_main
from vlguard.data import load_vlguard
from vlguard.data.export import to_llava, to_messages
from vlguard.data.sample import sample_dataset_dir

Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run `vlguard ...` in-process with only the data commands; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", {"data": "vlguard.cli.data"})
    monkeypatch.setenv("COLUMNS", "120")

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_console_script_stats_json_on_real_test(vlguard_data_dir: Path) -> None:
    script = Path(sys.executable).with_name("vlguard")
    result = subprocess.run(
        [str(script), "data", "stats", str(vlguard_data_dir), "--split", "test", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["samples_by_subset"] == {"unsafe": 442, "safe_unsafe": 558, "safe_safe": 558}
    assert summary["splits"]["test"]["unsafe_by_subcategory"]["sexually explicit"] == 111


def test_stats_table_on_real_data(run: Runner, vlguard_data_dir: Path) -> None:
    code, out, _ = run("data", "stats", str(vlguard_data_dir), "--split", "test")
    assert code == 0
    for label, count in [
        ("unsafe", 442),
        ("safe_unsafe", 558),
        ("safe_safe", 558),
        ("personal data", 69),
        ("race", 40),
    ]:
        assert any(label in line and str(count) in line for line in out.splitlines()), (label, out)
    code, out, _ = run("data", "stats", str(vlguard_data_dir), "--json")
    summary = json.loads(out)
    assert set(summary["splits"]) == {"train", "test"}
    assert summary["splits"]["train"]["samples"] == 2977
    assert summary["samples_by_subset"] == {
        "unsafe": 442 + 1023,
        "safe_unsafe": 558 + 977,
        "safe_safe": 558 + 977,
    }


def _sample_records(split: str) -> list[dict[str, Any]]:
    """The bundled sample's raw records of one split (the expected counts are derived from them)."""
    records: list[dict[str, Any]] = json.loads((sample_dataset_dir() / f"{split}.json").read_text())
    return records


def test_validate_ok_and_with_images(run: Runner) -> None:
    code, out, _ = run("data", "validate", str(sample_dataset_dir()), "--images")
    assert code == 0
    # Counted from the file itself: one sample per instruction-response pair.
    records = _sample_records("train")
    n_samples = sum(len(record["instr-resp"]) for record in records)
    assert f"train: OK: {len(records)} records and images, {n_samples} samples" in out and "test: OK" in out


def test_validate_lists_problems(run: Runner, tmp_path: Path) -> None:
    records = json.loads((sample_dataset_dir() / "test.json").read_text())
    records[1]["image"] = "../../etc/passwd"
    del records[3]["safe"]
    (tmp_path / "test.json").write_text(json.dumps(records))
    code, out, _ = run("data", "validate", str(tmp_path))
    assert code == 1
    assert "2 problem(s)" in out
    assert f"record {records[1]['id']}, field 'image'" in out and "escapes the image root" in out
    assert f"record {records[3]['id']}, field 'safe': missing field" in out


def test_validate_reports_missing_and_broken_images(run: Runner, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(sample_dataset_dir(), tmp_path / "data")
    records = json.loads((tmp_path / "data" / "test.json").read_text())
    (tmp_path / "data" / "test" / records[0]["image"]).unlink()
    (tmp_path / "data" / "test" / records[1]["image"]).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, _ = run("data", "validate", str(tmp_path / "data"), "--split", "test", "--images")
    assert code == 1
    assert f"record {records[0]['id']}, field 'image'" in out and "image not found" in out
    assert f"record {records[1]['id']}, field 'image'" in out


def test_user_errors_exit_2_without_traceback(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "test.json").write_bytes(b"\xff\xfe[]")
    code, _, err = run("data", "stats", str(tmp_path), "--split", "test")
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err
    code, _, err = run("data", "stats", str(tmp_path / "nowhere"), "--split", "test")
    assert code == 2 and "no such file or folder" in err


def test_stats_skip_invalid(run: Runner, tmp_path: Path) -> None:
    records = json.loads((sample_dataset_dir() / "test.json").read_text())
    records[0]["instr-resp"] = []
    (tmp_path / "test.json").write_text(json.dumps(records))
    code, _, err = run("data", "stats", str(tmp_path), "--json")
    assert code == 2 and "empty list" in err
    code, out, _ = run("data", "stats", str(tmp_path), "--json", "--skip-invalid")
    assert code == 0
    summary = json.loads(out)
    stats = summary["splits"]["test"]
    assert stats["records"] == len(records) - 1 and stats["skipped_problems"] == 1
    assert len(summary["skipped"]["test"]) == 1 and records[0]["id"] in summary["skipped"]["test"][0]
    code, out, _ = run("data", "stats", str(tmp_path), "--skip-invalid")
    assert code == 0 and "test: skipped 1 invalid record(s)" in out and "empty list" in out


def test_stats_defaults_to_the_bundled_sample(run: Runner) -> None:
    code, out, _ = run("data", "stats", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["path"] == str(sample_dataset_dir())
    # Both splits: a harmful image gives one unsafe sample, a safe image one safe_safe + one safe_unsafe.
    records = _sample_records("train") + _sample_records("test")
    n_safe = sum(record["safe"] for record in records)
    assert summary["samples_by_subset"] == {
        "unsafe": len(records) - n_safe,
        "safe_unsafe": n_safe,
        "safe_safe": n_safe,
    }


@pytest.mark.parametrize(("fmt", "suffix"), [("llava", ".json"), ("messages", ".jsonl")])
def test_convert(run: Runner, tmp_path: Path, fmt: str, suffix: str) -> None:
    out_file = tmp_path / f"out{suffix}"
    code, out, _ = run(
        "data", "convert", str(sample_dataset_dir()), "--format", fmt, "--out", str(out_file), "--seed", "3"
    )
    assert code == 0 and f"wrote {len(_sample_records('train'))} " in out
    text = out_file.read_text()
    rows = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    records = load_vlguard(sample_dataset_dir(), "train").records
    assert rows == (to_llava(records, 3) if fmt == "llava" else to_messages(records, 3))


def test_mix_posthoc_and_mixed(run: Runner, tmp_path: Path) -> None:
    instructions = tmp_path / "llava.json"
    rows = [
        {
            "id": f"i{k}",
            "image": f"coco/{k}.jpg",
            "conversations": [{"from": "human", "value": f"<image>\nQ{k}"}, {"from": "gpt", "value": "A"}],
        }
        for k in range(40)
    ]
    instructions.write_text(json.dumps(rows))
    out_file = tmp_path / "mix.jsonl"
    argv = [
        "data",
        "mix",
        "--safety",
        str(sample_dataset_dir()),
        "--instructions",
        str(instructions),
        "--out",
        str(out_file),
    ]
    code, out, _ = run(*argv, "--recipe", "posthoc", "--n", "12", "--seed", "1")
    n_safety = len(_sample_records("train"))  # one conversation per train record
    assert code == 0 and f"safety: {n_safety}\n" in out and "instructions: 12" in out
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(lines) == n_safety + 12 and sum(r["source"] == "instructions" for r in lines) == 12
    code, out, _ = run(*argv, "--recipe", "mixed", "--seed", "1")
    assert code == 0 and "instructions: 40" in out
    code, _, err = run(*argv, "--recipe", "posthoc", "--n", "41")
    assert code == 2 and "only 40 conversations" in err


def test_help_texts(run: Runner) -> None:
    for command in ("stats", "validate", "convert", "mix"):
        with pytest.raises(SystemExit) as info:
            run("data", command, "--help")
        assert info.value.code == 0
