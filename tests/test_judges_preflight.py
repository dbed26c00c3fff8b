"""Model judges are checked before anything is generated (``judge.check()``): a cascade whose model judge
cannot load, or a guard without its weights, is a one-line error before the model under test loads, not a
failure after hours of generation. And ``llama-guard`` without weights is a one-line error, not a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_evaluate_hardening import _tiny_eval, no_model_load  # noqa: F401 (a fixture)
from vlguard.cli.main import main
from vlguard.errors import ConfigError
from vlguard.judges import make_judge
from vlguard.judges.base import JudgeInput, preflight
from vlguard.judges.llama_guard import LlamaGuardJudge
from vlguard.judges.local_model import check_weights
from vlguard.preflight import check_judges

MISSING = "/nonexistent/judge-model"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--judge", "cascade", "--judge-option", f"cascade.model_judge_options={json.dumps({'model': MISSING})}"],
            f"cannot load judge model '{MISSING}': no such folder",
        ),
        (
            ["--judge", "cascade", "--judge-option", "cascade.axis=harm", "--judge-option",
             "cascade.model_judge=beaver-dam", "--judge-option",
             f"cascade.model_judge_options={json.dumps({'model': MISSING})}"],
            f"cannot load judge model '{MISSING}'",
        ),
        (
            # HF_HUB_OFFLINE=1 (tests/conftest.py): a Hub id must already be in the local cache
            ["--judge", "llama-guard", "--judge-option", "llama-guard.model=nobody/no-such-guard"],
            "'nobody/no-such-guard'.*not in the local huggingface_hub cache",
        ),
        (["--judge", "wildguard", "--judge-option", f"wildguard.model={MISSING}"], "no such folder"),
    ],
)  # fmt: skip
def test_model_judges_that_cannot_load_fail_before_generation(
    extra: list[str],
    message: str,
    tmp_path: Path,
    no_model_load: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    assert main(_tiny_eval(run_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not run_dir.exists()


def test_check_weights_of_a_local_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        check_weights(str(tmp_path), None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no \.safetensors weights"):
        check_weights(str(tmp_path), None)
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_weights(str(tmp_path), None)  # found: the load itself reads them later
    with pytest.raises(ConfigError, match="not a Hub repo id"):
        check_weights("not a model", None)


def test_check_judges_runs_every_judges_check_and_offline_judges_have_none(tmp_path: Path) -> None:
    assert [j.name for j in check_judges(["refusal", "harm"], {})] == ["refusal", "harm"]
    with pytest.raises(ConfigError, match="cannot load judge model"):
        check_judges(["refusal", "beaver-dam"], {"beaver-dam": {"model": str(tmp_path / "none")}})
    # the llm-judge over an API is not called by the check: a server that needs no key passes, the public
    # endpoint without its key does not (issue 22 item 10); a local one is checked
    preflight(
        make_judge("llm-judge", mode="harm", base_url="http://127.0.0.1:9/v1", api_key_env="VLGUARD_NO_KEY")
    )
    with pytest.raises(ConfigError, match="needs an API key in the environment variable VLGUARD_NO_KEY"):
        preflight(make_judge("llm-judge", mode="harm", api_key_env="VLGUARD_NO_KEY"))
    with pytest.raises(ConfigError, match="cannot load judge model"):
        preflight(make_judge("llm-judge", mode="harm", backend="hf", model=str(tmp_path / "none")))
    preflight(make_judge("llm-judge", mode="harm", backend="hf", model="tiny-lm"))


def test_llama_guard_without_weights_is_a_one_line_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="cannot load judge model") as raised:
        LlamaGuardJudge(str(tmp_path / "missing")).judge([JudgeInput("a", "q", "r")])
    assert "\n" not in str(raised.value).strip()
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "q", "response": "r"}) + "\n")
    argv = ["judge", "--judge", "llama-guard", "--judge-option", f"llama-guard.model={tmp_path / 'missing'}"]
    assert main([*argv, "--input", str(src), "--output", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot load judge model") and "Traceback" not in err and "OSError" not in err
    )
    assert not (tmp_path / "out.jsonl").exists()
