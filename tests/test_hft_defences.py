"""The papers' defences in `vlguard hft`: every one in a sweep on the tiny text LM and on the tiny VLM.

A sweep with ``defences=[sft, vaccine, lisa, booster+vlguard-mix, repnoise]`` aligns the model once
plainly and once per alignment-stage defence (each in its own folder, with its training rule), starts
each cell from its defence's aligned model, and trains the Lisa cell with Lisa's rule. The update rules
themselves are checked step by step in ``test_train_defences.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hft_fixtures import write_hft_data
from vlguard.errors import ConfigError
from vlguard.hft.config import HFTConfig, load_hft_config
from vlguard.hft.data import HARMFUL, SAFETY, PairPool, draw, draw_last
from vlguard.hft.layout import Layout
from vlguard.hft.summary import read_summary
from vlguard.hft.sweep import run_sweep

DEFENCES = ["sft", "vaccine", "lisa", "booster+vlguard-mix", "repnoise"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hft_data(tmp_path_factory.mktemp("hft-defences-data"), n_heldout=4)


def _config(data: Path, out: Path, model: str, *overrides: str) -> HFTConfig:
    base = [
        f"model.name_or_path={model}",
        f"output_dir={out}",
        f"prompt_format={'alpaca' if model == 'tiny-lm' else 'chat'}",
        f"task.data={data / 'sst2'}",
        "task.eval_limit=2",
        "task.max_new_tokens=2",
        "harmful.source=advbench",
        f"harmful.data={data / 'advbench'}",
        f"safety.data={data / 'beavertails.jsonl'}",
        "attack.n=8",
        "attack.harmful_ratios=[0.25]",
        f"defences=[{', '.join(DEFENCES)}]",
        "defence.n_safety=2",
        "defence.lisa.n_safety=4",
        "defence.lisa.alignment_steps=1",
        "defence.lisa.finetune_steps=1",
        "defence.booster.n_harmful=4",
        "defence.booster.batch_size=2",
        "defence.repnoise.n_harmful=4",
        "alignment.enabled=true",
        "alignment.n_safety=4",
        "alignment.n_task=4",
        f"alignment.train.method={'full' if model == 'tiny-lm' else 'lora'}",
        "alignment.train.lora.r=4",
        "alignment.train.max_steps=1",
        # One SGD step at the full rate (a first AdamW step is about lr × the gradient's sign, the same for
        # most rules on a tiny model; a warmup would make the only step's rate 0)
        "alignment.train.optim=sgd",
        "alignment.train.lr=0.05",
        "alignment.train.lr_scheduler=constant",
        "alignment.train.warmup_ratio=0",
        "alignment.train.global_batch_size=4",
        "alignment.train.per_device_batch_size=4",
        "alignment.train.progress=false",
        "finetune.method=lora",
        "finetune.lora.r=4",
        "finetune.max_steps=2",
        "finetune.global_batch_size=4",
        "finetune.per_device_batch_size=4",
        "finetune.progress=false",
        f"harmful_score.data={data / 'heldout.jsonl'}",
        "harmful_score.judge=refusal",
        "harmful_score.max_new_tokens=2",
        "eval.batch_size=8",
    ]
    return load_hft_config(None, [*base, *overrides])


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-lm", "tiny"])
def test_every_defence_runs_in_a_sweep(
    model: str, data: Path, tmp_path: Path, tiny_cache: Path, one_torch_thread: None
) -> None:
    import torch

    from vlguard.train.config import load_config

    out = tmp_path / "out"
    # The VLM sweep skips the reference evaluations (the text LM's checks them) to stay short.
    extra = [] if model == "tiny-lm" else ["eval.reference=false"]
    result = run_sweep(_config(data, out, model, *extra), progress=False)
    assert result.summary is not None and result.missing == ()
    rows = read_summary(result.summary)
    assert [r["defence"] for r in rows] == DEFENCES
    assert all(0 <= r["harmful_score"] <= 1 and 0 <= r["finetune_accuracy"] <= 1 for r in rows)

    layout = Layout(out)
    final = "model" if model == "tiny-lm" else "merged"
    starts = {}
    for variant in (None, "vaccine", "booster", "repnoise"):
        stage = layout.alignment_with(variant)
        settings = load_config(stage.train_run / "train_config.yaml")
        assert settings.defence.name == (variant or "none")
        starts[variant] = stage.train_run / "model" if final == "model" else stage.merged
        assert (starts[variant] / "config.json").is_file()
        if model == "tiny-lm":
            assert layout.reference_with(variant).evaluated()
    # each rule aligned the same data to different weights
    plain = _weights(starts[None])
    for variant in ("vaccine", "booster", "repnoise"):
        aligned = _weights(starts[variant])
        assert any(not torch.allclose(plain[k], aligned[k]) for k in plain), variant

    # Booster's and RepNoise's harmful pairs are drawn beside (never among) the user sets' harmful pairs
    cell_harmful = {r["messages"][0]["content"][0]["text"] for r in _rows(out / "cells/p0.25-sft/train.jsonl")
                    if r["source"] == HARMFUL}  # fmt: skip
    booster_stage = layout.alignment_with("booster")
    booster_harmful = {r["messages"][0]["content"][0]["text"] for r in _rows(booster_stage.defence_data)}
    assert len(booster_harmful) == 4 and len(cell_harmful) == 2 and not booster_harmful & cell_harmful
    booster_config = load_config(booster_stage.train_run / "train_config.yaml")
    assert booster_config.defence.data == str(booster_stage.defence_data)
    assert (booster_config.defence.booster.batch_size, booster_config.defence.booster.lamb) == (2, 5.0)

    # each cell starts from its defence's aligned model; the composed cell also mixes in safety pairs
    for name, variant in (("sft", None), ("vaccine", "vaccine"), ("booster+vlguard-mix", "booster")):
        cell = json.loads((out / f"cells/p0.25-{name}/stage.json").read_text())
        # recorded relative to the sweep folder (so that a moved sweep resumes)
        assert (out / cell["start_model"]).resolve() == Path(starts[variant]).resolve()
        assert load_config(out / f"cells/p0.25-{name}/train/train_config.yaml").defence.name == "none"
    mixed = _rows(out / "cells/p0.25-booster+vlguard-mix/train.jsonl")
    assert sum(r["source"] == SAFETY for r in mixed) == 2

    # the Lisa cell trains with Lisa's rule on its own safety pairs
    lisa = out / "cells/p0.25-lisa"
    lisa_config = load_config(lisa / "train" / "train_config.yaml")
    assert lisa_config.defence.name == "lisa" and lisa_config.defence.data == str(lisa / "defence_data.jsonl")
    assert (lisa_config.defence.lisa.alignment_steps, lisa_config.defence.lisa.finetune_steps) == (1, 1)
    assert len(_rows(lisa / "defence_data.jsonl")) == 4
    provenance = json.loads((lisa / "train" / "model" / "vlguard_train.json").read_text())
    assert provenance["defence"]["counts"] == {"defence": 4}
    assert json.loads((lisa / "stage.json").read_text())["counts"]["rule_safety"] == 4


@pytest.mark.slow
def test_a_defence_setting_changed_on_rerun_stops_its_stages_only(
    data: Path, tmp_path: Path, tiny_cache: Path, one_torch_thread: None
) -> None:
    """A rerun with another λ for Booster stops at Booster's alignment stage; the plain stage accepts it."""
    from vlguard.errors import RunMismatchError

    out = tmp_path / "out"
    quick = ["defences=[sft, booster]", "eval.reference=false", "finetune.max_steps=1"]
    assert run_sweep(_config(data, out, "tiny-lm", *quick), progress=False).summary is not None
    with pytest.raises(RunMismatchError, match=r"alignment-booster .*defence\.settings\.lamb"):
        run_sweep(_config(data, out, "tiny-lm", *quick, "defence.booster.lamb=1"), progress=False)


