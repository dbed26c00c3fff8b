"""Issue 22: one settings check (``vlguard.preflight``) before any model loads or any run folder is written.

Each numbered item of the issue that this half owns has a test here (the fuzz corpus, tests/test_fuzz.py,
holds the one-line mistakes as CLI cases): every stage of an ``hft`` sweep checked first (item 2), each
judge with its own options (item 1), an adapter of another base model (item 9), an API endpoint without
its key and a judge that failed on every sample (item 10), the preset's judge on a task benchmark
(item 18), data recorded as it was given (item 19), and a gated Hub dataset (extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from api_server import chat_reply, scripted_server
from hft_fixtures import write_hft_data, write_sst2
from vlguard.cli.main import main
from vlguard.data.sample import sample_dataset_dir
from vlguard.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY_CPU = REPO / "configs" / "hft" / "tiny-cpu.yaml"
KEY = "sk-planted-0123456789abcdefXYZ"


# ---------------------------------------------------------------------------------------------------
# Item 2: every stage of configs/hft/tiny-cpu.yaml is checked before anything is trained or written.

# (a bad setting of one stage, what the error says)
BAD_STAGES = [
    (["alignment.train.report_to=[bogus]"], r"alignment training \(alignment.train.\*\): config key 'report_to': unknown tracker"),
    (["alignment.train.deepspeed=/missing.json"], r"alignment training .*'deepspeed': /missing.json: no such file"),
    (["finetune.report_to=[wandb]"], r"user fine-tuning \(finetune.\*\): config key 'report_to': wandb is not installed"),
    (["finetune.lora.target_modules=nothing_here"], r"user fine-tuning .*lora.target_modules='nothing_here' matches no module"),
    (["model.name_or_path=tiny", r"finetune.lora.target_modules=.*\.(q_proj|v_proj)"], r"user fine-tuning .*also matches vision modules"),
    (["harmful_score.judge=bogus"], r"Harmful Score evaluation \(harmful_score.\*, eval.\*\): unknown judge 'bogus'"),
    (["harmful_score.judge_options=[mode=bogus]"], r"Harmful Score evaluation .*judge 'refusal'.*bogus"),
    ([f"harmful_score.judge_options=[mode=harm,api_key={KEY}]"], r"judge 'refusal': bad option\(s\) \['api_key', 'mode'\]"),
    (["harmful_score.second_judges=[nosuch]"], r"Harmful Score evaluation .*unknown judge 'nosuch'"),
    (["harmful_score.second_judges=[llm-judge]"], r"judge 'llm-judge' calls https://api.openai.com/v1, which needs an API key"),
    (["task.judge_options=[match=bogus]"], r"Finetune Accuracy evaluation \(task.\*, eval.\*\): judge 'accuracy'"),
    (["eval.backend=bogus"], r"unknown backend 'bogus'"),
    (["eval.dtype=float8"], r"dtype must be auto, float32, bfloat16 or float16"),
    (["eval.device=cuda:7"], r"device 'cuda:7'"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "message"), BAD_STAGES, ids=lambda v: v[0] if isinstance(v, list) else "")
def test_a_bad_setting_of_any_stage_stops_hft_before_anything_is_written(
    bad: list[str],
    message: str,
    tmp_path: Path,
    tiny_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "sweep"
    # Data paths that do not exist: a setting let through would fail at the pools, after writing (the bug).
    missing = [
        f"{key}={tmp_path / 'none'}"
        for key in ("task.data", "harmful.data", "safety.data", "harmful_score.data")
    ]
    assert main(["hft", str(TINY_CPU), f"output_dir={out}", *missing, *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not out.exists()  # nothing trained, nothing written: a corrected rerun starts clean
    assert KEY not in err


# ---------------------------------------------------------------------------------------------------
# Item 1 (and item 7 for hft): a sweep whose judges have options, and a second judge with its own.


@pytest.fixture(scope="module")
def hft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the published 872 dev rows (a cut file is refused)
    return write_hft_data(tmp_path_factory.mktemp("hft-data"), n_train=24, n_heldout=3)


PLANTED_USER, PLANTED_PASSWORD = "planted-user", "planted-pw-0123456789"
JUDGE_URL = f"http://{PLANTED_USER}:{PLANTED_PASSWORD}@127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def sweep(hft_data: Path, tmp_path_factory: pytest.TempPathFactory, _tiny_cache_root: Path) -> Path:
    """configs/hft/tiny-cpu.yaml at minimal sizes, two cells in two worker processes, with judge options
    for the first judge, a second judge with its own options, and planted secrets (a key in the
    environment, credentials in the second judge's URL)."""
    out = tmp_path_factory.mktemp("hft") / "sweep"
    d = hft_data
    overrides = [
        f"output_dir={out}", f"task.data={d / 'sst2'}", "task.eval_limit=2", f"harmful.data={d / 'advbench'}",
        "safety.source=beavertails", f"safety.data={d / 'beavertails.jsonl'}", "attack.n=8",
        "attack.harmful_ratios=[0.0]", "defence.n_safety=2", "alignment.enabled=false", "finetune.max_steps=1",
        "finetune.global_batch_size=4", "finetune.per_device_batch_size=4", "finetune.progress=false",
        "harmful_score.bench=beavertails", f"harmful_score.data={d / 'heldout.jsonl'}",
        "harmful_score.max_new_tokens=3", "eval.reference=false", "eval.batch_size=4",
        # item 1: options of the first judge, and a second judge with options of its own
        "harmful_score.judge_options=[mode=rules]",
        "harmful_score.second_judges=[refusal-paper,llm-judge]",
        f"harmful_score.second_judge_options=[llm-judge.mode=harm,llm-judge.base_url={JUDGE_URL},"
        "llm-judge.max_retries=0,llm-judge.timeout=2,llm-judge.api_key_env=VLGUARD_PLANTED_KEY]",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLGUARD_CACHE", str(_tiny_cache_root))
        patch.setenv("VLGUARD_PLANTED_KEY", KEY)
        patch.setenv("OMP_NUM_THREADS", "1")
        assert main(["hft", str(TINY_CPU), *overrides, "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_each_hft_judge_gets_its_own_options(sweep: Path) -> None:
    assert (sweep / "summary.json").is_file()
    cells = sorted((sweep / "cells").iterdir())
    assert [c.name for c in cells] == ["p0-sft", "p0-vlguard-mix"]
    assert sorted(p.name for p in (sweep / "workers").glob("shard-*.log")) == ["shard-0.log", "shard-1.log"]
    for cell in cells:
        judges = json.loads((cell / "hs" / "manifest.json").read_text())["judges"]
        assert judges["refusal"]["mode"] == "rules" and judges["refusal-paper"]["mode"] == "paper"
        assert judges["llm-judge"]["mode"] == "harm"
        assert judges["llm-judge"]["base_url"] == "http://[REDACTED]@127.0.0.1:9/v1"
        metrics = json.loads((cell / "hs" / "metrics.json").read_text())
        # the llm-judge reached no server: it failed on every sample, so the run is not complete
        assert metrics["completeness"]["failed"]["llm-judge"] == metrics["completeness"]["samples"] == 3
        assert metrics["complete"] is False


def secret_forms(secret: str) -> list[str]:
    """A secret as a file may carry it: verbatim, URL-encoded, JSON \\u-escaped, and its distinctive core."""
    from urllib.parse import quote

    return [secret, quote(secret, safe=""), "".join(f"\\u{ord(c):04x}" for c in secret), secret[4:-4]]


def assert_nowhere(folder: Path, *secrets: str) -> int:
    """No file under ``folder`` holds any of ``secrets`` in any of its forms; returns the files read."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for form in secret_forms(secret):
                assert form.encode() not in data, f"{path} holds {form!r}"
    return len(files)


@pytest.mark.slow
def test_planted_secrets_reach_no_file_of_an_hft_sweep(sweep: Path) -> None:
    # hft_config.yaml, stage.json, workers/config.yaml, every train run folder (train_config.yaml,
    # vlguard_train.json, checkpoints) and every eval run folder (manifest.json, ...)
    assert assert_nowhere(sweep, KEY, PLANTED_PASSWORD, PLANTED_USER) > 30
    assert "[REDACTED]" in (sweep / "hft_config.yaml").read_text()
    assert "[REDACTED]" in (sweep / "workers" / "config.yaml").read_text()
    assert "[REDACTED]" in (sweep / "cells" / "p0-sft" / "stage.json").read_text()


# ---------------------------------------------------------------------------------------------------
# Item 7: eval and train (utility: tests/test_utility_engines.py) with planted secrets.


def test_planted_secrets_reach_no_file_of_an_eval_run_or_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLGUARD_PLANTED_KEY", KEY)
    body_key = "sk-planted-body-0123456789abcdef"
    # the server echoes the key, as some do: in the answer, URL-encoded
    with scripted_server(
        lambda body, index: chat_reply(f"Sure. Bearer {KEY} / {KEY.replace('-', '%2D')}")
    ) as server:
        run, report = tmp_path / "run", tmp_path / "report"
        argv = ["eval", "--backend", "openai", "--model", "m", "--data", str(sample_dataset_dir()),
                "--image-mode", "none", "--limit", "4", "--run-dir", str(run), "--no-progress",
                "--backend-option", f"base_url={server.url}", "--backend-option", "api_key_env=VLGUARD_PLANTED_KEY",
                "--backend-option", f'extra_params={{"user": "u1", "api_key": "{body_key}"}}',
                "--judge", "refusal", "--judge", "llm-judge", "--judge-option", "llm-judge.mode=harm",
                "--judge-option", f"llm-judge.base_url={JUDGE_URL}", "--judge-option", "llm-judge.max_retries=0",
                "--judge-option", "llm-judge.api_key_env=VLGUARD_PLANTED_KEY"]  # fmt: skip
        assert main(argv) == 0
        assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
        assert server.requests[0].body["api_key"] == body_key  # sent where asked, recorded nowhere
    assert main(["report", str(run), "--out", str(report)]) == 0
    assert assert_nowhere(run, KEY, body_key, PLANTED_PASSWORD, PLANTED_USER) >= 6
    assert assert_nowhere(report, KEY, body_key, PLANTED_PASSWORD, PLANTED_USER) >= 2
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["judge_options"]["llm-judge"]["base_url"] == "http://[REDACTED]@127.0.0.1:9/v1"
    assert manifest["backend"]["extra_params"] == {"user": "u1"}


@pytest.mark.slow
def test_planted_secrets_reach_no_file_of_a_training_run(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_plantedtoken0123456789abcdef")
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps([{"id": f"c{i}", "conversations": [{"from": "human", "value": f"Say {i}"},
                                                      {"from": "gpt", "value": f"{i}"}]} for i in range(4)])
    )  # fmt: skip
    out = tmp_path / "train"
    run_name = f"api_key={KEY}"  # a tracker run name someone pasted a key into
    overrides = ["model.name_or_path=tiny-lm", f"output_dir={out}", "data.recipe=instructions",
                 f"data.instructions={data}", "data.image_mode=none", "method=lora", "lora.r=2", "max_steps=2",
                 "save_steps=1", "global_batch_size=2", "per_device_batch_size=2", "progress=false",
                 f"run_name={run_name}"]  # fmt: skip
    assert main(["train", *overrides]) == 0
    assert (out / "model" / "vlguard_train.json").is_file() and (out / "checkpoints").is_dir()
    assert assert_nowhere(out, KEY, "hf_plantedtoken0123456789abcdef") > 10
    assert "api_key=[REDACTED]" in (out / "train_config.yaml").read_text()
    # The redacted config is what a rerun compares with its checkpoints: killed during its final save,
    # the run resumes from its last checkpoint (not "made with other settings").
    shutil.rmtree(out / "model")
    assert main(["train", *overrides]) == 0
    assert (out / "model" / "vlguard_train.json").is_file()
    assert_nowhere(out, KEY)


# ---------------------------------------------------------------------------------------------------
# Item 9: an adapter trained for another base model is refused before anything loads or is written.


@pytest.fixture(scope="module")
def lm_adapter(tmp_path_factory: pytest.TempPathFactory, _tiny_cache_root: Path) -> Path:
    """A PEFT LoRA adapter trained (initialised) on the built-in tiny text LM, ``tiny-lm``."""
    from utility_fixtures import build_lora_adapter
    from vlguard.models.resolve import resolve_model_path

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLGUARD_CACHE", str(_tiny_cache_root))
        model = Path(resolve_model_path("tiny-lm"))
    return build_lora_adapter(model, tmp_path_factory.mktemp("adapter") / "lm", vlm=False)


def test_an_adapter_of_another_base_model_is_refused_by_eval_and_utility(
    lm_adapter: Path, tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["eval", "--model", "tiny", "--adapter", str(lm_adapter), "--data", str(sample_dataset_dir()),
         "--image-mode", "none", "--limit", "2", "--run-dir", str(tmp_path / "run")],
        ["utility", "--model", "tiny", "--adapter", str(lm_adapter), "--tasks", "x", "--run-dir", str(tmp_path / "run")],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "was trained on the base model" in err and "tiny-lm-" in err and "not on tiny" in err, err
        assert not (tmp_path / "run").exists()
    # the base it was trained on is accepted, by name or by folder
    from vlguard.models.adapters import check_adapter
    from vlguard.models.resolve import resolve_model_path

    assert check_adapter(str(lm_adapter), "tiny-lm") is not None
    assert check_adapter(str(lm_adapter), resolve_model_path("tiny-lm")) is not None


def test_an_adapter_whose_weights_reach_no_module_is_refused_when_it_loads(
    lm_adapter: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    """A config that claims the right base cannot make a no-op pass: none of its weights would load."""
    from transformers import AutoModelForImageTextToText

    from vlguard.models.adapters import apply_adapter
    from vlguard.models.resolve import resolve_model_path

    lying = tmp_path / "lying"
    shutil.copytree(lm_adapter, lying)
    config = json.loads((lying / "adapter_config.json").read_text())
    (lying / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "tiny"}))
    model = AutoModelForImageTextToText.from_pretrained(resolve_model_path("tiny"))
    with pytest.raises(ConfigError, match=r"none of its 8 LoRA weights match a module of the model"):
        apply_adapter(model, str(lying), "tiny")


# ---------------------------------------------------------------------------------------------------
# Item 10: an API endpoint that needs a key, without it; a judge that failed on every sample.


def test_alpaca_eval_without_a_key_stops_before_generating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny_cache: Path
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "alpaca"
    data.mkdir()
    row = {
        "instruction": "Name a colour.",
        "output": "Blue.",
        "generator": "gpt4_1106_preview",
        "dataset": "x",
    }
    (data / "alpaca_eval_gpt4_1106_preview.json").write_text(json.dumps([row]))
    argv = [
        "eval",
        "--model",
        "tiny-lm",
        "--bench",
        "alpaca-eval",
        "--data",
        str(data),
        "--run-dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "judge 'llm-judge' calls https://api.openai.com/v1, which needs an API key in the environment variable OPENAI_API_KEY"
        in err
    )
    assert not (tmp_path / "run").exists()
    # with the key set, the same settings pass the check (nothing is sent by the check itself)
    from vlguard.evaluate import EvalConfig, check_config

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    check_config(
        EvalConfig(model="tiny-lm", bench="alpaca-eval", data=str(data), run_dir=str(tmp_path / "run"))
    )


def test_a_run_whose_judge_failed_on_every_sample_is_not_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted_server(lambda body, index: chat_reply("I cannot help with that.")) as server:
        argv = ["eval", "--backend", "openai", "--model", "m", "--backend-option", f"base_url={server.url}",
                "--data", str(sample_dataset_dir()), "--image-mode", "none", "--limit", "3", "--run-dir",
                str(tmp_path / "run"), "--no-progress", "--judge", "refusal", "--judge", "llm-judge",
                "--judge-option", "llm-judge.mode=harm", "--judge-option", "llm-judge.base_url=http://127.0.0.1:9/v1",
                "--judge-option", "llm-judge.max_retries=0"]  # fmt: skip
        assert main(argv) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["complete"] is False
    assert metrics["completeness"]["failed"] == {"generation": 0, "refusal": 0, "llm-judge": 3}
    assert "INCOMPLETE" in out and "llm-judge failed on every sample it judged (3)" in out
    errors = [r for r in metrics["metrics"] if r["judge"] == "llm-judge" and r["metric"] == "error_rate"]
    assert errors and all(r["value"] == 1.0 for r in errors)


# ---------------------------------------------------------------------------------------------------
# Item 18: the preset's judge (a refusal judge) replaces only the defaults of refusal benchmarks.


def test_the_paper_preset_keeps_a_task_benchmarks_own_judge() -> None:
    from vlguard.evaluate import EvalConfig

    def judges(bench: str, *asked: str) -> tuple[str, ...]:
        return EvalConfig(model="m", bench=bench, preset="paper", judges=asked or None).resolve().judges

    assert judges("sst2") == ("accuracy",)
    assert judges("vlguard-test") == ("refusal-paper",)
    assert judges("vlguard-test", "refusal") == ("refusal-paper", "refusal")
    # its reference scores on its own rubric, not refusal: it keeps its own judges
    from vlguard.benchmarks import BENCHMARKS

    assert judges("mm-safetybench") == BENCHMARKS["mm-safetybench"].judges
    assert "refusal-paper" not in judges("mm-safetybench")
    assert judges("sst2", "refusal") == ("refusal",)


# ---------------------------------------------------------------------------------------------------
# Item 19: eval records the data it was given.


def test_a_task_file_of_another_split_is_recorded_as_that_split(
    tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlguard.benchmarks import load_benchmark

    folder = write_sst2(tmp_path / "sst2", n_train=6)  # the published 872 dev rows
    train = load_benchmark("sst2", data=str(folder / "train.tsv"))
    assert train.source["split"] == "train" and train.source["rows"] == "0:6"
    assert [s.id for s in train.samples][:2] == ["sst2:train:0", "sst2:train:1"]
    dev = load_benchmark("sst2", data=str(folder))
    assert dev.source["split"] == "dev" and dev.samples[0].id == "sst2:dev:0"
    run = tmp_path / "run"
    argv = ["eval", "--model", "tiny-lm", "--bench", "sst2", "--data", str(folder / "train.tsv"),
            "--max-new-tokens", "2", "--run-dir", str(run), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run / "manifest.json").read_text())["benchmark_source"]["split"] == "train"


def test_rows_past_the_end_of_a_task_file_are_an_error_not_a_silent_cut(tmp_path: Path) -> None:
    from vlguard.benchmarks import load_benchmark

    folder = write_sst2(tmp_path / "sst2")  # the published 872 dev rows
    with pytest.raises(ConfigError, match=r"rows=5:99999 asks for rows up to 99999, but the file has 872"):
        load_benchmark("sst2", data=str(folder), rows="5:99999")
    assert load_benchmark("sst2", data=str(folder), rows="5:").source["rows"] == "5:872"


# ---------------------------------------------------------------------------------------------------
# Extra: VLGuard's data on the Hub is gated; say how to get access.


def test_a_gated_hub_dataset_says_to_accept_its_terms_and_set_hf_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    from vlguard.data.sources import DataSourceError, hub_file

    def gated(*args: Any, **kwargs: Any) -> str:
        # what huggingface_hub raises for a gated repository (its HTTP layer is httpx2's)
        from httpx2 import Request, Response

        response = Response(403, request=Request("GET", "https://huggingface.co/datasets/ys-zong/VLGuard"))
        raise GatedRepoError("403 Client Error: cannot access gated repo", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(DataSourceError) as caught:
        hub_file("ys-zong/VLGuard", "test.json", None)
    message = str(caught.value)
    assert "gated" in message and "https://huggingface.co/datasets/ys-zong/VLGuard" in message
    assert "HF_TOKEN" in message and "repository not found" not in message


@pytest.mark.slow
def test_planted_secrets_reach_no_file_of_a_utility_run(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local lm-eval task whose file carries a Hub token (``dataset_kwargs.token``) and a key in its
    metadata, with keys in the environment: the task record, the manifest and the metrics hold none."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (make install installs it)")
    from utility_fixtures import _sst2_yaml

    token, metadata_key = "hf_plantedtoken0123456789abcdef", "sk-planted-meta-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    dev = tmp_path / "dev.tsv"
    dev.write_text("content\tlabel\n" + "".join(f"a film number {i}\t{i % 2}\n" for i in range(6)))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    task = _sst2_yaml("planted_slice", dev).replace(
        '  delimiter: "\\t"\n', f'  delimiter: "\\t"\n  token: {token}\n'
    )
    task = task.replace("  version: 1.0\n", f"  version: 1.0\n  api_key: {metadata_key}\n")
    assert token in task and metadata_key in task
    (tasks / "planted_slice.yaml").write_text(task)
    run = tmp_path / "run"
    argv = ["utility", "--model", "tiny-lm", "--tasks", "planted_slice", "--include-path", str(tasks),
            "--limit", "4", "--batch-size", "4", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((run / "utility" / "tasks" / "planted_slice.json").read_text())
    assert record["task"] == "planted_slice"  # the engine's configs are kept, without the secrets
    assert assert_nowhere(run, KEY, token, metadata_key) >= 4
