"""Export every config of a LoVR source to a script-free Hub dataset folder: Parquet per config and split, plus a
README.md that is the full dataset card (YAML declaring the configs, features, sizes and metadata; statistics).

    python -m lovr_dataset export DATA_DIR OUT_DIR [--num_queries 1000] [--query_seed 0] [--overwrite]

    OUT_DIR/README.md
    OUT_DIR/clips/train-00000-of-00001.parquet (more shards for big splits), OUT_DIR/clips/test-00000-of-00001.parquet
    OUT_DIR/videos/test-00000-of-00001.parquet, OUT_DIR/themes/test-00000-of-00001.parquet (when themes exist)

`datasets.load_dataset(OUT_DIR, "clips")` then returns the builder's rows and features, and the query split is
frozen. The Parquet holds paths, never video bytes. The folder appears whole or not at all: it is built in a hidden
sibling `.OUT_NAME.tmp-PID-XXXXXXXX` and renamed into place; its folders and files follow the umask.

What OUT_DIR may be: a new path or an empty folder; with `--overwrite`, also a folder an earlier export wrote (it
holds the marker file `.lovr-export`). Anything else is refused before anything is written: a file or a symlink at
OUT_DIR, a folder with other content, and OUT_DIR equal to the source, inside it or above it. Hidden siblings left
by a killed export of the same OUT_DIR (`.OUT_NAME.tmp-PID-*`, `.OUT_NAME.old-PID-*`, holding the marker) are
removed by the next one, unless process PID still runs; an old export is put back as OUT_DIR if OUT_DIR is gone.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from pathlib import Path

import datasets
import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

from model_cards.dataset import dataset_card

from .lovr import CONFIG_NAMES, LoVR
from .sources import detect_source

logger = logging.getLogger(__name__)

SHARD_NAME = "{split}-{index:05d}-of-{count:05d}.parquet"
MARKER = ".lovr-export"
MARKER_TEXT = "Written by `python -m lovr_dataset export`; `--overwrite` may replace this folder.\n"


def card_yaml(infos: dict[str, datasets.DatasetInfo]) -> dict:
    """The YAML header of the dataset card: `configs` (data files per split, `clips` the default) and `dataset_info`.

    `infos` maps each exported config name to its `DatasetInfo` (features and splits); the card text can wrap
    this dict in any prose.
    """
    if not infos:
        raise ValueError("card_yaml needs the DatasetInfo of at least one config, got none")
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


def write_card(folder: Path, infos: dict[str, datasets.DatasetInfo], data_dir: Path, repo_id: str) -> None:
    """Write the full dataset card as `folder/README.md`: the configs' YAML, completed and given its text by
    `model_cards.dataset_card` (statistics from the Parquet in `folder`, settings from `data_dir` if a run)."""
    for name, info in infos.items():
        # What the Hub reports as the download: the Parquet files (the builder downloaded nothing).
        info.download_size = sum(path.stat().st_size for path in (folder / name).glob("*.parquet"))
    header = yaml.safe_dump(card_yaml(infos), sort_keys=False, allow_unicode=True)
    readme = folder / "README.md"
    readme.write_text(f"---\n{header}---\n", encoding="utf-8")  # the configs the card is rendered from
    workdir = data_dir if detect_source(data_dir) == "pipeline" else None
    dataset_card(folder, workdir, repo_id=repo_id).save(readme)


def export(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    cache_dir=None,
    repo_id: str = "lovr",
    **config_kwargs,
) -> Path:
    """Write every non-empty config of the source in `data_dir` to `out_dir`; return `out_dir`.

    `config_kwargs` are `LoVRConfig` fields (`num_queries`, `query_seed`, `missing_clip_files`, `skip_malformed`,
    `skip_orphan_themes`). An existing `out_dir` is replaced only with `overwrite=True`, only when an earlier export
    wrote it (see the module docstring), and only once the new export is complete. README.md is the full dataset
    card (`model_cards.dataset_card`); `repo_id` is the id its `load_dataset` examples show.
    """
    out_dir = Path(out_dir)
    _check_apart(Path(data_dir), out_dir)
    _clean_leftovers(out_dir)  # first: it may put back the export that OUT_DIR held
    _check_replaceable(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: mkdtemp makes the folder 0700, and the renamed export would keep that mode.
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        (staging / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        infos = {}
        for name in CONFIG_NAMES:
            info = _export_config(name, data_dir, staging, cache_dir, config_kwargs)
            if info is not None:
                infos[name] = info
        shutil.rmtree(staging / ".build")
        write_card(staging, infos, Path(data_dir), repo_id)
        _check_replaceable(out_dir, overwrite)  # again: the build takes a while, and the folder is not locked
        _swap_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s", ", ".join(infos), out_dir)
    return out_dir


def _check_apart(data_dir: Path, out_dir: Path) -> None:
    """Refuse an `out_dir` that is the source, inside it or above it: replacing it would delete the source."""
    source, out = data_dir.resolve(), out_dir.resolve()
    if out == source or source in out.parents or out in source.parents:
        raise ValueError(
            f"out_dir={str(out_dir)!r} (resolves to {str(out)!r}) is the source data_dir={str(data_dir)!r}, "
            f"inside it or above it; expected a folder apart from {str(source)!r}"
        )


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse an `out_dir` that is not a new path, an empty folder or (with `overwrite`) an earlier export."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ValueError(
            f"out_dir={str(out_dir)!r} is a file or a symlink, not a folder; expected a new path or a folder "
            "(it is left as it is)"
        )
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"out_dir={str(out_dir)!r} already exists; pass overwrite=True (--overwrite) to replace it")
    if not (out_dir / MARKER).is_file():
        raise ValueError(
            f"out_dir={str(out_dir)!r} is a non-empty folder that no export wrote (it has no {MARKER}); "
            "overwrite replaces only an earlier export: pick another folder or empty this one yourself"
        )


def _clean_leftovers(out_dir: Path) -> None:
    """Remove the staging and old-export siblings of `out_dir` that a killed export left behind; an old export is
    put back instead when `out_dir` is gone (the export was killed between its two renames)."""
    if not out_dir.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}")
    for path in sorted(out_dir.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_dir() or _is_running(int(match[2])):
            continue
        try:
            # An export writes the marker right after mkdir: an empty folder is one killed in between.
            if not (path / MARKER).is_file() and any(path.iterdir()):
                continue
            if match[1] == "old" and not os.path.lexists(out_dir):
                logger.warning(
                    "putting back %s as %s: export process %s was killed replacing it", path, out_dir, match[2]
                )
                path.rename(out_dir)
            else:
                logger.info("removing %s, left by export process %s that no longer runs", path, match[2])
                shutil.rmtree(path)
        except FileNotFoundError:  # another export starting at the same time cleaned it first
            pass


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


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
    if out_dir.exists() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    previous = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    out_dir.rename(previous)
    try:
        staging.rename(out_dir)
    except OSError:
        previous.rename(out_dir)
        raise
    shutil.rmtree(previous)
