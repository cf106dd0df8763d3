"""Statistics of a LoVR dataset for its card: gathered table by table while an export writes the rows
(`StatisticsAccumulator`), or computed from `datasets.Dataset` objects (`compute_statistics`), with one code.

Counts are of unique ids, so a query subset that repeats gallery clips in another split is not counted twice.
Word counts split on whitespace (`str.split`), the way a reader would count them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

# The Hub's size categories, upper bounds exclusive (https://huggingface.co/docs/hub/datasets-cards).
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


@dataclass(frozen=True)
class Distribution:
    """Min, median, mean and max of a list of numbers (all None when the list is empty)."""

    count: int
    min: float | None = None
    median: float | None = None
    mean: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Distribution:
        if not values:
            return cls(count=0)
        return cls(
            count=len(values),
            min=min(values),
            median=statistics.median(values),
            mean=statistics.fmean(values),
            max=max(values),
        )


@dataclass(frozen=True)
class DatasetStatistics:
    """What the card's "Statistics" section shows."""

    num_videos: int
    num_clips: int
    num_themes: int | None  # theme queries (one per clip that has a theme text)
    clips_per_video: Distribution
    clip_duration_s: Distribution
    video_duration_s: Distribution
    clip_caption_words: Distribution
    video_caption_words: Distribution
    total_video_hours: float


def size_category(num_rows: int) -> str:
    """The Hub size category of a dataset whose largest config has `num_rows` rows."""
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, but got num_rows={num_rows}")
    for bound, name in _SIZE_CATEGORIES:
        if num_rows < bound:
            return name
    return "n>1B"


_OTHER_ASCII_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"  # what `str.split` splits on in ASCII, besides " "


def word_count(text: str) -> int:
    """`len(text.split())`, without building the list of words where the text allows.

    LoVR's captions are ASCII words between single spaces: then the words are the spaces plus one, which `str.count`
    finds 2x faster than `str.split` builds them (~49M words at full scale). Anything else (other whitespace, doubled,
    leading or trailing spaces, non-ASCII text with its Unicode spaces) is counted by `str.split` itself."""
    if (
        text.isascii()
        and text[:1] != " "
        and text[-1:] != " "
        and "  " not in text
        and not any(space in text for space in _OTHER_ASCII_SPACES)
    ):
        return text.count(" ") + 1 if text else 0
    return len(text.split())


def _word_counts(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """The words of each non-null string of `column`, as `str.split` counts them, one chunk at a time."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return [word_count(text) for chunk in chunks for text in chunk.to_pylist() if text is not None]


def _durations(table: pa.Table) -> list[float]:
    """`end - start` of the clips whose source gave timings."""
    if "start" not in table.column_names or "end" not in table.column_names:
        return []
    return pc.drop_null(pc.subtract(table["end"], table["start"])).to_pylist()


def _arrow(dataset: Dataset) -> pa.Table:
    """The dataset's rows as one Arrow table (honouring any `select`/`shuffle` indices mapping)."""
    return dataset.with_format("arrow")[:]


def _require_columns(table: pa.Table, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"the {what} dataset lacks columns {missing}; it has {table.column_names}")


def _first_rows(table: pa.Table, key: str, seen: set) -> pa.Table:
    """The rows of `table` whose `key` is not in `seen` nor earlier in `table`; `seen` gains their keys."""
    keep = [value not in seen and not seen.add(value) for value in table[key].to_pylist()]
    return table if all(keep) else table.filter(pa.array(keep, pa.bool_()))


class StatisticsAccumulator:
    """The card's statistics gathered table by table, as the rows are written: one pass, nothing read back.

    Feed it the rows of every split of each config as Arrow tables (any chunking), then call `result()`. A clip or
    video id seen before counts once (its first row), as `compute_statistics` counts unique ids.

        stats = StatisticsAccumulator()
        for table in clip_tables: stats.add_clips(table)
        for table in video_tables: stats.add_videos(table)
        card_stats = stats.result()
    """

    def __init__(self) -> None:
        self._clip_ids: set = set()
        self._video_ids: set = set()
        self._theme_ids: set | None = None  # None: no themes config
        self._clips_per_video: Counter = Counter()
        self._clip_durations: list[float] = []
        self._clip_words: list[int] = []
        self._video_durations: list[float] = []
        self._video_words: list[int] = []

    def add_clips(self, table: pa.Table) -> None:
        _require_columns(table, ["video_id", "clip_id", "caption"], "clips")
        table = _first_rows(table, "clip_id", self._clip_ids)
        self._clips_per_video.update(table["video_id"].to_pylist())
        self._clip_durations += _durations(table)
        self._clip_words += _word_counts(table["caption"])

    def add_videos(self, table: pa.Table) -> None:
        _require_columns(table, ["video_id", "caption", "duration"], "videos")
        table = _first_rows(table, "video_id", self._video_ids)
        self._video_durations += pc.drop_null(table["duration"]).to_pylist()
        self._video_words += _word_counts(table["caption"])

    def add_themes(self, table: pa.Table) -> None:
        _require_columns(table, ["clip_id", "theme"], "themes")
        if self._theme_ids is None:
            self._theme_ids = set()
        self._theme_ids.update(table["clip_id"].to_pylist())

    def result(self) -> DatasetStatistics:
        return DatasetStatistics(
            num_videos=len(self._video_ids),
            num_clips=len(self._clip_ids),
            num_themes=None if self._theme_ids is None else len(self._theme_ids),
            clips_per_video=Distribution.of(list(self._clips_per_video.values())),
            clip_duration_s=Distribution.of(self._clip_durations),
            video_duration_s=Distribution.of(self._video_durations),
            clip_caption_words=Distribution.of(self._clip_words),
            video_caption_words=Distribution.of(self._video_words),
            total_video_hours=sum(self._video_durations) / 3600,
        )


def compute_statistics(clips: Dataset, videos: Dataset, themes: Dataset | None = None) -> DatasetStatistics:
    """Counts and distributions of the `clips` and `videos` configs (all splits concatenated)."""
    stats = StatisticsAccumulator()
    clip_table, video_table = _arrow(clips), _arrow(videos)
    _require_columns(clip_table, ["video_id", "clip_id", "caption"], "clips")
    _require_columns(video_table, ["video_id", "caption", "duration"], "videos")
    stats.add_clips(clip_table)
    stats.add_videos(video_table)
    if themes is not None:
        stats.add_themes(_arrow(themes))
    return stats.result()
