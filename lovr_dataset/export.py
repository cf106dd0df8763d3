"""Export every config of a LoVR source to a script-free Hub dataset folder: Parquet per config and split, plus a
README.md whose YAML declares the configs and their features.

    python -m lovr_dataset export DATA_DIR OUT_DIR [--num_queries 1000] [--query_seed 0] [--overwrite]

    OUT_DIR/README.md
    OUT_DIR/clips/train-00000-of-00001.parquet (more shards for big splits), OUT_DIR/clips/test-00000-of-00001.parquet
    OUT_DIR/videos/test-00000-of-00001.parquet, OUT_DIR/themes/test-00000-of-00001.parquet (when themes exist)

`datasets.load_dataset(OUT_DIR, "clips")` then returns the builder's rows and features, and the query split is
frozen. The Parquet holds paths, never video bytes. The folder appears whole or not at all: it is built in a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import datasets
import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

from .lovr import CONFIG_NAMES, LoVR

logger = logging.getLogger(__name__)

SHARD_NAME = "{split}-{index:05d}-of-{count:05d}.parquet"


def card_yaml(infos: dict[str, datasets.DatasetInfo]) -> dict:
    """The YAML header of the dataset card: `configs` (data files per split, `clips` the default) and `dataset_info`.

    `infos` maps each exported config name to its `DatasetInfo` (features and splits); the card text can wrap
    this dict in any prose.
    """
    card = DatasetCardData(license=infos[next(iter(infos))].license or None)
    DatasetInfosDict(infos).to_dataset_card_data(card)
    card.configs = [
        {
            "config_name": name,
            "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split in info.splits],
            **({"default": True} if name == LoVR.DEFAULT_CONFIG_NAME else {}),
        }
        for name, info in infos.items()
    ]
    return card.to_dict()


def readme_text(infos: dict[str, datasets.DatasetInfo]) -> str:
    """A minimal card: the YAML header and one paragraph (the full card text is written by `model_cards`)."""
    header = yaml.safe_dump(card_yaml(infos), sort_keys=False, allow_unicode=True)
    configs = ", ".join(f"`{name}`" for name in infos)
    return (
        f"---\n{header}---\n\n# LoVR\n\nLoVR long-video retrieval benchmark, configs {configs}. "
        "Clip and video files are not included: the `clip_path` and `video_path` columns point into a local copy.\n"
    )


def export(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    cache_dir=None,
    **config_kwargs,
) -> Path:
    """Write every non-empty config of the source in `data_dir` to `out_dir`; return `out_dir`.

    `config_kwargs` are `LoVRConfig` fields (`num_queries`, `query_seed`, `missing_clip_files`, `skip_malformed`).
    An existing `out_dir` is replaced only with `overwrite=True`, and only once the new export is complete.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ValueError(f"out_dir={str(out_dir)!r} already exists; pass overwrite=True (--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        infos = {}
        for name in CONFIG_NAMES:
            info = _export_config(name, data_dir, staging, cache_dir, config_kwargs)
            if info is not None:
                infos[name] = info
        shutil.rmtree(staging / ".build")
        (staging / "README.md").write_text(readme_text(infos), encoding="utf-8")
        _swap_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s", ", ".join(infos), out_dir)
    return out_dir


def _export_config(name, data_dir, staging: Path, cache_dir, config_kwargs) -> datasets.DatasetInfo | None:
    builder = LoVR(config_name=name, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    # datasets leaves lock files next to its output folder: build one level down, in a folder removed afterwards.
    work = staging / ".build" / name
    # `download_and_prepare` writes the Parquet straight from the source: one pass, no Arrow cache copy.
    builder.download_and_prepare(output_dir=str(work), file_format="parquet")
    if not builder.info.splits:
        return None
    (staging / name).mkdir()
    for split in builder.info.splits:
        # datasets names shards `lovr-<split>[-JJJJJ-SSSSS-of-NNNNN].parquet`; the Hub convention is kept instead.
        shards = sorted(work.glob(f"{builder.dataset_name}-{split}*.parquet"))
        for index, shard in enumerate(shards):
            shard.rename(staging / name / SHARD_NAME.format(split=split, index=index, count=len(shards)))
    return builder.info


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished export onto `out_dir`, keeping the previous export until the new one is in place."""
    previous = None
    if out_dir.exists():
        previous = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(previous)
    staging.rename(out_dir)
    if previous is not None:
        shutil.rmtree(previous)
