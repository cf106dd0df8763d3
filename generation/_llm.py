"""LLM calls whose replies must have a shape (two paragraphs, one paragraph): retried with backoff, never raised.

A call fails when the backend reports an error or when `parse` rejects the reply (raises `ValueError`). Failed
calls of a batch are sent again together, up to `max_retries` times, after `backoff * 2**k` seconds and with seed
`seed + k + 1` (a sampled reply may come out usable the next time). The endpoint backend also retries transport
errors on its own; these retries are on top, and also cover replies that cannot be used.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from generation.backends import ChatBackend, ChatRequest, GenerationParams


@dataclass
class LlmCall:
    """One chat call and how to turn its reply into a value."""

    system: str
    user: str
    parse: Callable[[str], Any]


@dataclass
class LlmOutcome:
    """The parsed value of a call, or why it has none after every try."""

    value: Any = None
    reason: str | None = None
    tries: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def call_with_retries(
    backend: ChatBackend, calls: Sequence[LlmCall], params: GenerationParams, *, max_retries: int, backoff: float
) -> list[LlmOutcome]:
    """One outcome per call, in order."""
    outcomes = [LlmOutcome(reason="not tried") for _ in calls]
    pending = list(range(len(calls)))
    for retry in range(max_retries + 1):
        if not pending:
            break
        if retry:
            time.sleep(backoff * 2 ** (retry - 1))
        requests = [ChatRequest(user=calls[i].user, system=calls[i].system) for i in pending]
        results = backend.generate(requests, dataclasses.replace(params, seed=params.seed + retry))
        still_failing = []
        for i, result in zip(pending, results, strict=True):
            outcomes[i].tries = retry + 1
            if not result.ok:
                outcomes[i].reason = f"call failed: {result.error}"
            else:
                try:
                    outcomes[i].value, outcomes[i].reason = calls[i].parse(result.text), None
                except ValueError as err:
                    outcomes[i].reason = f"unusable reply: {err}"
            if outcomes[i].reason is not None:
                still_failing.append(i)
        pending = still_failing
    for i in pending:
        outcomes[i].reason += f" (after {outcomes[i].tries} tries)"
    return outcomes
