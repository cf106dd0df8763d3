"""How a per-item step of a stage says it could not give its result: it returns `Failed(reason)` in its place.

    frames = decode_clip_frames(clips, times_of)          # list[list[np.ndarray] | Failed]
    if isinstance(frames[0], Failed): record["reason"] = frames[0].reason

The stage turns a `Failed` into a record with `status: "failed"` and that `reason`, and the sharded runner logs it
in `W/failures.jsonl`. Exceptions stay for what stops a whole stage (bad arguments, a damaged stage file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failed:
    """No result for one item, and why (`details`: what the step saw, such as a judge's unparsable reply)."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def within(self, context: str) -> Failed:
        """The same failure, its reason prefixed with what was being done (`"cannot decode frames to score"`)."""
        return Failed(f"{context}: {self.reason}", self.details)
