"""The paper recipes of `vlguard hft` against their tables in docs/hft.md, and the papers' settings they
carry (issue 19, items 3, 4, 6 and 7): a recipe and its table cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlguard.hft.config import HFTConfig, load_hft_config

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "hft.md"
PAPER_RECIPES = ("vaccine-sst2-llama2-7b.yaml", "lisa-sst2-llama2-7b.yaml", "booster-sst2-llama2-7b.yaml")
# A citation of the papers' code: a file and a line (or lines), e.g. `train.py:344-347,351`.
CITATION = re.compile(r"[\w./-]+\.(py|sh|md):\d+")


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row; ``\\|`` is a pipe inside a cell (the LoRA regexes)."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [part.strip().replace("\\|", "|") for part in parts]


def _code(cell: str) -> str:
    match = re.fullmatch(r"`(.*)`", cell)
    assert match, f"expected a `code` cell, got {cell!r}"
    return match.group(1)


def recipe_table(name: str, text: str | None = None) -> dict[str, dict[str, Any]]:
    """The rows of the table under ``### `name``` in docs/hft.md: setting -> value, reference, difference."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    lines = text.splitlines()
    start = lines.index(f"### `{name}`")
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append(_cells(line))
        elif rows:
            break
    header, separator, *body = rows
    assert header == ["setting", "value", header[2], "deliberate difference"] and set("".join(separator)) <= {
        "-"
    }
    table: dict[str, dict[str, Any]] = {}
    for cells in body:
        key, value, reference, difference = cells
        assert _code(key) not in table, f"{name}: {key} is listed twice"
        table[_code(key)] = {
            "value": yaml.safe_load(_code(value)),
            "reference": reference,
            "difference": difference,
        }
    return table


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested YAML mapping as dotted keys (lists are values, as in the config)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def disagreements(table: dict[str, dict[str, Any]], recipe: dict[str, Any]) -> list[str]:
    """Every way the table and the recipe differ (empty when they agree)."""
    problems = [f"{key}: in the recipe, not in the table" for key in sorted(set(recipe) - set(table))]
    problems += [f"{key}: in the table, not in the recipe" for key in sorted(set(table) - set(recipe))]
    problems += [
        f"{key}: the recipe says {recipe[key]!r}, the table {table[key]['value']!r}"
        for key in sorted(set(table) & set(recipe))
        if table[key]["value"] != recipe[key]
    ]
    return problems


def _recipe(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "configs" / "hft" / name).read_text(encoding="utf-8"))
    return flatten(loaded)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_every_recipe_setting_is_in_its_table_with_its_value(name: str) -> None:
    table = recipe_table(name)
    assert disagreements(table, _recipe(name)) == []
    for key, row in table.items():
        # every setting says where it comes from: a line of the paper's code, or "ours" (no counterpart)
        assert row["reference"].startswith(("ours", "none")) or CITATION.search(row["reference"]), (key, row)
        # ours / none without a citation must say why in the difference column, unless it changes nothing
        if row["reference"].startswith("none"):
            assert row["difference"], key
    # the recipe loads, and every table key is a config key
    load_hft_config(REPO / "configs" / "hft" / name)


def test_a_drifted_recipe_or_table_is_caught() -> None:
    """The comparison itself: a changed value, a key only in the recipe, a key only in the table."""
    name = "vaccine-sst2-llama2-7b.yaml"
    text = DOC.read_text(encoding="utf-8")
    recipe = _recipe(name)
    drifted = dict(recipe, **{"finetune.lr": 1.0e-4, "finetune.new_key": 3})
    del drifted["seed"]
    assert disagreements(recipe_table(name, text), drifted) == [
        "finetune.new_key: in the recipe, not in the table",
        "seed: in the table, not in the recipe",
        "finetune.lr: the recipe says 0.0001, the table 1e-05",
    ]
    edited = text.replace(
        "| `finetune.epochs` | `20` | `vlguard_poison_ratio.sh:27` |", "| `finetune.epochs` | `30` | x |"
    )
    assert disagreements(recipe_table(name, edited), recipe) == [
        "finetune.epochs: the recipe says 20, the table 30"
    ]


# ---- the papers' settings the recipes carry (issue 19) ----------------------------------------------------


def _config(name: str) -> HFTConfig:
    return load_hft_config(REPO / "configs" / "hft" / name)


def test_vaccine_aligns_with_lora_alpha_1() -> None:
    """Item 3: SFT.sh leaves --benign_dataset at its default, so train.py takes its alpha = 1 branch."""
    config = _config("vaccine-sst2-llama2-7b.yaml")
    assert (config.alignment.train.lora.r, config.alignment.train.lora.alpha) == (8, 1)
    assert (
        "`train.py:333`"
        in recipe_table("vaccine-sst2-llama2-7b.yaml")["alignment.train.lora.alpha"]["reference"]
    )


