"""Whether a model folder holds random weights: the one provenance check the products make.

The stand-in models (`lovr_standins.tiny_models`) carry a marker file wherever their folder travels; everything a
product produces with such a model is labelled `random_weights` and its numbers are meaningless.
"""

from __future__ import annotations

import os
from pathlib import Path

RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"


def is_random_weights(path: str | os.PathLike) -> bool:
    """Whether the model folder at `path` was built with random weights (it holds `RANDOM_WEIGHTS_MARKER`)."""
    return (Path(path) / RANDOM_WEIGHTS_MARKER).exists()
