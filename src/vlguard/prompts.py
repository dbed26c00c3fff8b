"""Prompt formats shared by evaluation and training: how an instruction and its task input become text.

Three formats:

* ``chat`` (the default): the model's own chat template renders the messages; the user turn's text is
  ``user_text(instruction, input)``, the instruction followed by a blank line and the input.
* ``alpaca``: the Stanford Alpaca prompt, word for word as in its ``train.py`` (``PROMPT_DICT``), which
  the harmful fine-tuning papers use for base models without a chat template. Keeping the exact strings
  is what makes Harmful Score and Finetune Accuracy comparable with theirs. The prompt ends at
  ``### Response:`` with no newline, and training appends the response and the EOS token right after
  it, as Alpaca's ``train.py`` and Vaccine's and Lisa's copies of it do (GitHub ``git-disl/Vaccine``
  ``train.py:41-52``, ``git-disl/Lisa`` ``train.py:42-53``).
* ``alpaca-newline``: the same prompt with a newline after ``### Response:``, as Booster trains and evaluates
  (GitHub ``git-disl/Booster`` ``utils.py:12-23`` ``PROMPT_DICT``; ``poison/evaluation/pred.py:125``,
  ``sst2/pred_eval.py:113``).
"""

from __future__ import annotations

from typing import Literal

PromptFormat = Literal["chat", "alpaca", "alpaca-newline"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("chat", "alpaca", "alpaca-newline")
# The formats that render Alpaca's prompt (text only, one user turn, no system turn).
ALPACA_FORMATS: tuple[PromptFormat, ...] = ("alpaca", "alpaca-newline")

ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def user_text(instruction: str, input: str | None = None) -> str:
    """The user turn of a chat: the instruction, then (when there is one) a blank line and the input."""
    return instruction if not input else f"{instruction}\n\n{input}"


def is_alpaca(prompt_format: str) -> bool:
    """Whether ``prompt_format`` renders Alpaca's prompt (``alpaca`` or ``alpaca-newline``)."""
    return prompt_format in ALPACA_FORMATS


def alpaca_prompt(instruction: str, input: str | None = None, prompt_format: str = "alpaca") -> str:
    """The Alpaca prompt for ``instruction`` (and ``input``), ending where the response starts: at
    ``### Response:``, or after its newline for ``prompt_format="alpaca-newline"`` (Booster's)."""
    if input:
        prompt = ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    else:
        prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
    return prompt + "\n" if prompt_format == "alpaca-newline" else prompt
