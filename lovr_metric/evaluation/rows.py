"""The rows of a LoVR dataset, as the evaluation and the interop exports read them.

`load_rows` reads the `clips` (every split), `videos` and, when present, `themes` configs of an export folder or a
Hub dataset with `datasets.load_dataset`; `dataset_fingerprint` hashes them, so that two runs can tell whether they
ranked the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple

from lovr_common.model_source import check_model_source


class LoVRRows(NamedTuple):
    """The rows of a LoVR dataset: every clip (both splits), every video, every theme (empty without a `themes`
    config)."""

    clips: list[dict]
    videos: list[dict]
    themes: list[dict]


def load_rows(dataset: str | os.PathLike, cache_dir: str | None = None) -> LoVRRows:
    """Read the `clips`, `videos` and (when present) `themes` configs of `dataset`, an export folder or a Hub id;
    raises `ValueError` when it lacks the clips or videos config."""
    from datasets import get_dataset_config_names, load_dataset

    dataset = str(dataset)
    check_model_source(dataset, argument="dataset", kind="dataset")
    names = get_dataset_config_names(dataset)
    missing = [name for name in ("clips", "videos") if name not in names]
    if missing:
        raise ValueError(
            f"dataset={dataset!r} has no {missing} config(s) (it has {names}); expected a LoVR dataset "
            "(python -m lovr_dataset export)"
        )

    def rows(name: str) -> list[dict]:
        parts = load_dataset(dataset, name, cache_dir=cache_dir)
        return [row for split in parts.values() for row in split]

    return LoVRRows(rows("clips"), rows("videos"), rows("themes") if "themes" in names else [])


def dataset_fingerprint(rows: LoVRRows) -> str:
    """A hash of every row of the clips, videos and themes configs (values, in order): two runs with the same
    fingerprint ranked the same queries against the same galleries."""
    digest = hashlib.sha256()
    for name, part in zip(LoVRRows._fields, rows, strict=True):
        digest.update(f"{name}:{len(part)}\n".encode())
        for row in part:
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:16]
