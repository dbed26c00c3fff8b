"""`vlguard utility` end to end: local tasks in the engines' own format, run by lmms-eval (tiny VLM) and
lm-eval (tiny causal LM) as libraries, into a run folder; nothing mocked.

The checks go beyond "a file was written": the numbers in metrics.json are the engine's per-sample
scores averaged, the logged answers are what vlguard's hf backend generates for the same prompt and
image, the logged log-likelihoods match a forward pass done here by hand, and an adapter really changes
what is evaluated.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from utility_fixtures import (
    build_lora_adapter,
    write_colour_data,
    write_lm_eval_tasks,
    write_lmms_tasks,
)
from vlguard.cli.main import main

pytestmark = pytest.mark.slow

pytest.importorskip("lm_eval", reason="lm-eval is not installed (make install installs it)")
pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (make install installs it)")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, _tiny_cache_root: Path) -> Iterator[Path]:
    """The tiny VLM's cache and a private datasets cache (the engines load local files through datasets)."""
    root = tmp_path_factory.mktemp("utility")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLGUARD_CACHE", str(_tiny_cache_root))
        patch.setenv("HF_DATASETS_CACHE", str(root / "datasets-cache"))
        yield root


@pytest.fixture(scope="module")
def lmms_runs(env: Path, shared_data: Path) -> dict[str, Path]:
    """The tiny VLM on three local lmms-eval tasks, without and with a LoRA adapter, through the CLI."""
    from vlguard.models.resolve import ensure_tiny_model

    tasks = write_lmms_tasks(env, shared_data)
    adapter = build_lora_adapter(ensure_tiny_model("tiny"), env / "vlm-adapter", vlm=True)
    runs = {"base": env / "run-base", "adapter": env / "run-adapter"}
    for name, run in runs.items():
        # The adapter run needs one generation task and one likelihood task to show the adapter is used.
        names = "colour_vqa,colour_mc,sst2_slice" if name == "base" else "colour_vqa,sst2_slice"
        args = ["utility", "--model", "tiny", "--tasks", names, "--include-path", str(tasks),
                "--limit", "8", "--batch-size", "4", "--run-dir", str(run)]  # fmt: skip
        if name == "adapter":
            args += ["--adapter", str(adapter)]
        assert main(args) == 0
    return {**runs, "tasks": tasks, "adapter_dir": adapter}


def _samples(run: Path, task: str) -> list[dict[str, Any]]:
    return _read_jsonl(run / "utility" / "samples" / f"{task}.jsonl")


def test_lmms_eval_run_folder_holds_manifest_records_samples_and_metrics(lmms_runs: dict[str, Path]) -> None:
    folder = lmms_runs["base"] / "utility"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "utility" and manifest["engine"] == {"name": "lmms-eval", "version": "0.7.3"}
    assert manifest["result_fields"]["model"] == "tiny" and manifest["result_fields"]["adapter"] is None
    assert manifest["packages"]["lmms-eval"] == "0.7.3" and manifest["seed"] == 0
    assert "git_commit" in manifest and manifest["backend"]["backend"] == "hf"
    # The local task files are recorded with their hashes (a local task can change silently).
    assert set(manifest["benchmark_source"]["task_files"]) == {
        "colour_vqa.yaml",
        "colour_mc.yaml",
        "sst2_slice.yaml",
    }

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["run"]["kind"] == "utility" and metrics["run"]["tasks"] == [
        "colour_mc",
        "colour_vqa",
        "sst2_slice",
    ]
    primary = {row["subset"]: row for row in metrics["metrics"] if row["primary"]}
    assert {task: row["metric"] for task, row in primary.items()} == {
        "colour_vqa": "exact_match",
        "colour_mc": "acc",
        "sst2_slice": "acc",
    }
    for task, row in primary.items():
        samples = _samples(lmms_runs["base"], task)
        assert row["n"] == len(samples) == 8
        # The score is the engine's per-sample scores averaged, with its interval around it.
        assert row["value"] == pytest.approx(sum(s[row["metric"]] for s in samples) / 8)
        assert row["unit"] == "fraction" and row["judge"] == "lmms-eval" and row["num_fewshot"] == 0
        assert row["ci_low"] is not None and row["ci_low"] <= row["value"] <= row["ci_high"]
        record = json.loads((folder / "tasks" / f"{task}.json").read_text())
        assert record["settings"] == {"limit": 8, "num_fewshot": None}
        assert record["versions"][task] == 1.0 and record["n_samples"][task]["effective"] == 8


