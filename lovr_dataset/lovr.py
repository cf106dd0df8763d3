"""The LoVR `datasets` builder: configs `clips` (default), `videos` and `themes`, from any of three source layouts.

datasets >= 4 runs no loading scripts, so the builder is a class that code instantiates:

    from lovr_dataset import LoVR
    builder = LoVR(config_name="clips", data_dir="path/to/LoVR")   # a release, its Parquet copy, or a run folder
    builder.download_and_prepare()
    clips = builder.as_dataset()                 # DatasetDict: "train", "test"
    stream = builder.as_streaming_dataset()      # the same rows, read from the source on the fly

Splits and roles (what an evaluation needs):
- `clips` has the splits `test` (the query clips: their captions are the text->clip queries and the clips the
  clip->text queries) and `train` (every other clip). The text->clip gallery is every clip: `train` + `test`.
  Each row repeats its split in the column `split`, so a concatenated gallery still tells the queries apart.
  The source names the splits when it can (the Hub copy's `clip_train` / `clip_test` files); otherwise the
  queries are `num_queries` captioned clips drawn with seed `query_seed` (1000 in the official protocol; all
  captioned clips when fewer), and an export freezes that draw. A split that would be empty is left out;
  a source without a single clip (an empty release, a run whose every video failed) is refused with a ValueError.
- `videos` has one split, `test`: every video with clips or a caption (caption null where unknown).
- `themes` has one split, `test`: the theme text of a clip, where the source has theme texts.

Columns: `clip_path` is the clip's file relative to the data root (null for virtual clips, which are the time range
`start`..`end` of `video_path`); `video_path` is the full video's file relative to the video root (the data root
for a release; the run's `videos_dir` for a run folder). No video bytes are stored: `attach_video_root` adds a
lazily decoded `datasets.Video` column for users who have the files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import pyarrow as pa
from datasets.builder import Key

from .records import OTHER_SPLIT, QUERY_SPLIT, ReadOptions, Rows, SourceData
from .sources import fingerprint, read_source

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
LoVR: a benchmark for long-video retrieval. 467 long videos cut at scene changes into 40,804 clips, each clip
captioned in detail and the clip captions fused into one caption per video; evaluated text->clip, clip->text,
text->video, video->text (and theme->clip)."""

_CITATION = """\
@article{lovr2025,
  title   = {LoVR: A Benchmark for Long Video Retrieval in Multimodal Contexts},
  journal = {arXiv preprint arXiv:2505.13928},
  year    = {2025}
}"""

_HOMEPAGE = "https://arxiv.org/abs/2505.13928"
_LICENSE = "cc-by-nc-sa-4.0"

CLIP_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "clip_index": datasets.Value("int32"),
        "start": datasets.Value("float64"),
        "end": datasets.Value("float64"),
        "caption": datasets.Value("string"),
        "clip_path": datasets.Value("string"),
        "video_path": datasets.Value("string"),
        "split": datasets.Value("string"),
        "score": datasets.Value("float64"),
        "review": datasets.Value("string"),
    }
)
VIDEO_FEATURES = datasets.Features(
    {
        "video_id": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "duration": datasets.Value("float64"),
        "num_clips": datasets.Value("int32"),
        "clip_ids": datasets.List(datasets.Value("string")),
        "video_path": datasets.Value("string"),
    }
)
THEME_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "theme": datasets.Value("string"),
    }
)
FEATURES = {"clips": CLIP_FEATURES, "videos": VIDEO_FEATURES, "themes": THEME_FEATURES}
CONFIG_NAMES = tuple(FEATURES)
DATASET_NAME = "lovr"
TABLE_ROWS = 1000  # rows per Arrow table handed to the writer


def config_info(name: str) -> datasets.DatasetInfo:
    """The `DatasetInfo` of config `name` before any split is written: description, features, licence, citation."""
    return datasets.DatasetInfo(
        description=_DESCRIPTION, features=FEATURES[name], homepage=_HOMEPAGE, license=_LICENSE, citation=_CITATION
    )


