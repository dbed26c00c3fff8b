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
    atomic_write_json,
    build_manifest,
    open_run,
    record_judge,
    redact_secrets,
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
    clean = redact_secrets(
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
