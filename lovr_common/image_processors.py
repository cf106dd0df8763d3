"""Which image processor turns an encoder's frames into pixels: its class is recorded with the results and keys the
frame cache, since the PIL and torchvision backends of one model give different pixels; the generation stages give
a vision-language model's processor the backend asked for with `use_image_processor_backend`."""

from __future__ import annotations

import logging
import sys

import torch

logger = logging.getLogger(__name__)

IMAGE_PROCESSOR_BACKENDS = ("pil", "torchvision")


def image_processor_name(encoder) -> str | None:
    """The class of the image processor that turns the encoder's frames into pixels (`CLIPImageProcessorPil`, or
    `CLIPImageProcessor` for torchvision's backend), found on a `TransformersEncoder`, a transformers processor
    (`encoder.image_processor`) or in a sentence-transformers model's modules; None for an adapter. Two backends
    give different pixels, so it is part of the cache key."""
    processor = find_image_processor(encoder)
    return None if processor is None else type(processor).__name__


def find_image_processor(encoder):
    """The image processor of a `TransformersEncoder`, or the first found in a sentence-transformers model's modules;
    None for an adapter."""
    if "transformers.image_processing_utils" not in sys.modules:  # no processor was ever built: an adapter's frames
        return None
    from transformers.image_processing_utils import BaseImageProcessor

    def image_processor_of(processor) -> BaseImageProcessor | None:
        if isinstance(processor, BaseImageProcessor):  # an image-only model's processor is the image processor
            return processor
        return getattr(processor, "image_processor", None)

    found = image_processor_of(getattr(encoder, "image_processor", None))
    model = getattr(encoder, "model", None)
    if found is None and isinstance(model, torch.nn.Module):
        candidates = (image_processor_of(getattr(module, "processor", None)) for module in model.modules())
        found = next((processor for processor in candidates if processor is not None), None)
    return found


def use_image_processor_backend(processor, model: str, backend: str, kwargs: dict) -> None:
    """Give a multimodal `processor` (`AutoProcessor`'s) the image processor of `backend` when transformers loaded
    another one, loaded with `kwargs` (revision, trust_remote_code). Asked of `AutoProcessor` itself, `backend=`
    would reach the tokenizer too. A model that ships no processor of `backend` keeps what transformers falls back
    to, with a warning, and `image_processor_name` says which."""
    from transformers import AutoImageProcessor

    current = getattr(processor, "image_processor", None)
    if current is None or getattr(current, "backend", None) in (None, backend):
        return
    processor.image_processor = AutoImageProcessor.from_pretrained(model, backend=backend, **kwargs)
    loaded = getattr(processor.image_processor, "backend", None)
    if loaded != backend:
        logger.warning(
            "%s ships no %s image processor: its images go through %s (%s backend), whose pixels can depend on the "
            "machine",
            model,
            backend,
            type(processor.image_processor).__name__,
            loaded,
        )
