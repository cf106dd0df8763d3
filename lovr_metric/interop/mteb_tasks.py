"""The LoVR tasks for `mteb` (its `Any2AnyRetrieval` video tasks), read from a local LoVR export and the user's
video root: LoVR's videos may not be redistributed, so no task downloads anything.

    pip install "lovr-toolkit[mteb]"

    import mteb
    from lovr_metric.interop.mteb_tasks import lovr_mteb_tasks

    tasks = lovr_mteb_tasks("./lovr", video_root="/data/LoVR")   # all four, or names=["LoVR-T2C", ...]
    results = mteb.evaluate(my_mteb_model, tasks, cache=None)

Tasks (`lovr_metric.interop.tasks`): `LoVRText2ClipRetrieval` (LoVR-T2C, category t2v),
`LoVRText2VideoRetrieval` (LoVR-V, t2v), `LoVRTheme2ClipRetrieval` (LoVR-TH, t2v) and `LoVRClip2VideoRetrieval`
(LoVR-C2V, v2v). Corpus and query videos are `datasets.Video` columns (torchcodec decoders), as in `mteb`'s own
video tasks. mteb's `hit_rate_at_k` is LoVR's pass@k. The dataset revision mteb records is a hash of the task's
queries, corpus and relevance judgements. This module imports `mteb` only when called.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

from .tasks import load_rows, lovr_tasks

TASK_NAMES = ("LoVR-T2C", "LoVR-V", "LoVR-TH", "LoVR-C2V")


def lovr_mteb_tasks(
    dataset: str | os.PathLike,
    video_root: str | os.PathLike,
    names: Sequence[str] | None = None,
    cache_dir: str | None = None,
) -> list:
    """`mteb` retrieval tasks of the LoVR export folder `dataset`, videos under `video_root`; `names` picks some of
    `TASK_NAMES` (all that the dataset has queries for by default). Raises `ImportError` without `mteb` and
    `ValueError` for a name the dataset has no queries for."""
    try:
        from ._mteb_classes import TASK_CLASSES
    except ImportError as err:
        raise ImportError(f"the LoVR mteb tasks need mteb: pip install 'lovr-toolkit[mteb]' ({err})") from err
    unknown = [name for name in names or () if name not in TASK_NAMES]
    if unknown:
        raise ValueError(f"names={list(names)!r}: {unknown} unknown; expected some of {list(TASK_NAMES)}")
    tasks = {task.name: task for task in lovr_tasks(load_rows(dataset, cache_dir))}
    absent = [name for name in names or () if name not in tasks]
    if absent:
        raise ValueError(f"dataset={str(dataset)!r} has no queries for {absent}; it has {list(tasks)}")
    chosen = list(names) if names else list(tasks)
    return [TASK_CLASSES[name](tasks[name], video_root, revision=_revision(tasks[name])) for name in chosen]


def _revision(task) -> str:
    """A hash of what the task ranks: two runs with the same revision ranked the same queries and corpus."""
    payload = json.dumps([task.queries, task.corpus, task.relevant], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
