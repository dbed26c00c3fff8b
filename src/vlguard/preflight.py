"""The one settings check of every command: before any model loads and before any run folder is written.

A mistake that a setting shows on its own must stop a run at once, in one line naming the setting, not
after hours of training or generation, and never after something was written that a corrected rerun
then refuses ("made with other settings"). Every command checks its settings through these functions:

- ``vlguard eval`` / ``generate``: ``vlguard.evaluate.check_config`` (the model, the judges; then the
  benchmark's checks, ``check_benchmark``, before the run folder is written);
- ``vlguard train``: ``check_train``;
- ``vlguard hft``: ``vlguard.hft.checks.check_sweep``, every stage (alignment and user training with
  ``check_train``, the Harmful Score and Finetune Accuracy evaluations with the eval check);
- ``vlguard utility``: ``vlguard.utility.run.check_utility`` (``check_model``);
- ``vlguard curate``: ``vlguard.curate.run.check_curate_settings`` (``check_model``).

What is checked: names (backends, judges, benchmarks: the registries), each backend's options against its
constructor and its entry's ``check`` (credentials: an API endpoint that needs a key whose variable is
unset), device and dtype, output paths (``vlguard.fileio.check_output_dir``: empty, unset, a file), model
and adapter references, a local adapter's config and weights and the base model it was trained on
(``vlguard.models.adapters``), every judge built with its own options and its pre-flight (a model
judge's weights, an API judge's key), training settings (ranges, trackers, DeepSpeed config, LoRA target
modules against the model's modules), and the benchmark's data (images that exist and decode).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.errors import ConfigError

if TYPE_CHECKING:
    from vlguard.benchmarks.base import BenchmarkData
    from vlguard.judges import Judge
    from vlguard.records import Sample
    from vlguard.train.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSettings:
    """The model a command generates with: its name, backend and the backend's keyword settings.

    ``options`` are every keyword the backend will be built with (``revision``, ``adapter``, ``dtype``,
    ... and the user's backend options), checked against the backend's constructor.
    """

    model: str
    backend: str = "hf"
    revision: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)


def check_model(
    settings: ModelSettings, *, model_flag: str = "--model", adapter_flag: str = "--adapter"
) -> None:
    """The backend (known, its options, its entry's check: credentials), and for a backend that loads
    weights here the device, the dtype, the model reference and the adapter (reference, config against
    weights, base model); ``ConfigError`` naming the setting."""
    from vlguard.generation import backend_entry, check_backend_options
    from vlguard.generation.hf import resolve_device, resolve_dtype
    from vlguard.models.adapters import check_adapter
    from vlguard.models.resolve import check_model_reference

    entry = backend_entry(settings.backend)
    check_backend_options(settings.backend, settings.options)
    if not entry.local_weights:
        return
    resolve_dtype(settings.dtype, resolve_device(settings.device))
    if entry.model_is_reference:
        check_model_reference(settings.model, model_flag)
    if settings.adapter is not None:
        check_model_reference(settings.adapter, adapter_flag)
        check_adapter(settings.adapter, settings.model, adapter_flag)


def check_judges(names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None) -> list[Judge]:
    """Build every judge with its own options and run its checks before anything is generated: the
    entry's check and the judge's pre-flight (``ConfigError`` for an unknown name, a bad option, a model
    judge whose weights cannot be found, an API judge without its key); options must name a judge that
    runs. Returns the built judges, in order."""
    from vlguard.judges import check_judge, make_judge

    options = options or {}
    stray = sorted(set(options) - set(names))
    if stray:
        raise ConfigError(
            f"--judge-option given for {', '.join(repr(n) for n in stray)}, which is not among the judges run "
            f"({', '.join(names) or 'none'})"
        )
    judges = [make_judge(name, **dict(options.get(name, {}))) for name in names]
    for name, judge in zip(names, judges, strict=True):
        check_judge(name, judge)
    return judges


def check_benchmark(
    bench: str,
    data: BenchmarkData,
    samples: Sequence[Sample],
    *,
    image_mode: str,
    allow_blank_substitutes: bool,
) -> None:
    """The benchmark entry's checks on the samples a run will use, before the model loads and before the
    run folder is written (by default: the images exist, and each decodes)."""
    from vlguard.benchmarks import benchmark_entry
    from vlguard.registry import resolve

    for check in benchmark_entry(bench).checks:
        resolve(check)(data, samples, image_mode=image_mode, allow_blank_substitutes=allow_blank_substitutes)


def check_train(config: TrainConfig, *, run_folder: bool = True, lora: bool = True) -> None:
    """A training config: every value and key (``vlguard.train.trainer.check_config``: ranges, model
    reference, output folder, regexes, data sources, trackers, DeepSpeed config); with ``run_folder``, the
    output folder (not finished already, its checkpoints resumable as asked); with ``lora``, for LoRA the
    target modules against the model's own modules (``check_lora_modules``: the slowest part, last).
    """
    from vlguard.train.trainer import check_config, check_run_folder

    check_config(config)
    if run_folder:
        check_run_folder(config)
    if lora and config.method == "lora":
        check_lora_modules(config, config.model.name_or_path)


def check_lora_modules(config: TrainConfig, model: str) -> None:
    """``lora.target_modules`` matches modules of ``model`` and none of its vision tower (``ConfigError``).

    The model is built on the meta device from its config (a built-in tiny model is built once, as for
    training). A Hub model whose config cannot be fetched here is left to the load, which says why.
    """
    from vlguard.models.loading import empty_model
    from vlguard.models.resolve import is_tiny, resolve_model_path
    from vlguard.train.trainer import check_lora_targets

    local = is_tiny(model) or Path(model).expanduser().exists()
    try:
        skeleton = empty_model(
            resolve_model_path(model),
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
        )
    except ConfigError:
        if local:
            raise
        logger.info(
            "LoRA target modules not checked before loading: the config of %s is not available", model
        )
        return
    check_lora_targets(skeleton, config)
