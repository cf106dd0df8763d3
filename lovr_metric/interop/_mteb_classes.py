"""The `mteb` task classes of LoVR (imported by `lovr_metric.interop.mteb_tasks` only: it imports `mteb`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset, Video
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from .tasks import InteropTask

logger = logging.getLogger(__name__)

_CITATION = r"""
@article{lovr2025,
  journal = {arXiv preprint arXiv:2505.13928},
  title = {LoVR: A Benchmark for Long Video Retrieval in Multimodal Contexts},
  year = {2025},
}
"""
_COMMON = {
    "reference": "https://arxiv.org/abs/2505.13928",
    "type": "Any2AnyRetrieval",
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "main_score": "ndcg_at_10",
    "date": ("2025-05-01", "2025-05-31"),
    "domains": ["Scene", "Entertainment"],
    "task_subtypes": [],
    "license": "cc-by-nc-sa-4.0",
    "annotations_creators": "LM-generated and reviewed",
    "dialect": [],
    "sample_creation": "found",
    "bibtex_citation": _CITATION,
    "is_beta": False,
}


def _metadata(name: str, description: str, category: str, modalities: list[str], prompt: str) -> TaskMetadata:
    # The dataset is the user's local export: __init__ replaces the path and revision.
    dataset = {"path": "local LoVR export", "revision": "local"}
    return TaskMetadata(
        name=name,
        description=description,
        dataset=dataset,
        category=category,
        modalities=modalities,
        prompt={"query": prompt},
        **_COMMON,
    )


class LoVRRetrieval(AbsTaskRetrieval):
    """A LoVR task (`InteropTask`) whose videos are read from `video_root`, the folder their paths start from.

    Corpus items and video queries whose file is missing under `video_root` are left out (counted in a warning),
    and so are the queries left with no relevant item: as `lovr_metric evaluate` skips what it cannot embed.
    """

    interop_name: ClassVar[str]

    def __init__(self, task: InteropTask, video_root: str | Path, revision: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if task.name != self.interop_name:
            raise ValueError(f"task={task.name!r} given to {type(self).__name__}; expected {self.interop_name!r}")
        self.task, self.video_root = task, Path(video_root)
        if not self.video_root.is_dir():
            raise ValueError(f"video_root={str(video_root)!r} is not a folder; expected the folder of the videos")
        dataset = {"path": f"local LoVR export ({task.name})", "revision": revision}
        self.metadata = self.metadata.model_copy(update={"dataset": dataset})

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        corpus = [row for row in self.task.corpus if self._file(row["video"]) is not None]
        present = {row["id"] for row in corpus}
        queries, relevant = [], {}
        for query in self.task.queries:
            if self.task.query_modality == "video" and self._file(query["video"]) is None:
                continue
            targets = {cid: 1 for cid in self.task.relevant[query["id"]] if cid in present}
            if targets:
                queries.append(query)
                relevant[query["id"]] = targets
        if len(corpus) < len(self.task.corpus) or len(queries) < len(self.task.queries):
            logger.warning(
                "%s: %d of %d corpus files and %d of %d queries left out (file missing under %s)",
                self.metadata.name,
                len(self.task.corpus) - len(corpus),
                len(self.task.corpus),
                len(self.task.queries) - len(queries),
                len(self.task.queries),
                self.video_root,
            )
        if not queries:
            raise ValueError(f"{self.metadata.name}: no query has a relevant file under video_root={self.video_root}")
        split = RetrievalSplitData(
            queries=self._dataset(queries), corpus=self._dataset(corpus), relevant_docs=relevant, top_ranked=None
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True

    def unload_data(self) -> None:
        """Unload as mteb does, keeping this task's metadata: its dataset path and revision are those of the local
        export (mteb's own unloading goes back to the class's, a published dataset's)."""
        metadata = self.metadata
        super().unload_data()
        self.metadata = metadata

    def _file(self, relpath: str) -> str | None:
        """The file of `relpath` under the video root, or None when it is missing."""
        path = Path(relpath)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"{self.metadata.name}: video path {relpath!r} leaves the video root; expected a relative path"
            )
        path = self.video_root / path
        return str(path) if path.is_file() else None

    def _dataset(self, rows: list[dict]) -> Dataset:
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        if "video" not in columns:
            return Dataset.from_dict(columns)
        columns["video"] = [self._file(path) for path in columns["video"]]
        return Dataset.from_dict(columns).cast_column("video", Video())


class LoVRText2ClipRetrieval(LoVRRetrieval):
    interop_name = "LoVR-T2C"
    metadata = _metadata(
        "LoVRText2ClipRetrieval",
        "LoVR text -> clip: the detailed caption of a query clip ranks every clip of the 467 long videos.",
        "t2v",
        ["text", "video"],
        "Find the video clip that this detailed description describes.",
    )


class LoVRText2VideoRetrieval(LoVRRetrieval):
    interop_name = "LoVR-V"
    metadata = _metadata(
        "LoVRText2VideoRetrieval",
        "LoVR text -> video: the fused caption of a long video ranks every long video (UVRB's LoVR-V).",
        "t2v",
        ["text", "video"],
        "Find the long video that this long description describes.",
    )


class LoVRTheme2ClipRetrieval(LoVRRetrieval):
    interop_name = "LoVR-TH"
    metadata = _metadata(
        "LoVRTheme2ClipRetrieval",
        "LoVR theme -> clip: the theme text of a clip ranks every clip (UVRB's LoVR-TH).",
        "t2v",
        ["text", "video"],
        "Find the video clip about this theme.",
    )


class LoVRClip2VideoRetrieval(LoVRRetrieval):
    interop_name = "LoVR-C2V"
    metadata = _metadata(
        "LoVRClip2VideoRetrieval",
        "LoVR clip -> video: a query clip ranks every long video; the one it was cut from is relevant (UVRB's "
        "LoVR-C2V).",
        "v2v",
        ["video"],
        "Find the long video that this clip was taken from.",
    )


TASK_CLASSES = {cls.interop_name: cls for cls in LoVRRetrieval.__subclasses__()}