def test_too_few_harmful_pairs_for_the_alignment_and_the_users_stop_before_training(
    data: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    out = tmp_path / "out"
    config = _config(data, out, "tiny-lm", "defences=[booster]", "defence.booster.n_harmful=11")
    with pytest.raises(ConfigError, match="11 harmful pairs requested beside the 2 of the user sets"):
        run_sweep(config, progress=False)
    assert not (out / "alignment").exists()


def test_draw_last_is_disjoint_from_every_smaller_draw() -> None:
    from vlguard.hft.data import Pair

    pool = PairPool(HARMFUL, tuple(Pair(f"h{i}", HARMFUL, f"q{i}", "a") for i in range(10)), {"kind": "test"})
    last = draw_last(pool, 4, seed=3, beside=6)
    assert len(last) == 4
    assert not set(last) & set(draw(pool, 6, seed=3))
    assert set(last) | set(draw(pool, 6, seed=3)) == set(pool.pairs)
    with pytest.raises(ConfigError, match="beside the 7"):
        draw_last(pool, 4, seed=3, beside=7)


def test_the_tiny_defences_config_is_tiny_cpu_with_the_defences() -> None:
    """configs/hft/defences-tiny-cpu.yaml differs from tiny-cpu.yaml only in the defences and their settings."""
    import dataclasses

    root = Path(__file__).resolve().parents[1] / "configs" / "hft"
    plain = dataclasses.asdict(load_hft_config(root / "tiny-cpu.yaml"))
    every = dataclasses.asdict(load_hft_config(root / "defences-tiny-cpu.yaml"))
    differing = {k for k in plain.keys() | every.keys() if plain.get(k) != every.get(k)}
    assert differing == {"output_dir", "defences", "defence"}
    assert {
        k: v for k, v in every["defence"].items() if k in plain["defence"] and not isinstance(v, dict)
    } == {k: v for k, v in plain["defence"].items() if not isinstance(v, dict)}
    names = {part for entry in every["defences"] for part in entry.split("+")}
    assert names >= {"sft", "vlguard-mix", "vaccine", "lisa", "booster", "repnoise"}
