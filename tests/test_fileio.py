"""The strict JSON reader, the atomic writer (and its clean-up after killed writers), output path checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlguard.errors import ConfigError, DataValidationError, VLGuardError
from vlguard.fileio import (
    MAX_JSON_DEPTH,
    JsonError,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    parse_json,
    read_text,
)


def test_deep_nesting_is_a_json_error_not_a_recursion_error() -> None:
    with pytest.raises(JsonError, match="nested more than"):
        parse_json("[" * 200_000)
    # Deep enough to break code that walks the value, shallow enough for the standard parser.
    with pytest.raises(JsonError, match=f"nested more than {MAX_JSON_DEPTH}") as info:
        parse_json('[{"a": 1}, ' + "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5) + "]")
    assert info.value.path == (1,)  # the top-level entry that holds it
    depth = MAX_JSON_DEPTH
    assert parse_json("[" * depth + "]" * depth) is not None


def test_lone_surrogates_are_refused_with_their_path_but_pairs_are_text() -> None:
    with pytest.raises(JsonError, match="lone UTF-16 surrogate") as info:
        parse_json('[{"id": "a"}, {"id": "b", "instr-resp": [{"instruction": "hi \\ud800"}]}]')
    assert info.value.path == (1, "instr-resp", 0, "instruction")
    with pytest.raises(JsonError, match="key"):
        parse_json('{"\\udc00": 1}')
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"  # a pair is one emoji
    assert parse_json('"\\uD83D\\uDE00 and \\ud83d\\ude01"') == "\U0001f600 and \U0001f601"
    for halves in ('["\\ud83d", "\\ude00"]', '"\\ude00\\ud83d"', '"\\ud83d\\ud83d\\ude00"', '"\\ud83d"'):
        with pytest.raises(JsonError, match="lone UTF-16 surrogate"):
            parse_json(halves)
    assert parse_json('"a \\\\ud800 b"') == "a \\ud800 b"  # an escaped backslash, not a surrogate


def test_syntax_errors_read_well() -> None:
    with pytest.raises(JsonError) as info:
        parse_json('{"a": "unterminated')
    assert (info.value.line, info.value.column) == (1, 7)
    assert "at at" not in f"{info.value.message} at line 1" and info.value.message == "Unterminated string"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataValidationError) as info:
        read_text(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.record) == (str(path), "line 2") and "0xe9" in problem.message


def test_output_paths_of_the_wrong_kind_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="existing folder"):
        check_output_file(tmp_path / "folder", "--out file")
    with pytest.raises(ConfigError, match="existing file"):
        check_output_dir(tmp_path / "file", "run folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output_file(tmp_path / "file" / "below" / "out.json")
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"


def test_text_that_is_not_unicode_is_refused_before_the_file_is_touched(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(VLGuardError, match="line 2 would hold a lone UTF-16 surrogate"):
        atomic_write_text(target, "fine\nbad \ud800\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    # A writer killed (SIGKILL: no clean-up can run) after writing its temporary file, before the rename.
    script = (
        "import os, sys, time\n"
        "os.replace = lambda *a: time.sleep(60)\n"
        "from vlguard.fileio import atomic_write_text\n"
        "atomic_write_text(sys.argv[1], '{\"partial\": true}')\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)])
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".metrics.json.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    left = list(tmp_path.glob(".metrics.json.*.tmp"))
    assert left, "the killed writer left its temporary file"
    # A temporary file of a live writer (this process) must survive: only dead writers' files go.
    alive = tmp_path / left[0].name.replace(f"-{writer.pid}-", f"-{os.getpid()}-")
    alive.write_text("in progress")
    atomic_write_text(target, json.dumps({"done": True}))
    assert json.loads(target.read_text()) == {"done": True}
    assert not any(p.exists() for p in left)
    assert alive.exists()
