"""Loading any supported model and its processor: one code path for VLMs and text-only LLMs.

The model's config decides how it loads (:func:`detect_kind`):

* ``image-text-to-text``: a VLM in transformers' ``AutoModelForImageTextToText`` mapping (LLaVA, Qwen-VL,
  Gemma 3, Idefics3, ...), with its ``AutoProcessor``;
* ``causal-lm``: a text-only ``AutoModelForCausalLM`` model (Llama, Qwen2, Mistral, ...), with its
  tokenizer as the "processor" (a tokenizer also renders chat templates and tokenizes batches);
* ``multimodal-causal-lm``: an ``AutoModelForCausalLM`` model that has a vision config (Phi-4-multimodal),
  with its ``AutoProcessor``.

Processors that declare a video processor (Qwen2/2.5/3-VL, InternVL, LLaVA-OneVision, SmolVLM) cannot be
built by ``AutoProcessor`` without torchvision, because transformers' video processors need it. vlguard
evaluates and trains on images only, so when torchvision is absent it builds the same processor class
without its video part (:func:`processor_without_video`): the image processor (transformers' PIL
backend) and the tokenizer load as usual, and image inputs are processed exactly as with torchvision.
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

# Files of a processor that ``save_pretrained`` of a video-less processor does not write; they are copied
# from the source model so that the saved folder loads with ``AutoProcessor`` where torchvision exists.
_VIDEO_PROCESSOR_FILES = ("video_preprocessor_config.json",)


@dataclass(frozen=True)
class ModelKind:
    """How a model loads: its transformers auto class, and whether it takes images."""

    name: str
    auto_class: str
    sees_images: bool


IMAGE_TEXT_TO_TEXT = ModelKind("image-text-to-text", "AutoModelForImageTextToText", sees_images=True)
CAUSAL_LM = ModelKind("causal-lm", "AutoModelForCausalLM", sees_images=False)
MULTIMODAL_CAUSAL_LM = ModelKind("multimodal-causal-lm", "AutoModelForCausalLM", sees_images=True)
MODEL_KINDS: dict[str, ModelKind] = {k.name: k for k in (IMAGE_TEXT_TO_TEXT, CAUSAL_LM, MULTIMODAL_CAUSAL_LM)}


def kind_of_config(config: PretrainedConfig) -> ModelKind:
    """The kind of a loaded transformers config (see the module docstring); ConfigError if neither."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    auto_map = getattr(config, "auto_map", None) or {}
    if type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING or "AutoModelForImageTextToText" in auto_map:
        return IMAGE_TEXT_TO_TEXT
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING or "AutoModelForCausalLM" in auto_map:
        return MULTIMODAL_CAUSAL_LM if getattr(config, "vision_config", None) is not None else CAUSAL_LM
    raise ConfigError(
        f"model type {getattr(config, 'model_type', '?')!r} is neither an image-text-to-text model nor a "
        "causal language model; vlguard loads AutoModelForImageTextToText and AutoModelForCausalLM models"
    )


def detect_kind(path: str, *, revision: str | None = None, trust_remote_code: bool = False) -> ModelKind:
    """Read the model's config (``config.json``, local or Hub) and return its :class:`ModelKind`."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load model {path!r} (revision {revision!r}): {err}") from err
    return kind_of_config(config)


def load_model(
    path: str,
    kind: ModelKind,
    *,
    revision: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> Any:
    """The model through the auto class of ``kind`` (safetensors only); ConfigError when it fails."""
    import transformers

    auto = getattr(transformers, kind.auto_class)
    try:
        return auto.from_pretrained(
            path,
            revision=revision,
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load model {path!r} (revision {revision!r}): {err}") from err


def empty_model(path: str, *, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The model's modules without its weights (built from its config on the meta device): what a
    settings check reads (module names, e.g. LoRA targets) in a second or two, before any weight loads."""
    import torch
    import transformers
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load model {path!r} (revision {revision!r}): {err}") from err
    auto = getattr(transformers, kind_of_config(config).auto_class)
    with torch.device("meta"):
        return auto.from_config(config, trust_remote_code=trust_remote_code)


def torchvision_available() -> bool:
    """Whether transformers can use torchvision (its video processors and some image processors need it)."""
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


