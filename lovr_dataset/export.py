"""Export every config of a LoVR source to a script-free Hub dataset folder: Parquet per config and split, plus a
README.md that is the full dataset card (YAML declaring the configs, features, sizes and metadata; statistics).

    python -m lovr_dataset export DATA_DIR OUT_DIR [--num_queries 1000] [--query_seed 0] [--overwrite]

    OUT_DIR/README.md
    OUT_DIR/clips/train-00000-of-00002.parquet (a file per PART_ROWS rows), OUT_DIR/clips/test-00000-of-00001.parquet
    OUT_DIR/videos/test-00000-of-00001.parquet, OUT_DIR/themes/test-00000-of-00001.parquet (when themes exist)

`datasets.load_dataset(OUT_DIR, "clips")` then returns the builder's rows and features, and the query split is
frozen. The Parquet holds paths, never video bytes.

One pass: the source is read and checked once (`read_source`, errors naming file and line), and each config's rows
go, as the builder's Arrow tables (`lovr.arrow_tables`), straight to `datasets`' own Parquet writer (the row groups
and metadata `download_and_prepare(file_format="parquet")` would write) and to the card's `StatisticsAccumulator`;
the card is written from those figures and the Parquet footers, reading no row back. A split of more than
`PART_ROWS` rows is cut into parts written at the same time, a file each (LoVR's clips train split: two). The folder
appears whole or not at all: it is built in a hidden sibling `.OUT_NAME.tmp-PID-XXXXXXXX` and renamed into place;
its folders and files follow the umask.

What OUT_DIR may be: a new path or an empty folder; with `--overwrite`, also a folder an earlier export wrote (it
holds the marker file `.lovr-export`). Anything else is refused before anything is written: a file or a symlink at
OUT_DIR, a folder with other content, and OUT_DIR equal to the source, inside it or above it. Hidden siblings left
by a killed export of the same OUT_DIR (`.OUT_NAME.tmp-PID-*`, `.OUT_NAME.old-PID-*`, holding the marker) are
removed by the next one, unless process PID still runs; an old export is put back as OUT_DIR if OUT_DIR is gone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import datasets
import pyarrow as pa
import yaml
from datasets.arrow_writer import ParquetWriter
from datasets.info import DatasetInfosDict
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCardData

from lovr_common.gc_pause import gc_paused
from model_cards.dataset import dataset_card
from model_cards.stats import DatasetStatistics, StatisticsAccumulator

from .lovr import CONFIG_NAMES, DATASET_NAME, FEATURES, LoVR, arrow_tables, config_info, config_splits
from .records import ReadOptions
from .sources import detect_source, read_source

logger = logging.getLogger(__name__)

SHARD_NAME = "{split}-{index:05d}-of-{count:05d}.parquet"
MARKER = ".lovr-export"
MARKER_TEXT = "Written by `python -m lovr_dataset export`; `--overwrite` may replace this folder.\n"
# A new shard once a file holds this many bytes of Arrow data: datasets' own default for download_and_prepare.
MAX_SHARD_BYTES = convert_file_size_to_int(datasets.config.MAX_SHARD_SIZE)
# A split of more rows is cut into parts of at most this many rows, written at once, each by a writer thread of its
# own (and each in files of at most MAX_SHARD_BYTES): a Parquet file is encoded on one core, and LoVR's clips train
# split (39,804 rows, 270 MB of Arrow data) took 0.9 s as one file, 0.49 s as two on 2 cores.
PART_ROWS = 20_000


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


def write_card(
    folder: Path,
    infos: dict[str, datasets.DatasetInfo],
    data_dir: Path,
    repo_id: str,
    statistics: DatasetStatistics | None = None,
) -> None:
    """Write the full dataset card as `folder/README.md`: the configs' YAML, completed and given its text by
    `model_cards.dataset_card` (`statistics` gathered while writing, else computed from the Parquet in `folder`;
    settings from `data_dir` if a run)."""
    for name, info in infos.items():
        # What the Hub reports as the download: the Parquet files (the builder downloaded nothing).
        info.download_size = sum(path.stat().st_size for path in (folder / name).glob("*.parquet"))
    header = yaml.safe_dump(card_yaml(infos), sort_keys=False, allow_unicode=True)
    readme = folder / "README.md"
    readme.write_text(f"---\n{header}---\n", encoding="utf-8")  # the configs the card is rendered from
    workdir = data_dir if detect_source(data_dir) == "pipeline" else None
    dataset_card(folder, workdir, repo_id=repo_id, statistics=statistics).save(readme)


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
    card (`model_cards.dataset_card`); `repo_id` is the id its `load_dataset` examples show. `cache_dir` is
    accepted for the callers of the builder-based export and unused: the export writes no cache.
    """
    options = _read_options(config_kwargs)
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
        with gc_paused():
            infos, statistics = _write_configs(read_source(data_dir, options, cached=False), staging)
        write_card(staging, infos, Path(data_dir), repo_id, statistics)
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


def _read_options(config_kwargs: dict) -> ReadOptions:
    known = [field.name for field in dataclasses.fields(ReadOptions)]
    unknown = sorted(set(config_kwargs) - set(known))
    if unknown:
        raise ValueError(f"export got unknown option(s) {unknown}; expected some of {known}")
    return ReadOptions(**config_kwargs)


