"""Safety fine-tuning: config (YAML + dotted overrides), collator with label masking, trainer, merge.

Heavy libraries (torch, transformers, peft) are imported inside the functions that need them.
"""

from vlguard.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