class VideoProcessorUnavailable:
    """Stands in for a video processor that cannot be built without torchvision: images only.

    Processors read a few of its settings while rendering chat templates (SmolVLM: ``num_frames``,
    ``fps``); anything else is an error saying why.
    """

    num_frames = None
    fps = None

    def __getattr__(self, name: str) -> Any:
        # AttributeError, so that getattr(..., default) and hasattr() keep working on it.
        raise AttributeError(
            f"video inputs need torchvision (video processor attribute {name!r}); vlguard uses images only"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError("video inputs need torchvision; vlguard uses images only")


@functools.cache
def processor_without_video(processor_class: Any) -> Any:
    """``processor_class`` with its video processor left out (images and text only).

    ``ProcessorMixin`` builds, checks, loads and saves the sub-processors listed by ``get_attributes()``;
    this subclass lists all but the video ones, so neither construction nor ``from_pretrained`` touches
    the video processor (whose import needs torchvision), and passes ``None`` where the class's
    ``__init__`` takes one. ``video_processor`` is a :class:`VideoProcessorUnavailable`. The class keeps
    its name, so ``save_pretrained`` records the original processor class.
    """
    everything = list(processor_class.get_attributes())
    attributes = [a for a in everything if "video" not in a]

    class VideoLess(processor_class):
        video_processor = VideoProcessorUnavailable()

        @classmethod
        def get_attributes(cls) -> list[str]:
            return list(attributes)

        @classmethod
        def _get_arguments_from_pretrained(cls, *args: Any, **kwargs: Any) -> list[Any]:
            # The loaded sub-processors come in get_attributes() order; __init__ takes them positionally
            # in the original order, video processor included (None).
            loaded = iter(super()._get_arguments_from_pretrained(*args, **kwargs))
            return [None if "video" in name else next(loaded) for name in everything]

    VideoLess.__name__ = processor_class.__name__
    VideoLess.__qualname__ = processor_class.__qualname__
    VideoLess.__module__ = processor_class.__module__
    return VideoLess


def _processor_class(path: str, revision: str | None, trust_remote_code: bool) -> Any:
    """The processor class transformers maps this model's config to (None when it maps none)."""
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    cls = PROCESSOR_MAPPING.get(type(config), None)
    return cls if isinstance(cls, type) else None


def needs_video_less_processor(
    path: str, *, revision: str | None = None, trust_remote_code: bool = False
) -> bool:
    """Whether this model's processor declares a video processor that cannot be built here (no torchvision)."""
    if torchvision_available() or trust_remote_code:
        return False
    try:
        cls = _processor_class(path, revision, trust_remote_code)
    except (OSError, ValueError, KeyError):
        return False
    return cls is not None and any("video" in a for a in cls.get_attributes())


def load_processor(
    path: str,
    kind: ModelKind,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    model_config: str | None = None,
) -> Any:
    """The processor of a VLM, or the tokenizer of a text-only LM; ConfigError when it cannot be loaded.

    ``model_config`` is the model whose config names the processor class when ``path`` holds only the
    processor files (e.g. a LoRA adapter folder saved with its processor); default ``path``.
    """
    from transformers import AutoProcessor, AutoTokenizer

    config_path = model_config or path
    config_revision = revision if model_config is None else None
    try:
        if not kind.sees_images:
            return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        if needs_video_less_processor(
            config_path, revision=config_revision, trust_remote_code=trust_remote_code
        ):
            cls = processor_without_video(_processor_class(config_path, config_revision, trust_remote_code))
            logger.info("torchvision is not installed: loading %s without its video processor", cls.__name__)
            return cls.from_pretrained(path, revision=revision)
        return AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except ImportError as err:
        raise ConfigError(
            f"cannot load the processor of {path!r}: {err}. This model's image processor needs torchvision; "
            "install the torchvision build that matches your torch (see README, 'Models')"
        ) from err
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"cannot load the processor of {path!r} (revision {revision!r}): {err}") from err


def save_processor(processor: Any, out_dir: str | Path, source: str, revision: str | None = None) -> None:
    """``processor.save_pretrained(out_dir)``, plus the source's video processor config when it was left out.

    A processor loaded without its video part (no torchvision) would otherwise save a folder that
    ``AutoProcessor`` cannot load on a machine that has torchvision.
    """
    from transformers.utils import cached_file

    out_dir = Path(out_dir)
    processor.save_pretrained(out_dir)
    for name in _VIDEO_PROCESSOR_FILES:
        if (out_dir / name).is_file():
            continue
        try:
            found = cached_file(source, name, revision=revision, _raise_exceptions_for_missing_entries=False)
        except (OSError, ValueError):
            found = None
        if found:
            shutil.copyfile(found, out_dir / name)


def sees_images(processor: Any) -> bool:
    """Whether a loaded processor takes images (a plain tokenizer does not)."""
    return getattr(processor, "image_processor", None) is not None


def tokenizer_of(processor: Any) -> Any:
    """The tokenizer inside a processor (a tokenizer is its own)."""
    return getattr(processor, "tokenizer", None) or processor


def starts_with_bos(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` already begins with the tokenizer's BOS string (written by the chat template).

    Prompts are tokenized with special tokens added unless the template wrote the BOS itself, as
    ``apply_chat_template`` would: never two BOS tokens, never none where the model expects one.
    """
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(str(bos))
