"""Tiny vision-language and causal LM recipes for `lovr_common.tiny_models`."""