def _write_configs(data, staging: Path) -> tuple[dict[str, datasets.DatasetInfo], DatasetStatistics]:
    """Write every config that has rows to `staging/<config>/`; return their infos and the card's statistics."""
    statistics = StatisticsAccumulator()
    configs = {name: splits for name in CONFIG_NAMES if (splits := config_splits(data, name))}
    # A thread per config, each with a writer thread per part of a split (`_write_split`): Parquet encoding releases
    # the GIL, so the videos (56 MB of captions at full scale) are written while the clips are, rather than after.
    with ThreadPoolExecutor(max_workers=len(configs), thread_name_prefix="lovr-export-config") as pool:
        futures = {
            name: pool.submit(_write_config, name, splits, staging, statistics) for name, splits in configs.items()
        }
        return {name: future.result() for name, future in futures.items()}, statistics.result()


def _write_config(name: str, splits: dict, staging: Path, statistics: StatisticsAccumulator) -> datasets.DatasetInfo:
    """Write the `splits` (split -> rows) of config `name` to `staging/<name>/`, adding its rows to `statistics`;
    return its info."""
    observe = {"clips": statistics.add_clips, "videos": statistics.add_videos, "themes": statistics.add_themes}[name]
    (staging / name).mkdir()
    info = config_info(name)
    info.config_name = name
    info.splits = datasets.SplitDict(dataset_name=DATASET_NAME)
    for split, rows in splits.items():
        info.splits.add(_write_split(rows, split, FEATURES[name], staging / name, observe))
    info.dataset_size = sum(split.num_bytes for split in info.splits.values())
    return info


def _write_split(
    rows, split: str, features: datasets.Features, folder: Path, observe: Callable[[pa.Table], None]
) -> datasets.SplitInfo:
    """Write the rows of one split, cut into parts of at most `PART_ROWS` rows: this thread builds each part's
    tables in turn (one of each part, then the next of each) and hands each to `observe` and to its part's writer
    thread, one table ahead at most; the writer threads encode at the same time."""
    bounds = list(range(0, len(rows), PART_ROWS)) + [len(rows)]
    parts = [_Shards(split, features, folder, f"{index:05d}") for index in range(len(bounds) - 1)]
    tables = [arrow_tables(rows.slice(lo, hi), features) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    pending: list[deque[Future]] = [deque() for _ in parts]
    pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lovr-export-{split}-writer") for _ in parts]
    try:
        active = list(range(len(parts)))
        while active:
            for index in list(active):
                table = next(tables[index], None)
                if table is None:
                    active.remove(index)
                    continue
                pending[index].append(pools[index].submit(parts[index].write, table))
                observe(table)
                while len(pending[index]) > 1:
                    pending[index].popleft().result()
        for waiting in pending:
            while waiting:
                waiting.popleft().result()
        return _Shards.finish_all(parts)
    finally:
        for pool in pools:
            pool.shutdown()  # waits for the writes still running
        for part in parts:
            part.close()


class _Shards:
    """The Parquet files of one part of a split, written through `datasets`' own Parquet writer as
    `download_and_prepare(file_format="parquet")` writes them: row groups of 1000 rows, a new file once one holds
    `MAX_SHARD_BYTES` of Arrow data. `finish_all` names the files of every part of the split, once all are
    written: `<split>-NNNNN-of-NNNNN.parquet`, numbered across the parts."""

    def __init__(self, split: str, features: datasets.Features, folder: Path, part: str):
        self.split, self.features, self.folder, self.part = split, features, folder, part
        self.paths: list[Path] = []
        self.lengths: list[int] = []
        self.num_bytes = 0
        self.writer: ParquetWriter | None = None
        self.stream: pa.NativeFile | None = None
        self.shard_bytes = 0

    def write(self, table: pa.Table) -> None:
        if self.writer is None or self.shard_bytes > MAX_SHARD_BYTES:
            self._close_shard()
            self.paths.append(self.folder / f".{self.split}-{self.part}-{len(self.paths):05d}.parquet.part")
            # A native file, not the Python file object `path=` would open: Parquet then writes without taking the
            # GIL back for every page, and the thread preparing the next table does not stall it.
            self.stream = pa.OSFile(str(self.paths[-1]), "wb")
            self.writer = ParquetWriter(features=self.features, stream=self.stream, embed_local_files=True)
            self.shard_bytes = 0
        self.writer.write_table(table)
        self.shard_bytes += table.nbytes

    @staticmethod
    def finish_all(parts: list[_Shards]) -> datasets.SplitInfo:
        """Close every part's last file, give every file its final name, and return the split's `SplitInfo`."""
        for part in parts:
            part._close_shard()
        paths = [path for part in parts for path in part.paths]
        lengths = [length for part in parts for length in part.lengths]
        for index, path in enumerate(paths):
            path.rename(path.parent / SHARD_NAME.format(split=parts[0].split, index=index, count=len(paths)))
        return datasets.SplitInfo(
            name=parts[0].split,
            num_bytes=sum(part.num_bytes for part in parts),
            num_examples=sum(lengths),
            shard_lengths=lengths if len(lengths) > 1 else None,
            dataset_name=DATASET_NAME,
        )

    def _close_shard(self) -> None:
        if self.writer is not None:
            num_examples, num_bytes = self.writer.finalize()  # closes the stream too
            self.writer = None
            self.lengths.append(num_examples)
            self.num_bytes += num_bytes

    def close(self) -> None:
        """Release the open file, if any (after an error: the staging folder is removed anyway)."""
        if self.writer is not None:
            self.writer.close()
        if self.stream is not None and not self.stream.closed:
            self.stream.close()


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