def test_logged_answers_are_what_the_hf_backend_generates(lmms_runs: dict[str, Path], env: Path) -> None:
    from PIL import Image

    from vlguard.generation.base import GenerationRequest
    from vlguard.generation.hf import HFBackend

    backend = HFBackend("tiny", batch_size=1, max_new_tokens=6)
    data = write_colour_data(env / "colour-check")
    for sample in _samples(lmms_runs["base"], "colour_vqa"):
        image = Image.open(data / f"img{sample['doc']['index']}.png").convert("RGB")
        context = sample["arguments"][0]
        with backend.overrides(stop_strings=["\n"]):  # the task's `until`
            expected = backend.generate([GenerationRequest("x", context, image=image)])[0].response
        assert sample["resps"][0][0] == expected
        assert sample["exact_match"] == float(sample["resps"][0][0].strip().lower() == sample["target"])


def _loglikelihood_by_hand(backend: Any, context: str, continuation: str, image: Any) -> float:
    """Sum of log-probabilities of the continuation's tokens, one unpadded sequence, no batching."""
    import torch

    from vlguard.generation.base import GenerationRequest

    prompt = backend.prompt_text(GenerationRequest("x", context, image=image))
    kwargs: dict[str, Any] = {"text": [prompt], "return_tensors": "pt"}
    if image is not None:
        kwargs["images"] = [image]
    inputs = dict(backend.processor(**kwargs))
    continuation_ids = backend.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    n = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([continuation_ids])], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.inference_mode():
        log_probs = torch.log_softmax(backend.model(**inputs).logits.float()[0], dim=-1)
    return float(sum(log_probs[n - 1 + k, t] for k, t in enumerate(continuation_ids)))


def test_batched_likelihoods_match_a_forward_pass_by_hand(lmms_runs: dict[str, Path], env: Path) -> None:
    from PIL import Image

    from vlguard.generation.hf import HFBackend

    backend = HFBackend("tiny", batch_size=1)
    data = write_colour_data(env / "colour-check-ll")
    for task in ("colour_mc", "sst2_slice"):
        for sample in _samples(lmms_runs["base"], task)[:4]:
            image = (
                Image.open(data / f"img{sample['doc']['index']}.png").convert("RGB")
                if task == "colour_mc"
                else None
            )
            logged = [resp[0][0] for resp in sample["resps"]]
            # lmms-eval logs the requests' arguments flattened: (context, continuation, doc id, task, split) each.
            args = sample["arguments"]
            pairs = [(args[k], args[k + 1]) for k in range(0, len(args), 5)]
            assert len(pairs) == len(logged) and all(isinstance(c, str) for pair in pairs for c in pair)
            by_hand = [
                _loglikelihood_by_hand(backend, context, continuation, image)
                for context, continuation in pairs
            ]
            # lmms-eval takes the lowest value as the answer: the logged values are negative log-likelihoods.
            assert logged == pytest.approx([-ll for ll in by_hand], abs=1e-4)
            most_likely = max(range(len(by_hand)), key=by_hand.__getitem__)
            assert sample["acc"] == float(most_likely == int(sample["target"]))


def test_the_adapter_changes_what_is_evaluated(lmms_runs: dict[str, Path]) -> None:
    manifest = json.loads((lmms_runs["adapter"] / "utility" / "manifest.json").read_text())
    assert manifest["result_fields"]["adapter"] == str(lmms_runs["adapter_dir"])
    assert manifest["backend"]["adapter"] == str(lmms_runs["adapter_dir"])
    for task in ("colour_vqa", "sst2_slice"):
        base = [s["resps"] for s in _samples(lmms_runs["base"], task)]
        adapted = [s["resps"] for s in _samples(lmms_runs["adapter"], task)]
        assert base != adapted, task


