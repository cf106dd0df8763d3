"""Texts longer than the text encoder's token limit: cut (`truncate`, what the original LoVR code does to its
17,000-word video captions at CLIP's 77 tokens) or embedded whole (`chunk_mean`).

`chunk_mean` cuts each text's tokens into consecutive windows that fit the limit (the tokenizer's own overflow
windows, each with its special tokens, no overlap), embeds every window, L2-normalises each, takes their mean
and normalises it again (the encoder's caller normalises every embedding in any case). A text within the limit is
one window, so its embedding is the same under both policies.

`TokenCounts` says how many texts the limit cut (or chunked), recorded in results.json for both policies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LONG_TEXT_POLICIES = ("truncate", "chunk_mean")
# Windows embedded per model call: a 17,000-word caption at 77 tokens makes hundreds of them.
WINDOW_BATCH = 256


def check_policy(long_text: str) -> str:
    if long_text not in LONG_TEXT_POLICIES:
        raise ValueError(f"long_text={long_text!r}: expected one of {LONG_TEXT_POLICIES}")
    return long_text


@dataclass(frozen=True)
class TokenCounts:
    """How the query texts compare with the token limit (special tokens included)."""

    max_length: int
    num_texts: int
    num_over_limit: int  # texts the limit cuts under `truncate`, or chunks under `chunk_mean`
    longest: int  # tokens of the longest text

    @classmethod
    def of(cls, tokenizer, texts: list[str], max_length: int, batch: int = 1024) -> TokenCounts:
        lengths = []
        for start in range(0, len(texts), batch):
            lengths += [len(ids) for ids in tokenizer(texts[start : start + batch], truncation=False)["input_ids"]]
        return cls(max_length, len(texts), sum(n > max_length for n in lengths), max(lengths, default=0))


def windows(tokenizer, texts: list[str], max_length: int, padding) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The token windows of `texts` (model inputs, one row per window) and, per window, the index of its text."""
    tokens = tokenizer(
        texts,
        padding=padding,
        truncation=True,
        max_length=max_length,
        return_overflowing_tokens=True,
        return_tensors="pt",
    )
    owners = tokens.pop("overflow_to_sample_mapping")
    return dict(tokens), owners


def chunk_mean(
    embed: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: dict[str, torch.Tensor],
    owners: torch.Tensor,
    num_texts: int,
) -> torch.Tensor:
    """Per text, the normalised mean of its normalised window embeddings; `embed` takes a slice of `inputs`."""
    parts = []
    total = owners.shape[0]
    for start in range(0, total, WINDOW_BATCH):
        parts.append(embed({key: value[start : start + WINDOW_BATCH] for key, value in inputs.items()}))
    units = torch.nn.functional.normalize(torch.cat(parts).float(), dim=-1)
    sums = torch.zeros(num_texts, units.shape[1], dtype=units.dtype).index_add_(0, owners.to(units.device), units)
    return torch.nn.functional.normalize(sums, dim=-1)
