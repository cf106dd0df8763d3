"""Export a LoVR dataset in the layout of UVRB (the Universal Video Retrieval Benchmark, arXiv 2510.27571, Hub
dataset `Alibaba-NLP/UVRB`), one folder per task, so that tools written for UVRB evaluate LoVR as it is here.

    python -m lovr_metric.interop export-uvrb --dataset ./lovr --output ./lovr-uvrb

    OUT/manifest.json                         what was written and left out, per task (this toolkit's addition)
    OUT/<task>/jsonl/queries.jsonl            {"id": ..., "text": ...}   or {"id": ..., "video": <path>} (LoVR-C2V)
    OUT/<task>/jsonl/corpus.jsonl             {"id": ..., "video": <path>}
    OUT/<task>/jsonl/instances.jsonl          {"qid": ..., "pos": [<corpus id>, ...]}

Tasks (see `lovr_metric.interop.tasks`): `LoVR-V`, `LoVR-TH` and `LoVR-C2V` are UVRB's names for its three LoVR
tasks; `LoVR-T2C` (clip caption -> clip, LoVR's main task) is not part of UVRB and is named here. Video paths are
those of the export (`clip_path`, `video_path`), relative to the user's video root: no video is copied (LoVR's
videos may not be redistributed). UVRB tools that read frames expect them under `<task>/videos_frames/<path without
extension>/`; extracting them is left to those tools. OUT must be a new path or an empty folder outside the export
(a folder inside it would be pushed with it).

What the format rests on:
- Confirmed from a public UVRB evaluation (github.com/ZoengHN/Embed-RL, `eval/uvrb_eval/`: `uvrb_dataset.py`,
  `eval_uvrb_recall.py` and `eval_uvrb_config/LoVR_*.yaml`): the three file names under `<task>/jsonl/`; queries
  have `id` and `text` and/or `video` (and `image`, unused here); corpus items have `id` and `video`, a file path
  whose stem names its frames folder; instances have `qid` and `pos`, a list of corpus ids; the task names
  `LoVR-V`, `LoVR-TH`, `LoVR-C2V`. That is a third party's reader of the UVRB files, not UVRB's own documentation:
  the Hub dataset card could not be read from here.
- Our assumptions: the ids (clip and video ids, `<clip_id>-theme-<k>`); paths relative to the LoVR video root,
  with their folders (UVRB's own LoVR copy may use other paths); no extra fields; `manifest.json`; the task
  `LoVR-T2C`; which clips are C2V queries (the query split's clips with a file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lovr_common.jsonl import write_jsonl_atomic

from .tasks import InteropTask, load_rows, lovr_tasks

FILES = {"queries": "jsonl/queries.jsonl", "corpus": "jsonl/corpus.jsonl", "instances": "jsonl/instances.jsonl"}
MANIFEST = "manifest.json"


def export_uvrb(dataset: str | os.PathLike, output: str | os.PathLike, cache_dir: str | None = None) -> dict:
    """Write the LoVR tasks of the export folder `dataset` to `output` in the UVRB layout; return the manifest.

    `output` must be a new path or an empty folder outside `dataset` (the export a user may push as it is). Raises
    `ValueError` when it is not, or when no task has a query.
    """
    output = Path(output)
    if Path(dataset).resolve() in output.resolve().parents:
        raise ValueError(
            f"output={str(output)!r} lies inside dataset={str(dataset)!r}, and would be part of the export when it is "
            "pushed; expected a folder outside it"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output={str(output)!r} exists and is not an empty folder; expected a new path")
    tasks = lovr_tasks(load_rows(dataset, cache_dir))
    if not tasks:
        raise ValueError(
            f"dataset={str(dataset)!r} yields no query for any LoVR task: no caption, theme or clip file has a "
            "counterpart with a file (clip_path / video_path) to retrieve"
        )
    for task in tasks:
        write_task(task, output / task.name)
    manifest = {
        "format": "UVRB (queries / corpus / instances JSON Lines per task)",
        "dataset": str(dataset),
        "tasks": {task.name: _manifest_entry(task) for task in tasks},
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def write_task(task: InteropTask, folder: Path) -> None:
    """The three JSON Lines files of one task under `folder`."""
    write_jsonl_atomic(folder / FILES["queries"], task.queries)
    write_jsonl_atomic(folder / FILES["corpus"], task.corpus)
    instances = ({"qid": query["id"], "pos": task.relevant[query["id"]]} for query in task.queries)
    write_jsonl_atomic(folder / FILES["instances"], instances)


def _manifest_entry(task: InteropTask) -> dict:
    return {
        "description": task.description,
        "query_modality": task.query_modality,
        "num_queries": len(task.queries),
        "num_corpus": len(task.corpus),
        "left_out": task.left_out,
        "files": FILES,
    }