def test_rerun_skips_finished_tasks_and_refuses_other_settings(
    lmms_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = lmms_runs["base"]
    record = run / "utility" / "tasks" / "colour_vqa.json"
    before = record.read_bytes()
    base_args = [
        "utility",
        "--model",
        "tiny",
        "--include-path",
        str(lmms_runs["tasks"]),
        "--run-dir",
        str(run),
    ]
    # Finished tasks are not run again (the model is not even loaded: no task pending).
    assert main([*base_args, "--tasks", "colour_vqa", "--limit", "8"]) == 0
    assert record.read_bytes() == before
    assert "colour_vqa" in capsys.readouterr().out

    assert main([*base_args, "--tasks", "colour_vqa", "--limit", "4"]) == 2
    err = capsys.readouterr().err
    assert "colour_vqa" in err and "limit" in err and "Traceback" not in err

    # A safety run of another model in the same folder: its capability results would be mislabelled.
    other = run.parent / "run-other"
    other.mkdir()
    (other / "manifest.json").write_text(
        json.dumps({"result_fields": {"model": "someone/else", "adapter": None}})
    )
    assert main([*base_args[:-1], str(other), "--tasks", "colour_vqa"]) == 2
    assert "another model" in capsys.readouterr().err


def test_a_failing_task_keeps_the_finished_ones_and_is_one_line(
    lmms_runs: dict[str, Path], env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = env / "tasks-with-a-broken-one"
    shutil.copytree(lmms_runs["tasks"], tasks)
    broken = (tasks / "colour_vqa.yaml").read_text().replace("task: colour_vqa", "task: broken_task")
    (tasks / "broken_task.yaml").write_text(
        broken.replace(str(env / "colour-data"), str(env / "no-such-folder"))
    )
    run = env / "run-broken"
    args = ["utility", "--model", "tiny", "--tasks", "colour_vqa,broken_task", "--include-path", str(tasks),
            "--limit", "4", "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "task 'broken_task' failed" in err and "no-such-folder" in err and "Traceback" not in err
    # The finished task is kept, and metrics.json holds it (and only it: nothing half-written).
    assert sorted(p.name for p in (run / "utility" / "tasks").iterdir()) == ["colour_vqa.json"]
    metrics = json.loads((run / "utility" / "metrics.json").read_text())
    assert metrics["run"]["tasks"] == ["colour_vqa"]


@pytest.fixture(scope="module")
def causal_lm(env: Path) -> tuple[Path, Path]:
    """The built-in tiny text LM (``--model tiny-lm``) and a LoRA adapter on it."""
    from vlguard.models.resolve import ensure_tiny_model

    model = ensure_tiny_model("tiny-lm")
    return model, build_lora_adapter(model, env / "lm-adapter", vlm=False)


def test_lm_eval_local_task_with_an_adapter_is_what_lm_eval_itself_loads(
    env: Path, shared_data: Path, causal_lm: tuple[Path, Path]
) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from vlguard.utility import UtilityConfig, run_utility

    model, adapter = causal_lm
    tasks = write_lm_eval_tasks(env, shared_data)
    logged: dict[str, list[Any]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, adapter_arg in (("base", None), ("adapter", str(adapter)), ("base-again", None)):
        run = env / f"lm-{name}"
        metrics = run_utility(
            UtilityConfig(
                model="tiny-lm",
                adapter=adapter_arg,
                tasks=("sst2_slice",),
                include_path=str(tasks),
                limit=12,
                run_dir=str(run),
            )
        )
        row = next(r for r in metrics["metrics"] if r["primary"])
        samples = _read_jsonl(run / "utility" / "samples" / "sst2_slice.jsonl")
        assert metrics["run"]["engine"] == "lm-eval" and row["judge"] == "lm-eval" and row["n"] == 12
        assert row["value"] == pytest.approx(sum(s["acc"] for s in samples) / 12)
        logged[name] = [r[0][0] for s in samples for r in s["resps"]]
        rows[name] = metrics["metrics"]
    assert logged["base"] != logged["adapter"]
    # Same model, tasks and seed in a new folder: the same numbers.
    assert rows["base-again"] == rows["base"] and logged["base-again"] == logged["base"]

    # lm-eval loading the same folder and adapter itself gives the same log-likelihoods.
    own = simple_evaluate(
        model=HFLM(pretrained=str(model), peft=str(adapter), device="cpu", batch_size=4),
        tasks=["sst2_slice"],
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        limit=12,
        log_samples=True,
    )
    assert own is not None
    expected = [r[0][0] for s in own["samples"]["sst2_slice"] for r in s["resps"]]
    assert logged["adapter"] == pytest.approx(expected, abs=1e-4)


def test_an_engine_for_the_other_model_kind_is_a_clear_error(
    env: Path, causal_lm: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "utility",
                "--model",
                "tiny",
                "--tasks",
                "x",
                "--engine",
                "lm-eval",
                "--run-dir",
                str(env / "e1"),
            ]
        )
        == 2
    )
    assert "--engine lmms-eval" in capsys.readouterr().err
    model = "tiny-lm"
    assert (
        main(
            [
                "utility",
                "--model",
                model,
                "--tasks",
                "x",
                "--engine",
                "lmms-eval",
                "--run-dir",
                str(env / "e2"),
            ]
        )
        == 2
    )
    assert "--engine lm-eval" in capsys.readouterr().err
    assert not os.path.exists(env / "e1" / "utility" / "metrics.json")


class _StepCounter:
    """Counts the forward passes of a model (one per generated token after the prompt's)."""

    def __init__(self, model: Any) -> None:
        self.steps = 0
        self.handle = model.register_forward_hook(self._count)

    def _count(self, *args: Any) -> None:
        self.steps += 1


def _stop_string_from(text: str) -> str:
    """A word from the middle of a generated answer: where a task's stop string would end it."""
    words = text.split()
    assert len(words) >= 4, text
    return words[2]


def test_lmms_generation_stops_at_the_tasks_stop_string(env: Path) -> None:
    from lmms_eval.api.instance import Instance

    from vlguard.generation.hf import HFBackend
    from vlguard.utility.lmms_model import VLGuardLMMS

    backend = HFBackend("tiny-lm", batch_size=2, max_new_tokens=12)
    lmms = VLGuardLMMS(backend)

    def request(until: list[str]) -> Any:
        arguments = (
            "What is shown here? Describe it.",
            {"until": until, "max_new_tokens": 12},
            None,
            0,
            "t",
            "test",
        )
        return Instance(
            request_type="generate_until",
            arguments=arguments,
            idx=0,
            metadata={"task": "t", "doc_id": 0, "repeats": 1},
        )

    counter = _StepCounter(backend.model)
    (full,) = lmms.generate_until([request([])])
    assert full.token_counts is not None and full.token_counts.output_tokens == 12
    full_steps, counter.steps = counter.steps, 0
    stop = _stop_string_from(full.text)
    (stopped,) = lmms.generate_until([request([stop])])
    # The answer ends before the stop string, and the model was not run past it (not cut afterwards).
    assert stopped.text == full.text[: full.text.index(stop)].strip()
    assert stopped.token_counts is not None and stopped.token_counts.output_tokens < 12
    assert counter.steps == full_steps - (12 - stopped.token_counts.output_tokens)
    assert backend.stop_strings == () and backend.max_new_tokens == 12  # the loaded settings are back


def test_lm_eval_generation_stops_at_the_tasks_stop_string(env: Path) -> None:
    """vlguard's lm-eval model (lm-eval's own HFLM over the loaded model) stops during generation too."""
    from lm_eval.api.instance import Instance

    from vlguard.utility.models import ModelArgs, load_for_lm_eval

    lm, _ = load_for_lm_eval(ModelArgs("tiny-lm", batch_size=1))

    def request(until: list[str]) -> Any:
        arguments = (
            "What is shown here? Describe it.",
            {"until": until, "max_gen_toks": 12, "do_sample": False},
        )
        return Instance(request_type="generate_until", doc={}, arguments=arguments, idx=0)

    counter = _StepCounter(lm.model)
    (full,) = lm.generate_until([request(["<never>"])])
    full_steps, counter.steps = counter.steps, 0
    stop = _stop_string_from(full)
    (stopped,) = lm.generate_until([request([stop])])
    assert stopped == full[: full.index(stop)]
    assert counter.steps < full_steps


def test_lm_eval_prompts_carry_the_system_prompt(env: Path, shared_data: Path) -> None:
    """--system-prompt (or a preset's) reaches lm-eval as its system instruction, and the manifest."""
    from vlguard.utility import UtilityConfig, run_utility

    tasks = write_lm_eval_tasks(env, shared_data)
    run = env / "lm-system"
    config = UtilityConfig(
        model="tiny-lm",
        tasks=("sst2_slice",),
        include_path=str(tasks),
        limit=2,
        run_dir=str(run),
        system_prompt="You are a careful reviewer.",
    )
    run_utility(config)
    samples = _read_jsonl(run / "utility" / "samples" / "sst2_slice.jsonl")
    contexts = [pair[0] for s in samples for pair in s["arguments"]]  # (context, continuation) pairs
    assert contexts and all(c.startswith("You are a careful reviewer.") for c in contexts)
    manifest = json.loads((run / "utility" / "manifest.json").read_text())
    assert manifest["result_fields"]["system_prompt"] == "You are a careful reviewer."
    assert manifest["backend"]["system_prompt"] == "You are a careful reviewer."
