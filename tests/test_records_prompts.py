"""The shared records' optional fields and the prompt formats (Alpaca strings, chat user text)."""

from __future__ import annotations

import pytest

from vlguard.benchmarks import BENCHMARKS, default_judges
from vlguard.errors import ConfigError
from vlguard.evaluate import EvalConfig
from vlguard.prompts import alpaca_prompt, user_text
from vlguard.records import Sample


def _sample(**kwargs: object) -> Sample:
    base = dict(
        id="x:1",
        benchmark="b",
        subset="s",
        prompt="Say hi.",
        image=None,
        reference=None,
        category=None,
        subcategory=None,
        should_refuse=False,
    )
    return Sample(**{**base, **kwargs})  # type: ignore[arg-type]


def test_optional_sample_fields_are_left_out_of_the_json_when_unset() -> None:
    plain = _sample().to_dict()
    assert "input" not in plain and "intent" not in plain
    with_input = _sample(input="a film").to_dict()
    assert with_input["input"] == "a film"
    assert Sample(**with_input) == _sample(input="a film")


def test_alpaca_prompt_is_the_stanford_alpaca_string() -> None:
    # Stanford Alpaca's PROMPT_DICT, as the harmful fine-tuning papers use it.
    assert alpaca_prompt("Add 2 and 3.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:"
    )
    assert alpaca_prompt("Classify.", "great film") == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nClassify.\n\n### Input:\ngreat film\n\n### Response:"
    )


def test_chat_user_text_puts_the_input_after_a_blank_line() -> None:
    assert user_text("Classify.") == "Classify."
    assert user_text("Classify.", "great film") == "Classify.\n\ngreat film"


def test_eval_config_takes_the_benchmarks_default_judges() -> None:
    config = EvalConfig(model="tiny", bench="xstest")
    assert config.resolve().judges == default_judges("xstest") == BENCHMARKS["xstest"].judges
    assert EvalConfig(model="tiny", bench="xstest", judges=("refusal-paper",)).judges == ("refusal-paper",)
    with pytest.raises(ConfigError, match="unknown benchmark"):
        EvalConfig(model="tiny", bench="nosuch")
