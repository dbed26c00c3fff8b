"""`vlguard hft` configs: the shipped recipes load, every mistake is one clear error, sharding."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlguard.errors import ConfigError
from vlguard.hft.config import HFTConfig, hft_config_keys, key_values, load_hft_config
from vlguard.hft.layout import Cell
from vlguard.hft.sweep import parse_shard, plan_cells, shard_cells

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs" / "hft").glob("*.yaml"))
VALID = ["model.name_or_path=tiny", "output_dir=/tmp/x"]


def test_recipes_are_shipped_and_load() -> None:
    names = {p.name for p in RECIPES}
    assert "tiny-cpu.yaml" in names and len(names) >= 4
    for path in RECIPES:
        config = load_hft_config(path)
        assert config.model.name_or_path
        # every recipe starts with the command that runs it
        assert path.read_text().startswith("# vlguard hft configs/hft/" + path.name), path


def test_dotted_overrides_reach_nested_sections() -> None:
    config = load_hft_config(
        None,
        [
            *VALID,
            "attack.harmful_ratios=[0.0, 0.05]",
            "finetune.lr=1e-5",
            "finetune.lora.r=8",
            "defences=sft",
        ],
    )
    assert config.attack.harmful_ratios == [0.0, 0.05]
    assert (config.finetune.lr, config.finetune.lora.r) == (1e-5, 8)
    assert config.defences == ["sft"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("attack.harmfull_ratios=[0.1]", "unknown config key 'attack.harmfull_ratios'"),
        ("attack.harmful_ratios=[0.1, 1.5]", r"1.5 is outside \[0, 1\]"),
        ("attack.harmful_ratios=[-0.1]", r"outside \[0, 1\]"),
        ("attack.harmful_ratios=[]", "is empty"),
        ("attack.harmful_ratios=[0.1, 0.1]", "same number of harmful samples twice"),
        ("attack.n=0", "'attack.n' must be at least 1"),
        ("defences=[sft, lissa]", "unknown defence 'lissa'"),
        ("defences=[vlguard-mix+booster]", "alignment-stage defence .* then '\\+'"),
        ("defences=[booster+vaccine]", "one fine-tuning-stage defence"),
        ("defences=[booster+sft]", "one fine-tuning-stage defence"),
        ("defences=[booster+lisa+vlguard-mix]", "a composition is one"),
        ("defences=[booster]", "set alignment.enabled=true"),
        ("defence.vaccine.rho=0", r"'defence\.vaccine\.rho': must be > 0"),
        ("defence.lisa.alignment_steps=0", r"'defence\.lisa\.alignment_steps': must be >= 1"),
        ("defence.booster.n_harmful=0", r"'defence\.booster\.n_harmful' must be at least 1"),
        ("finetune.defence.name=vaccine", "'finetune.defence' is set by vlguard hft"),
        ("defences=[sft, sft]", "lists a defence twice"),
        ("defence.n_safety=-1", "defence.n_safety"),
        ("finetune.model.name_or_path=other", "'finetune.model' is set by vlguard hft"),
        ("finetune.output_dir=/elsewhere", "'finetune.output_dir' is set by vlguard hft"),
        ("alignment.train.seed=3", "'alignment.train.seed' is set by vlguard hft"),
        ("finetune.safety_loss.data=x.jsonl", "'finetune.safety_loss' is set by vlguard hft"),
        ("harmful_score.options=[max_prompts]", "is not KEY=VALUE"),
        ("safety.with_images=true", "applies to safety.source=vlguard only"),
        ("task.eval_limit=0", "task.eval_limit"),
        ("finetune.lr=fast", "'finetune.lr': expected a number"),
        ("finetune.lr=-1e-5", "'finetune.lr': must be > 0"),
        ("alignment.train.lora.dropout=1", "'alignment.train.lora.dropout': must be >= 0 and < 1"),
        ("harmful.rows=five", r"'harmful.rows': option rows='five'"),
        ("safety.rows=9:3", r"'safety.rows': option rows='9:3' selects no rows"),
        ("harmful.half=test", "'harmful.half': 'test' is not one of dev, heldout"),
        (
            ("harmful.source=advbench", "harmful.rows=1:"),
            "'harmful.rows' applies to BeaverTails-format sources",
        ),
        ("draws=random", "'draws': 'random' is not one of seeded, first"),
        (
            ("draws=first", "alignment.enabled=true", "alignment.n_task=5"),
            "'alignment.n_task': with draws=first",
        ),
        ("eval.seen_prompts=ignore", "'eval.seen_prompts': 'ignore' is not one of drop, keep, error"),
        ("task.options=[rows]", "'task.options': 'rows' is not KEY=VALUE"),
    ],
)
def test_mistakes_are_one_clear_error(override: str | tuple[str, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_hft_config(None, [*VALID, *((override,) if isinstance(override, str) else override)])


def test_a_missing_model_and_a_bad_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.name_or_path is required"):
        load_hft_config(None, ["output_dir=/tmp/x"])
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name_or_path: tiny\nattack:\n  n: many\n")
    with pytest.raises(ConfigError, match=rf"{path}: config key 'attack.n': expected an integer"):
        load_hft_config(path)


def test_list_keys_covers_the_nested_training_sections() -> None:
    keys = {key for key, _, _ in hft_config_keys()}
    assert {
        "attack.harmful_ratios",
        "defence.aux_weight",
        "finetune.lora.r",
        "alignment.train.lr",
        "harmful_score.judge",
    } <= keys
    assert all(text for _, _, text in hft_config_keys())


def test_key_values_parse_json_values() -> None:
    assert key_values(["max_prompts=1000", "mode=harm", "flag=true"]) == {
        "max_prompts": 1000,
        "mode": "harm",
        "flag": True,
    }


def test_cells_and_shards() -> None:
    config = load_hft_config(
        None, [*VALID, "attack.harmful_ratios=[0.0, 0.1, 0.2]", "defences=[sft, vlguard-mix]"]
    )
    cells = plan_cells(config)
    assert [c.name for c in cells] == [
        "p0-sft", "p0-vlguard-mix", "p0.1-sft", "p0.1-vlguard-mix", "p0.2-sft", "p0.2-vlguard-mix",
    ]  # fmt: skip
    for k in (1, 2, 4, 7):
        shards = [shard_cells(cells, i, k) for i in range(k)]
        flat = [c for shard in shards for c in shard]
        assert sorted(flat, key=cells.index) == cells and len(flat) == len(cells)  # each cell exactly once
    assert shard_cells(cells, 1, 2) == [cells[1], cells[3], cells[5]]
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1", "0/0"):
        with pytest.raises(ConfigError, match="expected I/K"):
            parse_shard(bad)
    assert Cell(0.125, "sft").name == "p0.125-sft"


def test_defaults_are_the_papers() -> None:
    config = HFTConfig()
    assert (config.attack.n, config.attack.harmful_ratios) == (1000, [0.1])
    assert (config.defence.n_safety, config.defence.aux_weight, config.defence.aux_batch_size) == (
        100,
        0.1,
        4,
    )
    assert config.harmful_score.judge == "beaver-dam"


def test_cli_resolves_a_recipe_the_way_train_does(capsys: pytest.CaptureFixture[str]) -> None:
    """`vlguard hft` shares `vlguard train`'s recipe handling: keys, a printed config, overrides, errors."""
    import yaml

    from vlguard.cli.main import main

    assert main(["hft", "--list-keys"]) == 0
    listed = capsys.readouterr().out
    assert "harmful_score.judge = " in listed and "attack.harmful_ratios = " in listed
    assert main(["hft", str(REPO / "configs/hft/tiny-cpu.yaml"), "seed=7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["model"]["name_or_path"] == "tiny-lm"
    # Without a file, the first positional is an override (no sweep runs: only the printout).
    assert main(["hft", "model.name_or_path=tiny-lm", "seed=5", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 5
    assert main(["hft"]) == 2
    assert "give a config file, e.g. vlguard hft configs/hft/tiny-cpu.yaml" in capsys.readouterr().err
    assert main(["hft", str(REPO / "configs/hft/tiny-cpu.yaml"), "attack.nn=3"]) == 2
    assert "attack.nn" in capsys.readouterr().err