def config_splits(data: SourceData, name: str) -> dict[str, Rows]:
    """The rows of config `name` by split, splits without rows left out: `clips` has `train` (the rest of the
    gallery) and `test` (the queries), `videos` and `themes` only `test`."""
    if name == "clips":
        split_of = data.clips.column("split")
        splits = {
            split: data.clips.select([value == split for value in split_of]) for split in (OTHER_SPLIT, QUERY_SPLIT)
        }
    else:
        splits = {QUERY_SPLIT: getattr(data, name)}
    return {split: rows for split, rows in splits.items() if len(rows)}


def arrow_tables(rows: Rows, features: datasets.Features) -> Iterator[pa.Table]:
    """`rows` as Arrow tables of `TABLE_ROWS` rows with the schema of `features`: what the builder hands to
    `datasets` and what the export writes.

    Whole Arrow tables rather than one dict per row: LoVR's captions are long, and per-row encoding through
    `Features.encode_example` costs more than the Parquet writing itself. Texts a reader left in Arrow
    (`records.ArrowText`) are copied Arrow to Arrow (`records.Rows.tables`)."""
    return rows.tables(features.arrow_schema, TABLE_ROWS)


@dataclass
class LoVRConfig(datasets.BuilderConfig):
    """BuilderConfig for LoVR.

    Args:
        num_queries (`int`, *optional*, defaults to 1000):
            How many captioned clips form the `test` (query) split when the source names no split.
        query_seed (`int`, *optional*, defaults to 0):
            Seed of that draw.
        missing_clip_files (`str`, *optional*, defaults to `"keep"`):
            What to do with a clip whose file the source lists but lacks: `"keep"` the row (and its declared path),
            `"drop"` it, or raise (`"error"`). Missing files are counted and logged in every case.
        skip_malformed (`bool`, *optional*, defaults to `False`):
            Skip (and count) malformed JSON Lines lines instead of failing on the first, named by file and line.
        skip_orphan_themes (`bool`, *optional*, defaults to `False`):
            Leave out (and count, in the read report's `orphan_themes`, and log) theme lines whose clip is not among
            the clips (after `missing_clip_files`), instead of failing on the first, named by file and line.

    Whatever the options, an id holding `/`, `\\` or `..` fails (named by file and line), and so does a clip
    file, clip folder, recorded clip path or merged video of a release that resolves through a symlink to a place
    outside `data_dir` (named with the place it resolves to).
    """

    num_queries: int = 1000
    query_seed: int = 0
    missing_clip_files: str = "keep"
    skip_malformed: bool = False
    skip_orphan_themes: bool = False

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            self.num_queries, self.query_seed, self.missing_clip_files, self.skip_malformed, self.skip_orphan_themes
        )


class LoVR(datasets.ArrowBasedBuilder):
    """LoVR clips, videos and theme texts, from an official release folder, its Hub Parquet copy or a run folder."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = LoVRConfig
    BUILDER_CONFIGS = [
        LoVRConfig(name="clips", version=VERSION, description="One row per clip; test = the query clips."),
        LoVRConfig(name="videos", version=VERSION, description="One row per long video."),
        LoVRConfig(name="themes", version=VERSION, description="One theme text per clip, where the source has them."),
    ]
    DEFAULT_CONFIG_NAME = "clips"

    def __init__(
        self, *args, data_dir: str | None = None, dataset_name: str = DATASET_NAME, hash: str | None = None, **kwargs
    ):
        if data_dir is None:
            raise ValueError("LoVR needs data_dir=<a LoVR release folder, its Hub Parquet copy, or a run folder>")
        # The cache is keyed by the source's content, so that an edited source is rebuilt rather than served stale.
        super().__init__(
            *args, data_dir=str(data_dir), dataset_name=dataset_name, hash=hash or fingerprint(data_dir), **kwargs
        )
        self.config.read_options()  # validate the options now, not halfway through a build

    def _info(self) -> datasets.DatasetInfo:
        return config_info(self.config.name)

    def _split_generators(self, dl_manager):
        # The source is read here, not in `_generate_examples`, so that bad input raises its own ValueError
        # rather than one wrapped in DatasetGenerationError.
        data = read_source(self.config.data_dir, self.config.read_options())
        return [
            datasets.SplitGenerator(name=name, gen_kwargs={"rows": rows})
            for name, rows in config_splits(data, self.config.name).items()
        ]

    def _generate_tables(self, rows):
        for batch, table in enumerate(arrow_tables(rows, self.info.features)):
            yield Key(0, batch), table
