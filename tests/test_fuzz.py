"""A fuzz corpus run through the real CLI: malformed data files, images, configs, options and run folders.

Every case runs ``vlguard.cli.main.main`` in-process on one malformed input and checks what a user must
get: the exit code of a user error (2; ``data validate`` reports with 1), a message naming the file, the
record and the field where they exist, no traceback (an uncaught exception fails the test), no model
loaded for a mistake that is visible before, and nothing half-written (the outputs it names are absent,
or unchanged when they existed). Inputs are built small, in code; adding a case is adding a ``Case``.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api_server import chat_reply, scripted_server
from vlguard.cli.main import main
from vlguard.data.sample import sample_dataset_dir
from vlguard.records import MAX_PROMPT_CHARS

DEEP = 200_000  # "[" × 200,000 made every JSON reader raise RecursionError


@dataclass(frozen=True)
class Case:
    """One malformed input: ``build(tmp)`` writes it and returns the argv; ``expect`` are regexes the
    error must match (stderr; stdout for ``data validate`` and for a command that must succeed, code 0); ``outputs`` (relative to tmp) must be
    absent afterwards, or byte-identical when they existed before."""

    id: str
    build: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    code: int = 2


# ---------------------------------------------------------------------------------------------------
# Malformed VLGuard data files, each fed to every command that reads one.

GOOD_RECORD = {
    "id": "r1",
    "image": "pics/a.png",
    "safe": True,
    "instr-resp": [{"safe_instruction": "What is in the picture?", "response": "A cat."}],
}


def _records(**changes: Any) -> str:
    return json.dumps([{**GOOD_RECORD, **changes}])


# (id, raw content of the data file, regexes the error must match)
DATA_FILES: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    ("deep-nesting", "[" * DEEP, (r"nested more than \d+ levels deep",)),
    (
        "deep-inside-a-record",
        json.dumps(
            [GOOD_RECORD, {**GOOD_RECORD, "id": "r2", "harmful_category": [[[[[[[[[[[]]]]]]]]]]]}]
        ).replace("[[[[[[[[[[[]]]]]]]]]]]", "[" * 80 + "]" * 80),
        (r"record #1", r"nested more than \d+ levels deep"),
    ),
    (
        "lone-surrogate-in-an-instruction",
        _records().replace("What is in", "What \\ud800 is in"),
        (r"record #0, field 'instr-resp\[0\]\.safe_instruction'", "lone UTF-16 surrogate"),
    ),
    ("lone-surrogate-in-a-key", _records().replace('"safe":', '"sa\\udfffe":'), ("record #0", "surrogate")),
    (
        "invalid-utf8",
        _records().replace("A cat.", "A caf\u00e9.").encode("latin-1"),
        (r"not UTF-8 text: byte 0xe9", r"line 1"),
    ),
    ("truncated", _records()[:40], (r"not valid JSON: Unterminated string at line 1 column \d+",)),
    ("empty-file", "", (r"not valid JSON",)),
    (
        "top-level-object",
        json.dumps({"records": [GOOD_RECORD]}),
        (r"expected a JSON list of records, got dict",),
    ),
    ("record-not-an-object", json.dumps(["r1"]), (r"record #0", r"expected a JSON object, got str")),
    ("nan-for-a-flag", _records().replace('"safe": true', '"safe": NaN'), (r"record r1, field 'safe'",)),
    ("infinity-for-an-id", _records().replace('"id": "r1"', '"id": Infinity'), (r"field 'id'",)),
    (
        "instruction-over-the-length-cap",
        _records(
            **{"instr-resp": [{"safe_instruction": "x" * (MAX_PROMPT_CHARS + 1), "response": "A cat."}]}
        ),
        (r"record r1, field 'instr-resp\[0\]\.safe_instruction'", r"over the limit of 100,000"),
    ),
    (
        "image-path-escapes-the-root",
        _records(image="../../etc/passwd"),
        (r"field 'image'", r"escapes the image root"),
    ),
    ("absolute-image-path", _records(image="/etc/passwd"), (r"field 'image'", r"absolute")),
    ("nul-in-image-path", _records(image="pics/a\u0000.png"), (r"field 'image'", r"NUL")),
    (
        "duplicate-id-other-image",
        json.dumps([GOOD_RECORD, {**GOOD_RECORD, "image": "pics/b.png"}]),
        (r"record r1 \(#1\), field 'id'", r"duplicate id"),
    ),
    (
        "unknown-instruction-key",
        _records(**{"instr-resp": [{"question": "q", "response": "r"}]}),
        (r"unknown instruction key",),
    ),
]


def _data_folder(tmp: Path, content: str | bytes) -> Path:
    folder = tmp / "data"
    folder.mkdir(exist_ok=True)
    for split in ("train", "test"):
        target = folder / f"{split}.json"
        target.write_bytes(
            content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        )
    return folder


def _instructions(tmp: Path) -> Path:
    path = tmp / "instructions.jsonl"
    row = {
        "id": "i1",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    }
    path.write_text(json.dumps(row) + "\n")
    return path


def _data_commands(
    content: str | bytes,
) -> dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...], int]]:
    def validate(tmp: Path) -> list[str]:
        return ["data", "validate", str(_data_folder(tmp, content)), "--split", "test"]

    def stats(tmp: Path) -> list[str]:
        return ["data", "stats", str(_data_folder(tmp, content)), "--split", "test"]

    def convert(tmp: Path) -> list[str]:
        folder = _data_folder(tmp, content)
        return ["data", "convert", str(folder), "--format", "messages", "--out", str(tmp / "out.jsonl")]

    def mix(tmp: Path) -> list[str]:
        folder = _data_folder(tmp, content)
        return ["data", "mix", "--recipe", "posthoc", "--safety", str(folder), "--instructions",
                str(_instructions(tmp)), "--n", "1", "--out", str(tmp / "mix.jsonl")]  # fmt: skip

    def evaluate(tmp: Path) -> list[str]:
        folder = _data_folder(tmp, content)
        return ["eval", "--model", "tiny", "--data", str(folder), "--image-mode", "blank",
                "--run-dir", str(tmp / "run"), "--no-progress"]  # fmt: skip

    return {
        "validate": (validate, (), 1),
        "stats": (stats, (), 2),
        "convert": (convert, ("out.jsonl",), 2),
        "mix": (mix, ("mix.jsonl",), 2),
        "eval": (evaluate, ("run",), 2),
    }


DATA_CASES = [
    Case(f"data-{name}-{command}", build, expect, outputs, code)
    for name, content, expect in DATA_FILES
    for command, (build, outputs, code) in _data_commands(content).items()
]


# Task benchmarks read JSON Lines (GSM8K) and JSON lists (AlpacaEval) through the same strict reader.


def _task_file(bench: str, name: str, content: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        folder = tmp / "task"
        folder.mkdir()
        (folder / name).write_bytes(content.encode("utf-8", "surrogatepass"))
        # AlpacaEval's pairwise judge on a local server (it needs no key; nothing listens: no call is made)
        judge = (
            ["--judge-option", "llm-judge.base_url=http://127.0.0.1:9/v1"] if bench == "alpaca-eval" else []
        )
        return ["eval", "--model", "tiny", "--bench", bench, "--data", str(folder), "--run-dir",
                str(tmp / "run"), "--no-progress", *judge]  # fmt: skip

    return build


GSM8K_LINE = json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"})
ALPACA_ROW = {
    "instruction": "Name a colour.",
    "output": "Blue.",
    "generator": "gpt4_1106_preview",
    "dataset": "x",
}
TASK_CASES = [
    Case("data-task-jsonl-deep-line", _task_file("gsm8k", "test.jsonl", GSM8K_LINE + "\n" + "[" * DEEP + "\n"), (r"test.jsonl: record line 2", "nested"), ("run",)),
    Case("data-task-jsonl-surrogate", _task_file("gsm8k", "test.jsonl", GSM8K_LINE.replace("2 + 2?", "2 + \\udc00?") + "\n"), (r"record line 1, field 'question'", "surrogate"), ("run",)),
    Case("data-task-json-deep", _task_file("alpaca-eval", "alpaca_eval_gpt4_1106_preview.json", "[" * DEEP), (r"alpaca_eval_gpt4_1106_preview.json", "nested"), ("run",)),
    # issue 22 item 19: rows asked for that the file does not have are not cut silently; VLSafe's training
    # file is not evaluated as its evaluation split
    Case("data-task-rows-beyond-the-file", lambda tmp: [*_task_file("agnews", "test.csv", "".join(f'"{1 + i % 4}","title {i}","text {i}"\n' for i in range(12)))(tmp), "--bench-option", "rows=7:99999"], (r"test.csv: option rows=7:99999 asks for rows up to 99999, but the file has 12",), ("run",)),
    Case("data-vlsafe-training-file-as-eval", lambda tmp: [*_task_file("vlsafe", "VLSafe_harmlessness_alignment.jsonl", json.dumps({"image_id": "000000000001.jpg", "caption": "c", "query": "q", "reference": "r"}) + "\n")(tmp)[:6], str(tmp / "task" / "VLSafe_harmlessness_alignment.jsonl"), "--image-mode", "blank", "--run-dir", str(tmp / "run")], (r"is VLSafe's train file \(VLSafe_harmlessness_alignment.jsonl\), not its eval file",), ("run",)),
    Case("data-task-json-surrogate", _task_file("alpaca-eval", "alpaca_eval_gpt4_1106_preview.json", json.dumps([ALPACA_ROW, {**ALPACA_ROW, "instruction": "LONE"}]).replace("LONE", "\\ud800")), (r"record item 1, field 'instruction'", "surrogate"), ("run",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# `vlguard judge --input`: malformed response files.


def _judge_file(content: bytes, output: str = "labels.jsonl") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "in.jsonl").write_bytes(content)
        (tmp / "a-folder").mkdir()
        return [
            "judge",
            "--judge",
            "refusal",
            "--input",
            str(tmp / "in.jsonl"),
            "--output",
            str(tmp / output),
        ]

    return build


GOOD_LINE = b'{"id": "a", "prompt": "p", "response": "r"}\n'
JUDGE_CASES = [
    Case("judge-deep-line", _judge_file(GOOD_LINE + b"[" * DEEP + b"\n"), (r"in.jsonl: record line 2", "nested"), ("labels.jsonl",)),
    Case("judge-invalid-utf8", _judge_file(GOOD_LINE + b'{"id": "b", "prompt": "caf\xe9"}\n'), (r"record line 2", r"not UTF-8"), ("labels.jsonl",)),
    Case("judge-lone-surrogate", _judge_file(b'{"id": "a", "prompt": "p", "response": "\\ud800"}\n'), (r"record line 1, field 'response'", "surrogate"), ("labels.jsonl",)),
    Case("judge-missing-field", _judge_file(b'{"id": "a", "prompt": "p"}\n'), (r"record line 1, field 'response'", "missing"), ("labels.jsonl",)),
    Case("judge-not-an-object", _judge_file(GOOD_LINE + b"[1, 2]\n"), (r"record line 2", "JSON object"), ("labels.jsonl",)),
    Case("judge-image-escapes", _judge_file(b'{"id": "a", "prompt": "p", "response": "r", "image": "../x.png"}\n'), (r"field 'image'", "escapes"), ("labels.jsonl",)),
    Case("judge-duplicate-id", _judge_file(GOOD_LINE + GOOD_LINE), (r"record line 2, field 'id'", "duplicate"), ("labels.jsonl",)),
    Case("judge-output-is-a-folder", _judge_file(GOOD_LINE, output="a-folder"), (r"a-folder: the --output file is an existing folder",), ("a-folder",)),
]  # fmt: skip


def _labelled_file(judge: str, *labels: object) -> Callable[[Path], list[str]]:
    """``vlguard judge --human-label-field h`` on one line per label (issue 22 item 8: label spaces)."""

    def build(tmp: Path) -> list[str]:
        lines = [
            json.dumps({"id": f"a{i}", "prompt": "p", "response": "r", "h": h}) for i, h in enumerate(labels)
        ]
        (tmp / "in.jsonl").write_text("\n".join(lines) + "\n")
        argv = ["judge", "--judge", judge, "--input", str(tmp / "in.jsonl"), "--human-label-field", "h"]
        return [*argv, "--output", str(tmp / "acc")]

    return build


JUDGE_CASES += [
    Case("judge-harm-labels-for-a-refusal-judge", _labelled_file("refusal", "safe", "unsafe"), (r"harm labels \(safe / unsafe / harmless / harmful\) but judge 'refusal' gives refusal labels",), ("acc",)),
    Case("judge-refusal-labels-for-a-harm-judge", _labelled_file("harm", "refusal", "compliance"), (r"refusal labels .* but judge 'harm' gives harm labels",), ("acc",)),
    Case("judge-labels-of-both-kinds", _labelled_file("harm", "safe", "refusal"), (r"mix refusal labels \(refusal\) and harm labels \(safe\)",), ("acc",)),
    Case("judge-float-label", _labelled_file("harm", 1.0), (r"record line 1, field 'h'", r"unknown label 1\.0"), ("acc",)),
    # issue 22 item 20: nothing scored is an error, never a report of "n/a"
    Case("judge-accuracy-empty-file", _labelled_file("refusal"), (r"holds no records",), ("acc",)),
    Case("judge-accuracy-of-the-task-accuracy-judge", _labelled_file("accuracy", "refusal", "compliance"), (r"judge 'accuracy' gives accuracy labels, not refusal or harm labels",), ("acc",)),
    Case("judge-accuracy-nothing-scored", lambda tmp: [*_labelled_file("llm-judge", "harmful", "harmless")(tmp), "--judge-option", "llm-judge.mode=harm", "--judge-option", "llm-judge.base_url=http://127.0.0.1:9/v1", "--judge-option", "llm-judge.max_retries=0", "--judge-option", "llm-judge.timeout=2"], (r"judge 'llm-judge' scored none of the 2 labelled replies \(2 errors",), ("acc",)),
    Case("judge-accuracy-empty-label-field", lambda tmp: [a if a != "h" else "" for a in _labelled_file("refusal", "refusal")(tmp)], (r"--human-label-field is empty",), ("acc",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Command-line options of eval: each mistake is named before any model loads, and nothing is written.


def _eval_with(*extra: str, run: str = "run") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "a-file").write_text("not a folder")
        return ["eval", "--model", "tiny", "--data", str(sample_dataset_dir()), "--image-mode", "none",
                "--run-dir", str(tmp / run), "--limit", "2", "--no-progress", *extra]  # fmt: skip

    return build


def _short_published_file(tmp: Path) -> list[str]:
    """A VLGuard folder whose test.json holds a few records: the published split cut short."""
    folder = _data_folder(tmp, _records())
    return ["eval", "--model", "tiny", "--data", str(folder), "--image-mode", "none", "--run-dir",
            str(tmp / "run"), "--no-progress"]  # fmt: skip


OPTION_CASES = [
    Case("option-unknown-backend-option", _eval_with("--backend-option", "nosuch=1"), (r"backend 'hf' has no option 'nosuch'",), ("run",)),
    Case("option-unknown-device", _eval_with("--device", "banana"), (r"unknown device 'banana'",), ("run",)),
    Case("option-device-index", _eval_with("--device", "cpu:x"), (r"device 'cpu:x'",), ("run",)),
    Case("option-unknown-judge", _eval_with("--judge", "nosuch"), (r"unknown judge 'nosuch'",), ("run",)),
    Case("option-bad-judge-value", _eval_with("--judge-option", "refusal.mode=bogus"), (r"judge 'refusal'", "bogus"), ("run",)),
    Case("option-judge-option-for-no-judge", _eval_with("--judge-option", "refusl.mode=paper"), (r"'refusl', which is not among",), ("run",)),
    Case("option-unknown-bench-option", _eval_with("--bench-option", "nosuch=1"), (r"unknown option\(s\) nosuch",), ("run",)),
    Case("option-deep-json-value", _eval_with("--bench-option", "nosuch=" + "[" * 50_000), (r"unknown option\(s\) nosuch",), ("run",)),
    Case("option-allow-partial-not-a-bool", _eval_with("--bench-option", "allow_partial=yes"), (r"allow_partial must be true or false, not 'yes'",), ("run",)),
    Case("data-published-file-cut-short", _short_published_file, (r"test\.json: 0 unsafe, the published test\.json has 442", r"allow_partial=true"), ("run",)),
    Case("option-run-dir-is-a-file", _eval_with(run="a-file"), (r"a-file: the run folder is an existing file",), ("a-file",)),
    Case("option-limit-zero", _eval_with("--limit", "0"), (r"limit must be a positive",), ("run",)),
    Case("option-batch-size-zero", _eval_with("--batch-size", "0"), (r"batch_size must be at least 1",), ("run",)),
    Case("option-missing-model-folder", _eval_with("--model", "./models/none/here"), (r"no such file or folder",), ("run",)),
    Case("option-missing-adapter", _eval_with("--adapter", "runs/train/none/model"), (r"--adapter.*no such file or folder",), ("run",)),
    Case("option-unknown-subset", _eval_with("--subset", "nosuch"), (r"unknown subset",), ("run",)),
    Case("option-unknown-image-mode", _eval_with("--image-mode", "bogus"), (r"invalid choice: 'bogus'",), ("run",)),
    Case("option-utility-bootstrap-iters-negative", lambda tmp: ["utility", "--model", "tiny", "--suite", "quick", "--run-dir", str(tmp / "run"), "--bootstrap-iters", "-5"], (r"bootstrap_iters must be 0 \(no bootstrap interval\) or more, not -5",), ("run",)),
    # issue 22 item 13: an empty or unset path is not the current folder, nor a folder named null
    Case("option-run-dir-empty", lambda tmp: [a if a != str(tmp / "run") else "" for a in _eval_with()(tmp)], (r"the run folder path is empty",), ("run",)),
    Case("option-run-dir-null", lambda tmp: [a if a != str(tmp / "run") else "null" for a in _eval_with()(tmp)], (r"the run folder path is 'null', an unset value",), ("run",)),
    # issue 22 item 10: an API endpoint that needs a key, without it, before any request or file
    Case("option-openai-backend-without-key", lambda tmp: ["eval", "--backend", "openai", "--model", "gpt-4o", "--data", str(sample_dataset_dir()), "--image-mode", "none", "--run-dir", str(tmp / "run")], (r"the openai backend calls https://api.openai.com/v1, which needs an API key in the environment variable OPENAI_API_KEY",), ("run",)),
    Case("option-api-judge-without-key", _eval_with("--judge", "llm-judge", "--judge-option", "llm-judge.mode=harm"), (r"judge 'llm-judge' calls https://api.openai.com/v1, which needs an API key",), ("run",)),
    # issue 22 items 9 and 12: an adapter of another base model, or whose config disagrees with its weights
    Case("option-adapter-of-another-base", lambda tmp: _eval_with("--adapter", str(_adapter(tmp, base="tiny-lm")))(tmp), (r"--adapter .*adapter was trained on the base model tiny-lm, not on tiny",), ("run",)),
    Case("option-adapter-config-empty", lambda tmp: _eval_with("--adapter", str(_adapter(tmp, config={})))(tmp), (r"adapter_config.json, field 'r': a LoRA rank must be a positive integer, not None",), ("run",)),
    Case("option-adapter-unknown-peft-type", lambda tmp: _eval_with("--adapter", str(_adapter(tmp, config={"peft_type": "BOGUS", "r": 4})))(tmp), (r"field 'peft_type': 'BOGUS' is not a LoRA adapter",), ("run",)),
    Case("option-adapter-rank-not-its-weights", lambda tmp: _eval_with("--adapter", str(_adapter(tmp, config={"peft_type": "LORA", "r": 8, "base_model_name_or_path": "tiny"})))(tmp), (r"has rank 4, but adapter_config.json says r=8",), ("run",)),
]  # fmt: skip


def _adapter(tmp: Path, *, base: str = "tiny", rank: int = 4, config: dict[str, Any] | None = None) -> Path:
    """A LoRA adapter folder (a config and a safetensors file of rank-``rank`` matrices) without a model."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp / "adapter"
    folder.mkdir(exist_ok=True)
    settings = {"peft_type": "LORA", "r": rank, "base_model_name_or_path": base} if config is None else config
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    name = "base_model.model.model.language_model.layers.0.self_attn.q_proj"
    save_file({f"{name}.lora_A.weight": np.zeros((rank, 64), np.float32),
               f"{name}.lora_B.weight": np.zeros((64, rank), np.float32)}, str(folder / "adapter_model.safetensors"))  # fmt: skip
    return folder


