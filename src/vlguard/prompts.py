"""Prompt formats shared by evaluation and training: how an instruction and its task input become text.

Two formats:

* ``chat`` (the default): the model's own chat template renders the messages; the user turn's text is
  ``user_text(instruction, input)``, the instruction followed by a blank line and the input.
* ``alpaca``: the Stanford Alpaca prompt, word for word as in its ``train.py`` (``PROMPT_DICT``), which
  the harmful fine-tuning papers (Vaccine, Lisa, Booster) use for base models without a chat template.
  Keeping the exact strings is what makes Harmful Score and Finetune Accuracy comparable with theirs.
  The prompt ends at ``### Response:`` with no newline, and training appends the response and the EOS
  token right after it, as Alpaca's ``train.py`` (and Vaccine's and Lisa's copies of it) do; Booster's
  evaluation adds a newline after ``### Response:``, a one-token difference we do not follow.
"""

from __future__ import annotations

from typing import Literal

PromptFormat = Literal["chat", "alpaca"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("chat", "alpaca")

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


def alpaca_prompt(instruction: str, input: str | None = None) -> str:
    """The Alpaca prompt for ``instruction`` (and ``input``), ending where the response starts."""
    if input:
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
