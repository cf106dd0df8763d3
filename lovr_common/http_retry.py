"""POST to an OpenAI-compatible server, with retries: a timeout, a lost connection, HTTP 408, 429 or 5xx, or an
answer the caller cannot read is tried again after `backoff * 2**k` seconds; another error status is final. Used by
the chat backend of the generation stages and by the embeddings-server encoder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


class Unreadable(ValueError):
    """Raised by a `read` callback of `post_with_retries`: the answer cannot be used, and the request is tried again."""


@dataclass(frozen=True)
class Failure:
    """Why a request gave no usable answer: after every attempt (`final=False`), or at once, the server refusing it
    with an error status that is not retried (`final=True`)."""

    reason: str
    final: bool


def post_with_retries(
    client: httpx.Client,
    url: str,
    read: Callable[[httpx.Response], T],
    *,
    max_retries: int,
    backoff: float,
    on_attempt: Callable[[], None] | None = None,
    **request,
) -> T | Failure:
    """`read(response)` of the first answer that is neither a failure to retry nor an error status, trying
    `max_retries + 1` times in all (`on_attempt` is called before each); a `Failure` otherwise. `request` goes to
    `client.post` (`json=`, `content=`)."""
    reason = ""
    for attempt in range(max_retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        if on_attempt is not None:
            on_attempt()
        try:
            response = client.post(url, **request)
        except httpx.TimeoutException as err:
            reason = f"timeout: no answer within {client.timeout.read}s ({type(err).__name__})"
            continue
        except httpx.TransportError as err:
            reason = f"connection error: {type(err).__name__}: {err}"
            continue
        if response.status_code in RETRY_STATUS:
            reason = f"HTTP {response.status_code}: {response.text[:300]}"
            continue
        if response.is_error:
            return Failure(f"HTTP {response.status_code}: {response.text[:300]}", final=True)
        try:
            return read(response)
        except Unreadable as err:
            reason = str(err)
    logger.warning("%s failed after %d attempts: %s", url, max_retries + 1, reason)
    return Failure(f"{reason} (after {max_retries + 1} attempts)", final=False)
