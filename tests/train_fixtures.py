"""Training settings shared by the tests that check a training rule against a hand-written update."""

from __future__ import annotations

# One optimizer step whose update is exactly -lr x the gradient: plain SGD, no weight decay, no clipping,
# no warm-up or schedule, one batch of 4 (the whole step), nothing saved on the way.
ONE_EXACT_SGD_STEP: dict[str, object] = {
    "optim": "sgd",
    "weight_decay": 0.0,
    "max_grad_norm": 0.0,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
    "global_batch_size": 4,
    "per_device_batch_size": 4,
    "max_steps": 1,
    "save_steps": 100,
    "progress": False,
}
