"""Which image processor turns an encoder's frames into pixels: its class is recorded with the results and keys the
frame cache, since the PIL and torchvision backends of one model give different pixels."""

from __future__ import annotations

import torch

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
