"""The LoVR dataset card: the export's YAML (configs, features) completed with licence, tasks and size, and a body
with the construction settings actually used, statistics computed from the data, the evaluation protocol, the
licence note on videos and the citation.

    from model_cards.dataset import dataset_card
    dataset_card("lovr", workdir="runs/demo", repo_id="ORG/LoVR").save("lovr/README.md")
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from model_cards.metric import MODULE_NAME
from model_cards.run_summary import RunSummary, summarise_run
from model_cards.stats import DatasetStatistics, compute_statistics, size_category

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
LICENSE = "cc-by-nc-sa-4.0"
TASK_CATEGORIES = ["text-retrieval", "video-text-to-text"]
TAGS = ["video-retrieval", "text-video-retrieval", "long-video", "video-captioning", "lovr"]
# Author names are not restated here: the arXiv record is the authority on them.
CITATION = """@misc{lovr2025,
  title         = {LoVR: A Benchmark for Long Video Retrieval in Multimodal Contexts},
  author        = {{LoVR authors}},
  year          = {2025},
  eprint        = {2505.13928},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2505.13928}
}"""
_DISTRIBUTIONS = [
    ("clips per video", "clips_per_video"),
    ("clip duration (s)", "clip_duration_s"),
    ("video duration (s)", "video_duration_s"),
    ("clip caption words", "clip_caption_words"),
    ("video caption words", "video_caption_words"),
]


def _fmt(value: float | None) -> str:
    """Integers as integers, other numbers with two decimals, missing as a dash."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _export_metadata(export_dir: Path) -> DatasetCardData:
    """The YAML of the export's README.md, which declares its `configs` (and usually `dataset_info`)."""
    if not export_dir.is_dir():
        raise ValueError(f"dataset dir {str(export_dir)!r} is not a directory; expected a LoVR export folder")
    readme = export_dir / "README.md"
    if not readme.is_file():
        raise ValueError(
            f"dataset dir {str(export_dir)!r} has no README.md; expected the output of `python -m lovr_dataset export`"
        )
    data = DatasetCard.load(readme).data
    if not data.get("configs"):
        raise ValueError(f"{readme} declares no `configs:` in its YAML; expected clips and videos configs")
    return data


def _data_files(export_dir: Path, configs: list[dict]) -> dict[str, dict[str, list[Path]]]:
    """The Parquet files of every config's splits, as its `data_files` name them."""
    names = [config["config_name"] for config in configs]
    missing = {"clips", "videos"} - set(names)
    if missing:
        raise ValueError(
            f"dataset dir {str(export_dir)!r} declares configs {names}; expected at least {sorted(missing)}"
        )
    found = {}
    for config in configs:
        splits = {}
        for entry in config["data_files"]:
            files = sorted(export_dir.glob(entry["path"]))
            if not files:
                raise ValueError(
                    f"{export_dir / 'README.md'}: config {config['config_name']!r} split {entry['split']!r} names "
                    f"{entry['path']!r}, which matches no file"
                )
            splits[entry["split"]] = files
        found[config["config_name"]] = splits
    return found


def _load_configs(files: dict[str, dict[str, list[Path]]]) -> dict[str, datasets.DatasetDict]:
    """Every config's splits, read from their Parquet files (in memory: no `datasets` cache)."""
    # The Parquet schema carries the `datasets` features, so the rows read back exactly as load_dataset's.
    # Fingerprinted by the files: left to itself, datasets hashes the whole table (10 s at LoVR's scale).
    return {
        name: datasets.DatasetDict(
            {
                split: datasets.Dataset(pq.read_table(paths), fingerprint=_files_fingerprint(paths))
                for split, paths in splits.items()
            }
        )
        for name, splits in files.items()
    }


def _row_counts(files: dict[str, dict[str, list[Path]]]) -> dict[str, dict[str, int]]:
    """Rows per config and split, from the Parquet footers alone."""
    return {
        name: {split: sum(pq.read_metadata(path).num_rows for path in paths) for split, paths in splits.items()}
        for name, splits in files.items()
    }


def _files_fingerprint(files: list[Path]) -> str:
    """A fingerprint of `files` as they are now: their paths, sizes and modification times."""
    stats = [(str(path.resolve()), stat.st_size, stat.st_mtime_ns) for path in files for stat in [path.stat()]]
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]


def _all_rows(dataset_dict: datasets.DatasetDict) -> datasets.Dataset:
    return datasets.concatenate_datasets(list(dataset_dict.values()))


