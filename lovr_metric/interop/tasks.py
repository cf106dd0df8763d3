"""The LoVR retrieval tasks as id-keyed queries, corpus and relevance judgements: what the UVRB export writes and the
`mteb` tasks load. A task is read from a LoVR export folder (`load_dataset(DIR, "clips" | "videos" | "themes")`).

    LoVR-T2C   a query clip's caption  -> every clip        (the `clip` granularity of `lovr_metric evaluate`)
    LoVR-V     a video's caption       -> every long video  (the `video` granularity; UVRB's LoVR-V)
    LoVR-TH    a clip's theme text     -> every clip        (the `theme` granularity; UVRB's LoVR-TH)
    LoVR-C2V   a query clip (video)    -> every long video  (its source video is relevant; UVRB's LoVR-C2V)

Query ids are the id of what the query is about (a clip or video id; `<clip_id>-theme-<k>` for the k-th theme of a
clip), corpus ids the clip or video ids. Corpus items are files, named by their path in the export (`clip_path`,
`video_path`), relative to one video root, as `lovr_metric evaluate --video_root` reads them: an item without a
path (a virtual clip of a run folder exported without clip files, a video without its merged file) is left out of
the corpus, and a query whose relevant item is left out is left out too; both are counted in `left_out`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lovr_common.splits import QUERY_SPLIT
from lovr_metric.evaluation.data import LoVRRows
from lovr_metric.evaluation.data import load_rows as load_dataset_rows


@dataclass(frozen=True)
class InteropTask:
    """One LoVR retrieval task, id-keyed.

    Args:
        name (`str`): the task's name, e.g. `"LoVR-TH"`.
        description (`str`): what is ranked against what, in a sentence.
        query_modality (`str`): `"text"` (queries carry `text`) or `"video"` (queries carry `video`, a path).
        queries (`list[dict]`): `{"id", "text"}` or `{"id", "video"}` per query.
        corpus (`list[dict]`): `{"id", "video"}` per item; `video` is relative to the video root.
        relevant (`dict[str, list[str]]`): the relevant corpus ids of each query id.
        left_out (`dict[str, int]`): how many were left out: `corpus_without_file` (items), `queries_without_file`
            (video queries without a path), `queries_without_target` (queries whose relevant item is not in the
            corpus).
    """

    name: str
    description: str
    query_modality: str
    queries: list[dict]
    corpus: list[dict]
    relevant: dict[str, list[str]]
    left_out: dict[str, int] = field(default_factory=dict)


def load_rows(dataset: str | os.PathLike, cache_dir: str | None = None) -> LoVRRows:
    """Read the `clips`, `videos` and (when present) `themes` configs of the export folder `dataset`
    (`lovr_metric.evaluation.data.load_rows`; the tasks name files relative to a local video root)."""
    if not os.path.isdir(dataset):
        raise ValueError(
            f"dataset={str(dataset)!r} is not a folder; expected a LoVR export (python -m lovr_dataset export)"
        )
    return load_dataset_rows(dataset, cache_dir)


def lovr_tasks(rows: LoVRRows) -> list[InteropTask]:
    """The four LoVR tasks of `rows`, in the order of the module docstring; a task without queries is omitted."""
    clip_files = {c["clip_id"]: c["clip_path"] for c in rows.clips if c["clip_path"] is not None}
    video_files = {v["video_id"]: v["video_path"] for v in rows.videos if v["video_path"] is not None}
    clip_corpus = [{"id": clip_id, "video": path} for clip_id, path in clip_files.items()]
    video_corpus = [{"id": video_id, "video": path} for video_id, path in video_files.items()]
    no_clip_file, no_video_file = len(rows.clips) - len(clip_files), len(rows.videos) - len(video_files)

    query_clips = [c for c in rows.clips if c["split"] == QUERY_SPLIT]
    captioned = [c for c in query_clips if c["caption"] is not None]
    text_to_clip = [(c["clip_id"], {"text": c["caption"]}, c["clip_id"]) for c in captioned]
    text_to_video = [
        (v["video_id"], {"text": v["caption"]}, v["video_id"]) for v in rows.videos if v["caption"] is not None
    ]
    themes = [
        (theme_id, {"text": t["theme"]}, t["clip_id"])
        for theme_id, t in zip(_theme_ids(rows.themes), rows.themes, strict=True)
    ]
    clip_to_video = [(c["clip_id"], {"video": c["clip_path"]}, c["video_id"]) for c in query_clips]

    specs = [
        ("LoVR-T2C", "A query clip's caption ranks every clip; its own clip is relevant.", "text", text_to_clip,
         clip_corpus, clip_files, no_clip_file),
        ("LoVR-V", "A long video's caption ranks every long video; its own video is relevant.", "text",
         text_to_video, video_corpus, video_files, no_video_file),
        ("LoVR-TH", "A clip's theme text ranks every clip; that clip is relevant.", "text", themes, clip_corpus,
         clip_files, no_clip_file),
        ("LoVR-C2V", "A query clip (its video file) ranks every long video; the video it was cut from is relevant.",
         "video", clip_to_video, video_corpus, video_files, no_video_file),
    ]  # a table: one task per row # fmt: skip
    tasks = [_task(*spec) for spec in specs]
    return [task for task in tasks if task.queries]


def _theme_ids(themes: list[dict]) -> list[str]:
    """`<clip_id>-theme-<k>` per theme row: the k-th (from 1) theme of its clip, in row order."""
    seen: dict[str, int] = {}
    ids = []
    for theme in themes:
        seen[theme["clip_id"]] = seen.get(theme["clip_id"], 0) + 1
        ids.append(f"{theme['clip_id']}-theme-{seen[theme['clip_id']]}")
    return ids


def _task(name, description, modality, candidates, corpus, files, no_file) -> InteropTask:
    """Keep the candidate queries `(query id, content, relevant id)` that have a file where they are a video, and
    whose relevant item is in the corpus."""
    with_file = [candidate for candidate in candidates if candidate[1].get("video", "") is not None]
    kept = [(qid, content, target) for qid, content, target in with_file if target in files]
    return InteropTask(
        name=name,
        description=description,
        query_modality=modality,
        queries=[{"id": qid, **content} for qid, content, _ in kept],
        corpus=corpus,
        relevant={qid: [target] for qid, _, target in kept},
        left_out={
            "corpus_without_file": no_file,
            "queries_without_file": len(candidates) - len(with_file),
            "queries_without_target": len(with_file) - len(kept),
        },
    )
