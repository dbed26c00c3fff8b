"""Training configs: every shipped recipe loads, dotted overrides are typed, unknown keys are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlguard.errors import ConfigError
from vlguard.train.config import TrainConfig, describe_fields, dump_config, load_config
from vlguard.train.trainer import gradient_accumulation_steps

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs" / "train").glob("*.yaml"))


def test_all_recipes_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"posthoc-lora", "posthoc-full", "mixed-lora", "mixed-full", "tiny-cpu"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_loads_and_starts_with_its_command(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "vlguard" in first and f"configs/train/{path.name}" in first
    assert config.model.name_or_path
    # The resolved config (saved with checkpoints) loads back to the same config.
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump_config(config))
    assert load_config(resolved) == config


def test_llava_recipe_defaults() -> None:
    full, lora = (
        load_config(REPO / "configs/train/posthoc-full.yaml"),
        load_config(REPO / "configs/train/posthoc-lora.yaml"),
    )
    assert (full.method, full.lr, full.lr_scheduler, full.warmup_ratio, full.epochs) == (
        "full",
        2e-5,
        "cosine",
        0.03,
        1.0,
    )
    assert (full.global_batch_size, full.max_length) == (128, 2048)
    assert (lora.method, lora.lr, lora.projector_lr, lora.lora.r, lora.lora.alpha) == (
        "lora",
        2e-4,
        2e-5,
        128,
        256,
    )
    assert full.freeze_vision_tower and lora.freeze_vision_tower
    assert full.data.n_helpfulness == 5000 and full.data.recipe == "posthoc"


def test_dotted_overrides_are_typed(tmp_path: Path) -> None:
    config = load_config(
        REPO / "configs/train/posthoc-lora.yaml",
        [
            "lr=1e-5",
            "lora.r=64",
            "data.image_mode=blank",
            "report_to=tensorboard,wandb",
            "model.revision=null",
            "train_projector=false",
            "projector_lr=none",
        ],
    )
    assert config.lr == 1e-5 and isinstance(config.lr, float)
    assert config.lora.r == 64 and config.lora.alpha == 256  # untouched keys keep the file's value
    assert config.data.image_mode == "blank" and config.report_to == ["tensorboard", "wandb"]
    assert config.model.revision is None and config.train_projector is False and config.projector_lr is None
    # a string field keeps digits as text
    assert load_config(None, ["model.name_or_path=123"]).model.name_or_path == "123"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lora.rr=3"], "unknown config key 'lora.rr'"),
        (["learning_rate=1e-5"], "unknown config key 'learning_rate'"),
        (["data.nope.deeper=1"], "unknown config key 'data.nope'"),
        (["lr=fast"], "'lr': expected a number"),
        (["lora.r=1.5"], "'lora.r': expected an integer"),
        (["method=qlora"], "'method': 'qlora' is not one of lora, full"),
        (["train_projector=maybe"], "'train_projector': expected true or false"),
        (["lora=8"], "'lora': expected a section"),
        (["lr"], "not of the form key=value"),
    ],
)
def test_bad_overrides_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(REPO / "configs/train/tiny-cpu.yaml", overrides)


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name_or_path: x\nlora:\n  rank: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'lora\.rank'"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="a config is a mapping"):
        load_config(path)
    path.write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_every_field_has_help() -> None:
    rows = describe_fields()
    assert {key for key, _, _ in rows} >= {"lr", "lora.r", "data.recipe", "model.name_or_path"}
    assert all(text for _, _, text in rows)


def test_gradient_accumulation_comes_from_the_global_batch() -> None:
    config = TrainConfig(global_batch_size=128, per_device_batch_size=16)
    assert gradient_accumulation_steps(config, world_size=1) == 8
    assert gradient_accumulation_steps(config, world_size=8) == 1
    with pytest.raises(ConfigError, match="smaller than"):
        gradient_accumulation_steps(config, world_size=16)


def test_cli_reports_config_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from vlguard.cli.main import main

    assert main(["train", str(REPO / "configs/train/tiny-cpu.yaml"), "lora.rr=3"]) == 2
    assert "unknown config key 'lora.rr'" in capsys.readouterr().err
    assert main(["train", str(REPO / "configs/train/tiny-cpu.yaml"), "lr=3e-4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 3e-4 and printed["model"]["name_or_path"] == "tiny"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=nan", "'lr': must be > 0, got nan"),
        ("lr=-5", "'lr': must be > 0, got -5.0"),
        ("lr=0", "'lr': must be > 0"),
        ("lr=inf", "'lr': must be > 0, got inf"),
        ("projector_lr=-1e-5", "'projector_lr'"),
        ("warmup_ratio=3", "'warmup_ratio': must be >= 0 and < 1"),
        ("epochs=0", "'epochs'"),
        ("max_steps=0", "'max_steps': must be -1"),
        ("weight_decay=-0.1", "'weight_decay'"),
        ("lora.dropout=1", "'lora.dropout'"),
        ("lora.r=0", "'lora.r'"),
        ("save_total_limit=0", "'save_total_limit'"),
        ("seed=-1", "'seed'"),
        ("data.n_helpfulness=-3", "'data.n_helpfulness'"),
        ("dataloader_num_workers=-2", "'dataloader_num_workers'"),
    ],
)
def test_values_out_of_range_are_refused_when_the_config_loads(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, ["model.name_or_path=tiny", override])


def test_yaml_files_that_cannot_be_read_are_config_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("lr: " + "[" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("run_name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    nan = tmp_path / "nan.yaml"
    nan.write_text("lr: .nan\n")
    with pytest.raises(ConfigError, match=rf"{nan}: config key 'lr'"):
        load_config(nan)
    surrogate = tmp_path / "surrogate.yaml"
    surrogate.write_text('output_dir: "runs/\\ud800"\n')
    with pytest.raises(ConfigError, match="'output_dir': holds a lone UTF-16 surrogate"):
        load_config(surrogate)


def test_bad_lr_writes_nothing_and_loads_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vlguard.cli.main import main

    out = tmp_path / "run"
    for value in ("nan", "-5"):
        assert main(["train", f"lr={value}", "model.name_or_path=tiny", f"output_dir={out}"]) == 2
        err = capsys.readouterr().err
        assert "config key 'lr'" in err and "Traceback" not in err
    assert not out.exists()