def build_card_data(metadata: DatasetCardData, loaded: dict[str, datasets.DatasetDict]) -> DatasetCardData:
    """The export's YAML plus licence, tasks, tags and the size category of the largest config."""
    counts = {name: {split: len(ds) for split, ds in dataset_dict.items()} for name, dataset_dict in loaded.items()}
    card_data = _card_data(metadata, counts)
    if not card_data.get("dataset_info"):
        # The features, as `datasets.push_to_hub` would write them.
        infos = {name: next(iter(d.values())).info for name, d in loaded.items()}
        for name, info in infos.items():
            info.config_name = name
            info.splits = datasets.SplitDict(
                {s: datasets.SplitInfo(s, num_examples=len(d)) for s, d in loaded[name].items()}
            )
        DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data


def _card_data(metadata: DatasetCardData, counts: dict[str, dict[str, int]]) -> DatasetCardData:
    """`build_card_data` given the rows per config and split, not the rows."""
    yaml = metadata.to_dict()
    # The card sets these itself: an export's README is already a rendered card, and rendering again must agree.
    rendered = ("license", "task_categories", "tags", "size_categories", "pretty_name", "language")
    rendered += ("annotations_creators", "language_creators", "multilinguality")
    for key in rendered:
        yaml.pop(key, None)
    return DatasetCardData(
        pretty_name="LoVR",
        license=LICENSE,
        language=["en"],
        task_categories=TASK_CATEGORIES,
        tags=TAGS,
        size_categories=[size_category(max(sum(splits.values()) for splits in counts.values()))],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        multilinguality=["monolingual"],
        **yaml,
    )


def _split_rows(counts: dict[str, dict[str, int]]) -> list[dict]:
    return [
        {"config": name, "split": split, "num_examples": rows}
        for name, splits in counts.items()
        for split, rows in splits.items()
    ]


def metric_id(repo_id: str) -> str:
    """The id `evaluate.load` takes for the metric Space published beside dataset `repo_id` (`publish` puts both
    under one organisation); `ORG/lovr_retrieval`, the placeholder of the metric's own card, when `repo_id` has none.
    """
    org = repo_id.split("/")[0] if "/" in repo_id else "ORG"
    return f"{org}/{MODULE_NAME}"


def render_dataset_card(
    card_data: DatasetCardData,
    stats: DatasetStatistics,
    split_rows: list[dict],
    run: RunSummary | None = None,
    repo_id: str = "lovr",
) -> DatasetCard:
    """Fill `templates/dataset_card.md` through `DatasetCard.from_template`."""
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        repo_id=repo_id,
        metric_id=metric_id(repo_id),
        split_rows=split_rows,
        has_themes=any(row["config"] == "themes" for row in split_rows),
        stats=stats,
        distributions=[(label, getattr(stats, name)) for label, name in _DISTRIBUTIONS],
        run=run,
        citation=CITATION,
        fmt=_fmt,
    )


def dataset_card(
    export_dir: str | Path,
    workdir: str | Path | None = None,
    repo_id: str = "lovr",
    statistics: DatasetStatistics | None = None,
) -> DatasetCard:
    """The card of an exported LoVR folder, with statistics computed from its Parquet files.

    `python -m lovr_dataset export` writes this card as the export's README.md (which `push` uploads), and
    `python -m model_cards publish` renders it again for the repo it publishes to: one renderer for both.

    Args:
        export_dir (`str` or `Path`): an export folder; its README.md YAML must declare `configs`.
        workdir (`str` or `Path`, *optional*): the pipeline run folder it was built from, for the settings used.
        repo_id (`str`, defaults to `"lovr"`): the id shown in the card's `load_dataset` example; its organisation
            also names the metric Space in the `evaluate.load` example.
        statistics (`DatasetStatistics`, *optional*): the statistics of the Parquet files, gathered while they were
            written (`StatisticsAccumulator`); then, when the YAML declares `dataset_info`, no row is read back (the
            row counts come from the Parquet footers).
    """
    export_dir = Path(export_dir)
    metadata = _export_metadata(export_dir)
    files = _data_files(export_dir, metadata["configs"])
    if statistics is not None and metadata.get("dataset_info"):
        counts = _row_counts(files)
        card_data = _card_data(metadata, counts)
    else:
        loaded = _load_configs(files)
        if statistics is None:
            statistics = compute_statistics(
                _all_rows(loaded["clips"]),
                _all_rows(loaded["videos"]),
                _all_rows(loaded["themes"]) if "themes" in loaded else None,
            )
        counts = {name: {split: len(ds) for split, ds in splits.items()} for name, splits in loaded.items()}
        card_data = build_card_data(metadata, loaded)
    run = summarise_run(workdir) if workdir is not None else None
    return render_dataset_card(card_data, statistics, _split_rows(counts), run, repo_id)


__all__ = ["dataset_card", "render_dataset_card", "build_card_data", "CITATION", "LICENSE", "TASK_CATEGORIES"]