def test_the_gsm8k_lora_alpha_of_half_is_accepted() -> None:
    """docs/hft.md's GSM8K line sets finetune.lora.alpha=0.5 (Vaccine train.py:344-347): a float, not an int."""
    config = load_hft_config(
        REPO / "configs" / "hft" / "vaccine-sst2-llama2-7b.yaml",
        ["task.name=gsm8k", "finetune.lora.alpha=0.5"],
    )
    assert config.finetune.lora.alpha == 0.5
    assert "finetune.lora.alpha=0.5" in (REPO / "docs" / "hft.md").read_text()


def test_vaccine_finetune_accuracy_is_the_first_500_rows_by_substring(shared_data: Path) -> None:
    """Item 4: the FA run gets the first 500 validation rows (rows=500, not a hashed eval_limit) and the
    accuracy judge's substring match, from the sweep's settings."""
    from vlguard.benchmarks import load_benchmark
    from vlguard.hft.sweep import fa_eval_config
    from vlguard.judges import make_judge
    from vlguard.judges.base import JudgeInput

    config = _config("vaccine-sst2-llama2-7b.yaml")
    eval_config = fa_eval_config(config, "model", None, Path("fa"), None)
    assert eval_config.limit is None and dict(eval_config.bench_options) == {"rows": 500}
    assert {k: dict(v) for k, v in eval_config.judge_options.items()} == {"accuracy": {"match": "contains"}}
    samples = load_benchmark("sst2", data=str(shared_data / "sst2"), **eval_config.bench_options).samples
    assert [s.id for s in samples] == [f"sst2:dev:{i}" for i in range(500)]
    judge = make_judge("accuracy", **eval_config.judge_options["accuracy"])
    [verdict] = judge.judge(
        [JudgeInput("a", "q", "The sentiment is Positive.", reference="positive", subset="sst2")]
    )
    assert verdict.label == "correct"  # "label word appears anywhere" (sst2/pred_eval.py:107)


def test_every_task_option_reaches_training_and_evaluation(shared_data: Path) -> None:
    """Item 4: any benchmark option of the task is settable from a sweep (GSM8K's step-by-step prompt
    shapes the training pairs and the FA prompts alike; rows only selects evaluation rows)."""
    from vlguard.benchmarks import load_benchmark
    from vlguard.hft.config import key_values
    from vlguard.hft.sweep import fa_eval_config, load_pools

    config = load_hft_config(
        None,
        [
            "model.name_or_path=tiny-lm",
            "task.name=gsm8k",
            f"task.data={shared_data / 'gsm8k'}",
            "task.options=[step_by_step=true, rows=10]",
            "attack.harmful_ratios=[0.0]",
            "defences=[sft]",
        ],
    )
    options = dict(fa_eval_config(config, "m", None, Path("fa"), None).bench_options)
    assert options == {"step_by_step": True, "rows": 10}
    evaluated = load_benchmark("gsm8k", data=str(shared_data / "gsm8k"), **options).samples
    plain = load_benchmark("gsm8k", data=str(shared_data / "gsm8k"), rows=10).samples
    assert len(evaluated) == 10 and evaluated[0].prompt != plain[0].prompt
    pools = load_pools(config)
    assert len(pools.task.pairs) == 7473  # rows does not cut the training split
    step = evaluated[0].prompt.removeprefix(plain[0].prompt)
    assert step and all(p.instruction.endswith(step) for p in pools.task.pairs[:5])
    assert key_values(config.task.options) == options


def test_lisa_aligns_on_10000_pairs_of_2048_tokens_and_documents_k() -> None:
    """Item 6: train.py:240 (10,000 safe pairs), train.py:69-72 (model_max_length 2048); k has no source
    in Lisa's code and its table says so and what is used instead."""
    config = _config("lisa-sst2-llama2-7b.yaml")
    assert config.alignment.n_safety == 10000
    assert config.alignment.train.max_length == config.finetune.max_length == 2048
    k = recipe_table("lisa-sst2-llama2-7b.yaml")["defence.n_safety"]
    assert k["value"] == config.defence.n_safety
    assert k["reference"].startswith("none") and "train.py:435" in k["reference"] and k["difference"]


def test_booster_finetunes_with_its_main_tables_settings() -> None:
    """Item 7: smooth_poison_ratio.sh (n 1,000, p 0.1, lr 1e-5, batch 10), not vlguard_lamb.sh."""
    config = _config("booster-sst2-llama2-7b.yaml")
    assert (config.attack.n, config.attack.harmful_ratios, config.finetune.lr) == (1000, [0.1], 1e-5)
    assert config.finetune.global_batch_size == config.finetune.per_device_batch_size == 10
    assert (config.defence.aux_weight, config.defence.aux_batch_size) == (
        0.1,
        4,
    )  # vlguard_lamb.sh:18, trainer.py:65
    table = recipe_table("booster-sst2-llama2-7b.yaml")
    assert all("smooth_poison_ratio.sh" in table[k]["reference"] for k in ("attack.n", "finetune.lr"))
