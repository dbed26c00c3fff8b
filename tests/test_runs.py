"""Run folders: torn lines survive kill -9, manifests detect other settings, no secrets are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlguard.errors import RunMismatchError
from vlguard.runs import (
    CorruptRunFileError,
    JsonlStore,
    RunFolder,
    RunLockedError,
    atomic_write_json,
    build_manifest,
    lock_run_folder,
    open_run,
    record_judge,
    update_manifest,
)


def test_torn_last_line_is_dropped_and_cut_before_appending(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "g.jsonl")
    store.append([{"sample_id": "a"}, {"sample_id": "b"}])
    with open(store.path, "ab") as f:
        f.write(b'{"sample_id": "c", "resp')  # what kill -9 in the middle of a write leaves
    assert [r["sample_id"] for r in store.read()] == ["a", "b"]
    store.append([{"sample_id": "c"}])
    assert [r["sample_id"] for r in store.read()] == ["a", "b", "c"]
    assert store.path.read_bytes().endswith(b"\n")
    assert all(json.loads(line) for line in store.path.read_text().splitlines())


def test_a_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"sample_id": "a"}\nnot json\n{"sample_id": "b"}\n')
    with pytest.raises(CorruptRunFileError, match="line 2"):
        JsonlStore(path).read()


def test_repair_keeps_a_healthy_file(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "g.jsonl")
    store.append([{"sample_id": "a"}])
    before = store.path.read_bytes()
    store.repair()
    assert store.path.read_bytes() == before
    JsonlStore(tmp_path / "missing.jsonl").repair()  # no file: nothing to do


def _manifest(**overrides: object) -> dict[str, object]:
    fields = {"model": "tiny", "image_mode": "blank", "max_new_tokens": 8, "samples_sha256": "abc"}
    fields.update(overrides)
    return build_manifest(fields, config={"batch_size": 4}, backend={}, benchmark_source={}, seed=0)


def test_manifest_mismatch_names_the_differing_fields(tmp_path: Path) -> None:
    run = open_run(tmp_path / "run", _manifest())
    run.generations.append([{"sample_id": "a", "response": "x"}])
    with pytest.raises(RunMismatchError) as err:
        open_run(tmp_path / "run", _manifest(model="other", max_new_tokens=16))
    message = str(err.value)
    assert "model" in message and "max_new_tokens" in message
    assert "image_mode" not in message


def test_a_folder_without_results_takes_the_new_settings(tmp_path: Path) -> None:
    # e.g. the first attempt named a model that failed to load: nothing to mix, no error.
    open_run(tmp_path / "run", _manifest(model="typo"))
    open_run(tmp_path / "run", _manifest(model="tiny"))
    manifest = RunFolder(tmp_path / "run").read_manifest()
    assert manifest is not None and manifest["result_fields"]["model"] == "tiny"


def test_settings_that_do_not_change_results_are_not_compared(tmp_path: Path) -> None:
    first = _manifest()
    open_run(tmp_path / "run", first)
    later = _manifest()
    later.update(created="2099-01-01T00:00:00+00:00", packages={"torch": "9.9"}, config={"batch_size": 64})
    open_run(tmp_path / "run", later)  # no error
    # The folder keeps its original manifest.
    assert RunFolder(tmp_path / "run").read_manifest() == json.loads(json.dumps(first))


def test_manifest_records_provenance_without_hostname(tmp_path: Path) -> None:
    import socket

    manifest = _manifest()
    for key in ("packages", "git_commit", "git_dirty", "created", "seed", "result_fields"):
        assert key in manifest
    assert set(manifest["packages"]) >= {
        "torch",
        "transformers",
        "peft",
        "trl",
        "accelerate",
        "datasets",
        "vlguard",
    }  # type: ignore[arg-type]
    assert socket.gethostname() not in json.dumps(manifest)


def test_secrets_are_never_recorded() -> None:
    from vlguard.redaction import redact

    clean = redact(
        {
            "api_key": "sk-123",
            "nested": {"hf_token": "hf_abc", "x": 1},
            "api_key_env": "MY_KEY",
            "max_new_tokens": 8,
        }
    )
    assert clean == {"nested": {"x": 1}, "api_key_env": "MY_KEY", "max_new_tokens": 8}
    assert "sk-123" not in json.dumps(_manifest_with_secret())


def _manifest_with_secret() -> dict[str, object]:
    return build_manifest(
        {}, config={"backend_options": {"api_key": "sk-123"}}, backend={}, benchmark_source={}, seed=0
    )


def test_judge_settings_are_recorded_and_never_mixed(tmp_path: Path) -> None:
    run = open_run(tmp_path / "run", _manifest())
    record_judge(run, "refusal", {"version": "default-1", "mode": "default"})
    run.judgments("refusal").append(
        [{"sample_id": "a", "judge": "refusal", "label": "refusal", "evidence": {}}]
    )
    record_judge(run, "refusal", {"version": "default-1", "mode": "default"})  # same settings: fine
    with pytest.raises(RunMismatchError, match=r"judges\.refusal\.mode"):
        record_judge(run, "refusal", {"version": "default-1", "mode": "paper"})
    update_manifest(run, backend={"dtype": "float32", "api_key": "sk-1"})
    manifest = run.read_manifest()
    assert manifest is not None
    assert manifest["backend"] == {"dtype": "float32"}
    assert manifest["judges"]["refusal"]["mode"] == "default"


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    atomic_write_json(tmp_path / "metrics.json", {"a": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_changed_data_file_names_the_file_and_both_hashes(tmp_path: Path) -> None:
    # The data file's name holds a dot: the key path must not be split on it ("folder has None").
    old = build_manifest(
        {"benchmark_sha256": {"test.json": "aaa"}}, config={}, backend={}, benchmark_source={}, seed=0
    )
    new = build_manifest(
        {"benchmark_sha256": {"test.json": "bbb"}}, config={}, backend={}, benchmark_source={}, seed=0
    )
    open_run(tmp_path, old)
    RunFolder(tmp_path).generations.append([{"sample_id": "a", "response": "x"}])
    with pytest.raises(RunMismatchError) as info:
        open_run(tmp_path, new)
    assert """benchmark_sha256["test.json"]: folder has 'aaa', now 'bbb'""" in str(info.value)
    assert "None" not in str(info.value)


def test_a_record_without_its_key_field_names_file_line_and_field(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.generations.path.write_text('{"sample_id": "a", "response": "x"}\n{"response": "y"}\n')
    with pytest.raises(CorruptRunFileError, match=r"generations.jsonl: line 2, field 'sample_id': missing"):
        run.generations.read()
    run.judgments("refusal").path.parent.mkdir()
    run.judgments("refusal").path.write_text('{"sample_id": "a", "label": 3}\n')
    with pytest.raises(CorruptRunFileError, match="line 1, field 'label': not a string"):
        run.judgments("refusal").read()


def test_a_run_folder_has_one_writer_at_a_time(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom vlguard.runs import lock_run_folder\n"
            "with lock_run_folder(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        busy = rf"in use by another vlguard process \(pid {holder.pid}"
        with pytest.raises(RunLockedError, match=busy), lock_run_folder(run_dir):
            pass
        assert time.monotonic() - started < 5, "the second writer fails at once, it does not wait"
    finally:
        holder.kill()  # kill -9: the operating system releases the lock
        holder.wait()
    with lock_run_folder(run_dir) as run, lock_run_folder(run_dir):  # re-entrant within one process
        assert run.path == run_dir


def test_taking_the_lock_removes_temporary_files_of_killed_writers(tmp_path: Path) -> None:
    from vlguard.fileio import _temp_prefix

    run = RunFolder(tmp_path)
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f"{_temp_prefix(run.metrics_path)}{dead_pid}-abc.tmp"
    stale.write_text('{"half": ')
    foreign = tmp_path / ".notes.txt.tmp"  # not ours: left alone
    foreign.write_text("x")
    with lock_run_folder(tmp_path):
        pass
    assert not stale.exists() and foreign.exists()


def test_a_run_folder_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    from vlguard.errors import ConfigError

    (tmp_path / "run").write_text("not a folder")
    with (
        pytest.raises(ConfigError, match="run folder is an existing file"),
        lock_run_folder(tmp_path / "run"),
    ):
        pass
