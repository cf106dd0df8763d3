"""Tiny CLIP-like recipes (CLIP, SigLIP, X-CLIP) for `lovr_common.tiny_models`."""