# ---------------------------------------------------------------------------------------------------
# Images: bombs (also one declared only by its header), truncated and non-image files.


def _png_header(width: int, height: int) -> bytes:
    """A valid 1x1 PNG of ~70 bytes whose header is rewritten to declare ``width`` x ``height`` pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _with_image(image: bytes, *command: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        folder = _data_folder(tmp, _records())
        (folder / "test" / "pics").mkdir(parents=True)
        (folder / "test" / "pics" / "a.png").write_bytes(image)
        return [arg.replace("DATA", str(folder)).replace("TMP", str(tmp)) for arg in command]

    return build


VALIDATE_IMAGES = ("data", "validate", "DATA", "--split", "test", "--images")
IMAGE_CASES = [
    Case("image-header-bomb-validate", _with_image(_png_header(12_000, 12_000), *VALIDATE_IMAGES), (r"12000x12000", r"decompression bomb"), code=1),
    Case("image-truncated-validate", _with_image(_png_header(64, 64) + b"\x00" * 10, *VALIDATE_IMAGES), (r"pics/a.png", r"truncated or corrupt"), code=1),
    Case("image-not-an-image-validate", _with_image(b"GIF89a? no", *VALIDATE_IMAGES), (r"pics/a.png", r"not an image"), code=1),
]  # fmt: skip


@pytest.fixture(scope="module")
def answering_server() -> Iterator[str]:
    with scripted_server(lambda body, index: chat_reply("I cannot help with that.")) as server:
        yield server.url


def _api_eval(image_mode: str) -> tuple[str, ...]:
    # a few records in VLGuard's layout: part of the published test split (allow_partial)
    return ("eval", "--backend", "openai", "--model", "m", "--backend-option", "base_url=URL",
            "--data", "DATA", "--image-mode", image_mode, "--run-dir", "TMP/run", "--no-progress",
            "--bench-option", "allow_partial=true")  # fmt: skip


# Images are prepared as generation goes: these run with the API backend (a real server on 127.0.0.1).
API_IMAGE_CASES = [
    # found before the model loads and before the run folder is written (issue 22: corrupt images)
    Case("image-header-bomb-blank-mode", _with_image(_png_header(12_000, 12_000), *_api_eval("blank")), (r"pics/a.png", r"12000x12000"), ("run",)),
    Case("image-truncated-original-mode", _with_image(_png_header(64, 64) + b"\x00" * 10, *_api_eval("original")), (r"pics/a.png", r"truncated or corrupt"), ("run",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Training configs and merge: refused before any model loads, nothing written.


def _train(*overrides: str, yaml_text: str | bytes | None = None) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "a-file").write_text("not a folder")
        done = tmp / "resumable" / "checkpoints" / "checkpoint-2"
        done.mkdir(parents=True)
        (done / "COMPLETE").write_text("x")
        args = ["train"]
        if yaml_text is not None:
            (tmp / "c.yaml").write_bytes(yaml_text if isinstance(yaml_text, bytes) else yaml_text.encode())
            args.append(str(tmp / "c.yaml"))
        base = ["model.name_or_path=tiny", f"output_dir={tmp / 'out'}", "data.recipe=instructions",
                f"data.instructions={_instructions(tmp)}"]  # fmt: skip
        return args + base + [o.replace("TMP", str(tmp)) for o in overrides]

    return build


TRAIN_CASES = [
    Case("train-lr-nan", _train("lr=nan"), (r"config key 'lr': must be > 0, got nan",), ("out",)),
    Case("train-lr-negative", _train("lr=-5"), (r"config key 'lr': must be > 0, got -5",), ("out",)),
    Case("train-warmup-ratio", _train("warmup_ratio=2"), (r"'warmup_ratio'",), ("out",)),
    Case("train-unknown-key", _train("lora.rank=8"), (r"unknown config key 'lora.rank'",), ("out",)),
    Case("train-bad-type", _train("max_steps=many"), (r"'max_steps': expected an integer",), ("out",)),
    Case("train-yaml-deep", _train(yaml_text="lr: " + "[" * 100_000), (r"c.yaml: not a config: nested too deeply",), ("out",)),
    Case("train-yaml-not-utf8", _train(yaml_text=b"run_name: caf\xe9\n"), (r"c.yaml: not UTF-8",), ("out",)),
    Case("train-yaml-a-list", _train(yaml_text="- lr\n"), (r"c.yaml: a config is a mapping",), ("out",)),
    Case("train-output-dir-is-a-file", _train("output_dir=TMP/a-file"), (r"a-file: the output_dir is an existing file",), ("a-file",)),
    Case("train-restart-beside-checkpoints", _train("output_dir=TMP/resumable", "resume_from_checkpoint=null"), (r"holds complete checkpoints",), ("resumable/train_config.yaml",)),
    Case("train-missing-model-folder", _train("model.name_or_path=./no/such/model"), (r"model.name_or_path './no/such/model': no such file or folder",), ("out",)),
    # issue 22 item 16: trackers and the DeepSpeed config, before the model loads
    Case("train-report-to-unknown", _train("report_to=[bogus]"), (r"config key 'report_to': unknown tracker\(s\) 'bogus'",), ("out",)),
    Case("train-report-to-not-installed", _train("report_to=[wandb]"), (r"config key 'report_to': wandb is not installed",), ("out",)),
    Case("train-deepspeed-missing", _train("deepspeed=/missing.json"), (r"config key 'deepspeed': /missing.json: no such file",), ("out",)),
    # issue 22 item 13
    Case("train-output-dir-null", _train("output_dir=null"), (r"the output_dir path is 'null', an unset value",), ("null",)),
]  # fmt: skip


# Recipes (`vlguard train` / `vlguard hft` CONFIG KEY=VALUE ...): malformed overrides, overrides after an option.
HFT_RECIPE = str(Path(__file__).resolve().parents[1] / "configs" / "hft" / "tiny-cpu.yaml")


def _recipe(command: str, *args: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        config = [HFT_RECIPE] if command == "hft" else []
        return [command, *config, f"output_dir={tmp / 'out'}", *args]

    return build


RECIPE_CASES = [
    Case("recipe-hft-unclosed-list", _recipe("hft", "attack.harmful_ratios=[0.1"), (r"config key 'attack\.harmful_ratios': '\[0\.1' is not a list",), ("out",)),
    Case("recipe-hft-unclosed-train-list", _recipe("hft", "finetune.report_to=[a"), (r"config key 'finetune\.report_to': '\[a' is not a list",), ("out",)),
    Case("recipe-hft-list-too-deep", _recipe("hft", "defences=" + "[" * 50_000), (r"config key 'defences'.*nested too deeply",), ("out",)),
    Case("recipe-train-unclosed-list", _recipe("train", "report_to=[a"), (r"config key 'report_to': '\[a' is not a list",), ("out",)),
    Case("recipe-train-stray-bracket", _recipe("train", "report_to=[a]]"), (r"config key 'report_to': '\[a\]\]' is not a list",), ("out",)),
    # An override after an option is an override (argparse leaves it unparsed): the printout has it.
    Case("recipe-hft-override-after-print-config", _recipe("hft", "--print-config", "seed=7"), (r"(?m)^seed: 7$",), ("out",), code=0),
    Case("recipe-train-override-after-print-config", _recipe("train", "--print-config", "lr=0.25"), (r"(?m)^lr: 0\.25$",), ("out",), code=0),
    Case("recipe-hft-override-after-cells", _recipe("hft", "--cells", "0/2", "seed=7", "--print-config"), (r"(?m)^seed: 7$",), ("out",), code=0),
    Case("recipe-hft-unknown-option-after-overrides", _recipe("hft", "--print-config", "--bogus"), (r"unrecognized arguments: --bogus",), ("out",)),
]  # fmt: skip


def _merge(weights: str, *, out: str = "merged") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        adapter = tmp / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
        (adapter / weights).write_bytes(b"\x80\x04pickled")
        (tmp / "a-file").write_text("not a folder")
        return ["merge", "--base", "tiny", "--adapter", str(adapter), "--out", str(tmp / out)]

    return build


def _merge_adapter(**adapter: Any) -> Callable[[Path], list[str]]:
    return lambda tmp: [
        "merge",
        "--base",
        "tiny",
        "--adapter",
        str(_adapter(tmp, **adapter)),
        "--out",
        str(tmp / "merged"),
    ]


MERGE_CASES = [
    Case("merge-pickle-only-adapter", _merge("adapter_model.bin"), (r"no adapter_model.safetensors \(safetensors only\)",), ("merged",)),
    Case("merge-out-is-a-file", _merge("adapter_model.safetensors", out="a-file"), (r"a-file: the --out folder is an existing file",), ("a-file",)),
    # issue 22 items 9 and 12
    Case("merge-adapter-of-another-base", _merge_adapter(base="tiny-lm"), (r"was trained on the base model tiny-lm, not on tiny",), ("merged",)),
    Case("merge-adapter-config-empty", _merge_adapter(config={}), (r"field 'r': a LoRA rank must be a positive integer",), ("merged",)),
    Case("merge-adapter-unknown-peft-type", _merge_adapter(config={"peft_type": "BOGUS", "r": 4}), (r"'BOGUS' is not a LoRA adapter",), ("merged",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Damaged run folders: resume, re-judge and report name the file, the line and the field.


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, answering_server: str) -> Path:
    """A complete run folder (API backend on a local server, six samples, the refusal judge)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    args = ["eval", "--backend", "openai", "--model", "m", "--backend-option", f"base_url={answering_server}",
            "--data", str(sample_dataset_dir()), "--image-mode", "none", "--limit", "6", "--run-dir", str(run),
            "--judge", "refusal", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return run


def _damaged(damage: Callable[[Path], None], *command: str) -> Callable[[Path], list[str]]:
    """Copy of the finished run at ``tmp/run``, damaged; ``command`` with RUN and DATA filled in."""

    def build(tmp: Path) -> list[str]:
        shutil.copytree(_FINISHED[0], tmp / "run")
        damage(tmp / "run")
        fill = {"RUN": str(tmp / "run"), "DATA": str(sample_dataset_dir()), "TMP": str(tmp)}
        return [re.sub("RUN|DATA|TMP", lambda m: fill[m.group()], arg) for arg in command]

    return build


_FINISHED: list[Path] = []  # set by the fixture below, so that cases stay plain data


def _replace_line(name: str, index: int, change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        lines = (run / name).read_text().splitlines()
        new = change(json.loads(lines[index]))
        lines[index] = new if isinstance(new, str) else json.dumps(new)
        (run / name).write_text("\n".join(lines) + "\n")

    return damage


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda record: {k: v for k, v in record.items() if k != key}


def _edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        new = change(json.loads(path.read_text()))
        path.write_text(new if isinstance(new, str) else json.dumps(new))

    return damage


def _set_first_row(**values: Any) -> Callable[[Any], str]:
    def change(metrics: Any) -> str:
        metrics["metrics"][0].update(values)
        return json.dumps(metrics)  # NaN / Infinity are written as the bare words, as Python does

    return change


RESUME = ("eval", "--backend", "openai", "--model", "m", "--backend-option", "base_url=http://127.0.0.1:9/v1",
          "--data", "DATA", "--image-mode", "none", "--limit", "6", "--run-dir", "RUN", "--judge", "refusal",
          "--no-progress")  # fmt: skip
REJUDGE = ("judge", "RUN", "--judge", "refusal", "--no-progress")
REPORT = ("report", "RUN", "--out", "TMP/report")
RUN_CASES = [
    Case("run-generation-without-sample-id-resume", _damaged(_replace_line("generations.jsonl", 1, _without("sample_id")), *RESUME), (r"generations.jsonl: line 2, field 'sample_id': missing",), ("run/generations.jsonl",)),
    Case("run-generation-without-sample-id-rejudge", _damaged(_replace_line("generations.jsonl", 1, _without("sample_id")), *REJUDGE), (r"generations.jsonl: line 2, field 'sample_id'",), ("run/metrics.json",)),
    Case("run-generation-deep-line", _damaged(_replace_line("generations.jsonl", 0, lambda r: "[" * DEEP), *REJUDGE), (r"generations.jsonl: line 1 is not valid JSON \(nested",), ("run/metrics.json",)),
    Case("run-generation-surrogate", _damaged(_replace_line("generations.jsonl", 0, lambda r: json.dumps(r).replace('"response": "', '"response": "\\udc80')), *REJUDGE), (r"generations.jsonl: line 1 is not valid JSON \(a lone UTF-16 surrogate",), ("run/metrics.json",)),
    Case("run-judgment-without-label", _damaged(_replace_line("judgments/refusal.jsonl", 2, _without("label")), *REPORT), (r"refusal.jsonl: line 3, field 'label': missing",), ("report",)),
    Case("run-sample-with-unknown-field", _damaged(_replace_line("samples.jsonl", 0, lambda r: {**r, "colour": "red"}), *REJUDGE), (r"samples.jsonl: record 1 is not a sample \(unknown field\(s\) colour\)",), ("run/metrics.json",)),
    Case("run-manifest-deep", _damaged(_edit_json("manifest.json", lambda m: "[" * DEEP), *REJUDGE), (r"manifest.json: not valid JSON: nested",), ("run/metrics.json",)),
    Case("run-changed-data-file", _damaged(_edit_json("manifest.json", lambda m: {**m, "result_fields": {**m["result_fields"], "benchmark_sha256": {"test.json": "0" * 64}}}), *RESUME), (r'benchmark_sha256\["test.json"\]: folder has \'0{64}\', now \'[0-9a-f]{64}\'',), ("run/generations.jsonl",)),
    Case("run-metrics-nan", _damaged(_edit_json("metrics.json", _set_first_row(value=float("nan"))), *REPORT), (r"metrics.json: record metrics\[0\], field 'value': not a finite number",), ("report",)),
    Case("run-metrics-rate-over-one", _damaged(_edit_json("metrics.json", _set_first_row(value=7.5)), *REPORT), (r"field 'value': 7.5 is outside \[0, 1\]",), ("report",)),
    Case("run-metrics-ci-infinite", _damaged(_edit_json("metrics.json", _set_first_row(ci_high=float("inf"))), *REPORT), (r"field 'ci_high': not a finite number",), ("report",)),
    Case("run-metrics-negative-count", _damaged(_edit_json("metrics.json", _set_first_row(n=-3)), *REPORT), (r"field 'n': expected a count",), ("report",)),
    Case("run-metrics-kappa", _damaged(_edit_json("metrics.json", lambda m: {**m, "agreement": [{"judges": ["a", "b"], "kappa": 3, "n": 1}]}), *REPORT), (r"agreement\[0\], field 'kappa': 3 is outside",), ("report",)),
    Case("run-metrics-deep", _damaged(_edit_json("metrics.json", lambda m: "[" * DEEP), *REPORT), (r"metrics.json: not valid JSON", "nested"), ("report",)),
    Case("run-report-out-is-a-file", _damaged(lambda run: (run.parent / "a-file").write_text("x"), "report", "RUN", "--out", "TMP/a-file"), (r"a-file: the --out folder is an existing file",), ("a-file",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# vlguard curate: its images folder, taxonomy and labels files and its options, all refused before any
# model loads and before the --out folder is created.

TAXONOMY_OK = "categories:\n  - name: scams\n    definition: misleading offers\n    subcategories:\n      - name: fake prizes\n        definition: prizes that do not exist\n"


def _curate(
    *extra: str,
    taxonomy: str | bytes | None = None,
    labels: str | bytes | None = None,
    images: bool = True,
    taxonomy_name: str = "t.yaml",
    base_url: bool = True,
) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        if images:
            (tmp / "images").mkdir()
            _write(tmp / "images" / "a.png", _png_header(8, 8))
        argv = [
            "curate",
            str(tmp / "images"),
            "--out",
            str(tmp / "out"),
            "--model",
            "m",
            "--vlguard-data",
            "none",
        ]
        if base_url:  # a local server needs no key (nothing listens there: every case fails before a request)
            argv += ["--backend-option", "base_url=http://127.0.0.1:9/v1"]
        if taxonomy is not None:
            _write(tmp / taxonomy_name, taxonomy)
            argv += ["--taxonomy", str(tmp / taxonomy_name)]
        if labels is not None:
            _write(tmp / "labels.csv", labels)
            argv += ["--labels", str(tmp / "labels.csv")]
        return [arg.replace("TMP", str(tmp)) for arg in argv + list(extra)]

    return build


def _write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _curate_into_other_files(tmp: Path) -> list[str]:
    (tmp / "out").mkdir(parents=True)
    (tmp / "out" / "train.json").write_text("[]")  # someone's data: never overwritten
    return _curate()(tmp)


CURATE_CASES = [
    Case("curate-missing-images-dir", _curate(images=False), (r"images: the images folder cannot be used: no such folder",), ("out",)),
    Case("curate-images-dir-without-images", lambda tmp: (tmp / "images").mkdir() or _curate(images=False)(tmp), (r"the images folder holds no image",), ("out",)),
    Case("curate-out-inside-the-images", _curate("--out", "TMP/images/out"), (r"the --out folder is inside the images folder",), ("images/out",)),
    Case("curate-out-holds-other-files", _curate_into_other_files, (r"the --out folder exists and is not a folder written by vlguard curate",), ("out",)),
    Case("curate-taxonomy-unknown-field", _curate(taxonomy=TAXONOMY_OK.replace("    definition: misleading", "    colour: red\n    definition: misleading")), (r"t.yaml: record category 'scams', field 'colour': unknown field",), ("out",)),
    Case("curate-taxonomy-no-subcategories", _curate(taxonomy="categories:\n  - name: scams\n    definition: x\n"), (r"record category 'scams', field 'subcategories': expected a non-empty list, got null",), ("out",)),
    Case("curate-taxonomy-not-yaml", _curate(taxonomy="categories: [\n  - {name: x"), (r"t.yaml: not valid YAML at line \d+ column \d+",), ("out",)),
    Case("curate-taxonomy-deep", _curate(taxonomy="categories: " + "[" * 100_000), (r"t.yaml: not a taxonomy: nested too deeply",), ("out",)),
    Case("curate-taxonomy-not-utf8", _curate(taxonomy=TAXONOMY_OK.replace("offers", "caf\xe9").encode("latin-1")), (r"t.yaml: record line 3", r"not UTF-8 text"), ("out",)),
    Case("curate-taxonomy-json-deep", _curate(taxonomy="[" * DEEP, taxonomy_name="t.json"), (r"t.json", r"nested more than \d+ levels deep"), ("out",)),
    Case("curate-taxonomy-other-extension", _curate(taxonomy=TAXONOMY_OK, taxonomy_name="t.txt"), (r"t.txt: a taxonomy file is .yaml, .yml or .json",), ("out",)),
    Case("curate-labels-unknown-image", _curate(labels="image,safe\nb.png,true\n"), (r"labels.csv: record row 2, field 'image': no image 'b.png' in the images folder",), ("out",)),
    Case("curate-labels-bad-flag", _curate(labels="image,safe\na.png,perhaps\n"), (r"record row 2, field 'safe': expected true or false",), ("out",)),
    Case("curate-labels-unknown-category", _curate(labels="image,safe,category\na.png,false,weapons\n"), (r"record row 2, field 'category': unknown category 'weapons'",), ("out",)),
    Case("curate-labels-unknown-column", _curate(labels="image,safe,colour\na.png,true,red\n"), (r"labels.csv: record row 1: unknown column\(s\) \['colour'\]",), ("out",)),
    Case("curate-labels-escaping-path", _curate(labels="image,safe\n../a.png,true\n"), (r"record row 2, field 'image'", r"escapes the image root"), ("out",)),
    Case("curate-labels-not-utf8", _curate(labels=b"image,safe\ncaf\xe9.png,true\n"), (r"labels.csv: record line 2", r"not UTF-8 text"), ("out",)),
    Case("curate-labels-a-folder", lambda tmp: [*_curate()(tmp), "--labels", str(tmp)], (r"cannot read the labels: it is a folder",), ("out",)),
    Case("curate-unknown-judge-option", _curate("--judge-option", "refusl.mode=paper"), (r"--judge-option given for 'refusl', which no check uses",), ("out",)),
    Case("curate-bad-judge-value", _curate("--judge-option", "refusal.mode=bogus"), (r"judge 'refusal'", "bogus"), ("out",)),
    Case("curate-other-llm-judge-mode", _curate("--judge-option", "llm-judge.mode=harm"), (r"curate uses its request rubric \(mode=request\), not 'harm'",), ("out",)),
    Case("curate-unknown-backend-option", _curate("--backend-option", "nosuch=1"), (r"backend 'openai' has no option 'nosuch'",), ("out",)),
    Case("curate-missing-api-key", _curate("--backend-option", "api_key_env=VLGUARD_FUZZ_NO_SUCH_KEY", base_url=False), (r"needs an API key in the environment variable VLGUARD_FUZZ_NO_SUCH_KEY",), ("out",)),
    Case("curate-hf-missing-model", _curate("--backend", "hf", "--model", "./no/such/model", base_url=False), (r"--model './no/such/model': no such file or folder",), ("out",)),
    Case("curate-hf-unknown-device", _curate("--backend", "hf", "--device", "banana", base_url=False), (r"unknown device 'banana'",), ("out",)),
    Case("curate-similarity-threshold", _curate("--similarity-threshold", "1.5"), (r"--similarity-threshold must be in \(0, 1\]",), ("out",)),
    Case("curate-max-attempts-zero", _curate("--max-attempts", "0"), (r"--max-attempts must be between 1 and 10",), ("out",)),
    Case("curate-bad-price", _curate("--price-per-million-tokens", "2.5"), (r"expected INPUT,OUTPUT prices",), ("out",)),
    Case("curate-vlguard-data-missing", _curate("--vlguard-data", "./no/such/folder"), (r"--vlguard-data './no/such/folder': no such folder",), ("out",)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# vlguard hft (issue 22 items 1, 2, 7, 13, 14): a mistake in any stage's settings stops the sweep before
# anything is written, named by its stage; the recipe is configs/hft/tiny-cpu.yaml.

TINY_CPU = Path(__file__).resolve().parents[1] / "configs" / "hft" / "tiny-cpu.yaml"
PLANTED = "sk-planted-fuzz-0123456789abcdef"


def _hft(*overrides: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "a-file").write_text("not a folder")
        out = [] if any(o.startswith("output_dir=") for o in overrides) else [f"output_dir={tmp / 'out'}"]
        return ["hft", str(TINY_CPU), *out, *(o.replace("TMP", str(tmp)) for o in overrides)]

    return build


HFT_CASES = [
    Case("hft-output-dir-empty", _hft("output_dir="), (r"the output_dir path is empty",), ("hft_config.yaml",)),
    Case("hft-output-dir-null", _hft("output_dir=null"), (r"the output_dir path is 'null', an unset value",), ("null",)),
    Case("hft-output-dir-is-a-file", _hft("output_dir=TMP/a-file"), (r"a-file: the output_dir is an existing file",), ("a-file",)),
    Case("hft-alignment-unknown-tracker", _hft("alignment.train.report_to=[bogus]"), (r"alignment training \(alignment.train.\*\): config key 'report_to': unknown tracker",), ("out",)),
    Case("hft-finetune-missing-deepspeed-config", _hft("finetune.deepspeed=/missing.json"), (r"user fine-tuning \(finetune.\*\): config key 'deepspeed'",), ("out",)),
    Case("hft-unknown-judge", _hft("harmful_score.judge=bogus"), (r"Harmful Score evaluation \(harmful_score.\*, eval.\*\): unknown judge 'bogus'",), ("out",)),
    Case("hft-judge-option-with-a-key", _hft(f"harmful_score.judge_options=[mode=harm,api_key={PLANTED}]"), (r"judge 'refusal': bad option\(s\) \['api_key', 'mode'\]",), ("out",)),
    Case("hft-second-judge-option-of-no-second-judge", _hft("harmful_score.second_judge_options=[llm-judge.mode=harm]"), (r"'llm-judge.mode=harm' is for 'llm-judge', which is not among harmful_score.second_judges \(harm, refusal-paper\)",), ("out",)),
    Case("hft-bad-second-judge-option", _hft("harmful_score.second_judge_options=[refusal-paper.mode=bogus]"), (r"Harmful Score evaluation .*judge 'refusal-paper'", "bogus"), ("out",)),
    Case("hft-unknown-second-judge", _hft("harmful_score.second_judges=[nosuch]"), (r"unknown judge 'nosuch'",), ("out",)),
    Case("hft-task-judge-option", _hft("task.judge_options=[match=bogus]"), (r"Finetune Accuracy evaluation \(task.\*, eval.\*\): judge 'accuracy'",), ("out",)),
    Case("hft-eval-backend", _hft("eval.backend=bogus"), (r"unknown backend 'bogus'",), ("out",)),
    Case("hft-eval-dtype", _hft("eval.dtype=float8"), (r"dtype must be auto, float32, bfloat16 or float16",), ("out",)),
    Case("hft-eval-device", _hft("eval.device=cuda:7"), (r"device 'cuda:7'",), ("out",)),
]  # fmt: skip


# vlguard utility and vlguard report: paths and adapters checked first (issue 22 items 9, 13, 14).
def _utility(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["utility", "--model", "tiny", "--tasks", "some_task", "--run-dir", str(tmp / "run"),
                        *(e.replace("TMP", str(tmp)) for e in extra)]  # fmt: skip


def _hft_report_into_a_file(tmp: Path) -> list[str]:
    (tmp / "sweep").mkdir()
    (tmp / "sweep" / "hft_config.yaml").write_text("seed: 0\n")  # what makes it an hft folder
    (tmp / "a-file").write_text("x")
    return ["report", str(tmp / "sweep"), "--out", str(tmp / "a-file")]


UTILITY_CASES = [
    Case("utility-run-dir-empty", lambda tmp: [a if a != str(tmp / "run") else "" for a in _utility()(tmp)], (r"the --run-dir folder path is empty",), ("run",)),
    Case("utility-adapter-of-another-base", lambda tmp: _utility("--adapter", str(_adapter(tmp, base="tiny-lm")))(tmp), (r"was trained on the base model tiny-lm, not on tiny",), ("run",)),
    Case("utility-unknown-device", _utility("--device", "banana"), (r"unknown device 'banana'",), ("run",)),
    Case("run-report-out-empty", lambda tmp: ["report", str(tmp), "--out", ""], (r"the --out folder path is empty",), ()),
    Case("run-hft-report-out-is-a-file", _hft_report_into_a_file, (r"a-file: the --out folder is an existing file",), ("a-file",)),
]  # fmt: skip


CASES = (
    DATA_CASES
    + TASK_CASES
    + JUDGE_CASES
    + OPTION_CASES
    + IMAGE_CASES
    + TRAIN_CASES
    + RECIPE_CASES
    + MERGE_CASES
    + CURATE_CASES
    + HFT_CASES
    + UTILITY_CASES
)
API_CASES = API_IMAGE_CASES + RUN_CASES


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Building a generation backend (loading a model) fails the test; the tiny model is never built."""
    import vlguard.generation

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded although the mistake was visible before")

    for name in list(vlguard.generation.BACKENDS):
        if name != "openai":
            monkeypatch.setitem(vlguard.generation.BACKENDS, name, refuse)
    monkeypatch.setattr("vlguard.models.resolve.ensure_tiny_model", refuse)
    monkeypatch.setenv("VLGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the cases that need no key get a local server


def _run_case(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str], fill: dict[str, str]) -> None:
    tmp.mkdir(exist_ok=True)
    argv = [fill.get(arg, arg) for arg in case.build(tmp)]
    argv = [arg.replace("base_url=URL", f"base_url={fill['URL']}") if "URL" in fill else arg for arg in argv]
    before = {name: _snapshot(tmp / name) for name in case.outputs}
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.code, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    shown = out if case.code in (0, 1) else err  # a printout (0) or `data validate`'s report (1)
    if case.code == 2 and not err.startswith("usage:"):
        assert err.startswith("error: "), err[-2000:]
    for pattern in case.expect:
        assert re.search(pattern, shown), f"{pattern!r} not in:\n{shown[-3000:]}"
    for name, snapshot in before.items():
        assert _snapshot(tmp / name) == snapshot, f"{name} was written"


def _snapshot(path: Path) -> Any:
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_fuzz_case(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model_load: None
) -> None:
    _run_case(case, tmp_path / "case", capsys, {})


@pytest.mark.parametrize("case", API_CASES, ids=lambda case: case.id)
def test_fuzz_case_with_a_run_folder(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    finished_run: Path,
    answering_server: str,
    no_model_load: None,
) -> None:
    _FINISHED[:] = [finished_run]
    _run_case(case, tmp_path / "case", capsys, {"URL": answering_server})


def test_the_corpus_covers_every_kind_of_input() -> None:
    kinds = {case.id.split("-")[0] for case in CASES + API_CASES}
    assert kinds == {
        "data",
        "judge",
        "option",
        "image",
        "train",
        "recipe",
        "merge",
        "run",
        "curate",
        "hft",
        "utility",
    }
    assert len({case.id for case in CASES + API_CASES}) == len(CASES + API_CASES)
