"""Local capability tasks in the engines' own YAML format, and tiny models, for the `vlguard utility` tests.

lmms-eval tasks: ``colour_vqa`` (generated one-colour images, "what colour?", exact match) and
``colour_mc`` (the same images, multiple choice by log-likelihood). Both engines: ``sst2_slice``, the
first rows of SST-2's dev split from ../shared/data (multiple choice, text only). The data paths in
the YAML files are absolute, so the files are written per test session under a temporary folder.
The text LM is vlguard's built-in ``tiny-lm``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
# Questions of different lengths, so that batched contexts need padding.
QUESTIONS = (
    "What colour is this image?",
    "Which colour fills the whole picture?",
    "Name the colour.",
    "Look at the image carefully and say which single colour it shows.",
)
N_COLOUR_DOCS = 8


def write_colour_data(root: Path) -> Path:
    """``N_COLOUR_DOCS`` one-colour PNGs and an imagefolder ``metadata.jsonl`` (question, answer, target)."""
    root.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    rows = []
    for i in range(N_COLOUR_DOCS):
        name = names[i % len(names)]
        file_name = f"img{i}.png"
        Image.new("RGB", (40 + 4 * i, 32), COLOURS[name]).save(root / file_name)
        rows.append(
            {
                "file_name": file_name,
                "index": i,
                "question": QUESTIONS[i % len(QUESTIONS)],
                "answer": name,
                "target": i % len(names),
            }
        )
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def _sst2_yaml(task: str, dev_tsv: Path) -> str:
    return f"""task: {task}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {dev_tsv}
  delimiter: "\\t"
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{content}}}}\\nQuestion: Is this sentence positive or negative?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_lmms_tasks(root: Path, shared_data: Path) -> Path:
    """A folder of lmms-eval task files: colour_vqa, colour_mc, sst2_slice."""
    data = write_colour_data(root / "colour-data")
    tasks = root / "lmms-tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    common = f"""dataset_path: imagefolder
dataset_kwargs:
  data_dir: {data}
test_split: train
doc_to_visual: image
metadata:
  version: 1.0
"""
    (tasks / "colour_vqa.yaml").write_text(
        "task: colour_vqa\n"
        + common
        + """output_type: generate_until
doc_to_text: "{{question}}\\nAnswer with one word."
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 6
  until: ["\\n"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
""",
        encoding="utf-8",
    )
    (tasks / "colour_mc.yaml").write_text(
        "task: colour_mc\n"
        + common
        + """output_type: multiple_choice
doc_to_text: "{{question}} Answer:"
doc_to_choice: ["red", "green", "blue"]
doc_to_target: target
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
        encoding="utf-8",
    )
    (tasks / "sst2_slice.yaml").write_text(
        _sst2_yaml("sst2_slice", shared_data / "sst2" / "dev.tsv"), encoding="utf-8"
    )
    return tasks


def write_lm_eval_tasks(root: Path, shared_data: Path) -> Path:
    """A folder of lm-eval task files: sst2_slice."""
    tasks = root / "lm-eval-tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "sst2_slice.yaml").write_text(
        _sst2_yaml("sst2_slice", shared_data / "sst2" / "dev.tsv"), encoding="utf-8"
    )
    return tasks


def build_lora_adapter(model_dir: Path, out: Path, *, vlm: bool, seed: int = 1) -> Path:
    """A LoRA adapter with random A and B (a non-zero update) on the language model's q/v projections."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    loader = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    base = loader.from_pretrained(model_dir)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=r".*language_model.*\.(q_proj|v_proj)" if vlm else ["q_proj", "v_proj"],
        init_lora_weights=False,
    )
    torch.manual_seed(seed)
    get_peft_model(base, config).save_pretrained(out)
    return out
