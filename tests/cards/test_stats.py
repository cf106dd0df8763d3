import random

import pyarrow as pa
import pytest
from datasets import Dataset

from model_cards.stats import (
    Distribution,
    StatisticsAccumulator,
    compute_statistics,
    size_category,
    word_count,
)

from .conftest import CLIPS, VIDEOS


def test_statistics_of_hand_made_dataset():
    # The query split repeats two gallery clips: unique clip ids count once.
    clips = Dataset.from_dict({k: v + v[:2] for k, v in CLIPS.items()})
    stats = compute_statistics(clips, Dataset.from_dict(VIDEOS))
    assert (stats.num_videos, stats.num_clips, stats.num_themes) == (2, 4, None)
    # vidA has 3 clips, -vidB 1 -> median 2, mean 2
    assert stats.clips_per_video == Distribution(count=2, min=1, median=2, mean=2, max=3)
    # durations 5, 7, 18, 6 -> sorted 5 6 7 18: median 6.5, mean 36 / 4 = 9
    assert stats.clip_duration_s == Distribution(count=4, min=5.0, median=6.5, mean=9.0, max=18.0)
    # caption words 4, 2, 6, 3 -> median 3.5, mean 15 / 4 = 3.75
    assert stats.clip_caption_words == Distribution(count=4, min=2, median=3.5, mean=3.75, max=6)
    # video captions 11 and 5 words; durations 30 s and 6 s -> 36 s = 0.01 h
    assert stats.video_caption_words == Distribution(count=2, min=5, median=8.0, mean=8.0, max=11)
    assert stats.video_duration_s == Distribution(count=2, min=6.0, median=18.0, mean=18.0, max=30.0)
    assert stats.total_video_hours == pytest.approx(36 / 3600)


def test_statistics_skip_missing_timings_and_captions_and_count_themes():
    clips = Dataset.from_dict({**CLIPS, "start": [0.0, None, 1.0, None], "caption": [None, "a b", "c", None]})
    themes = Dataset.from_dict(
        {"clip_id": ["vidA-Scene-001", "vidA-Scene-002"], "video_id": ["vidA"] * 2, "theme": ["cycling", "cycling"]}
    )
    stats = compute_statistics(clips, Dataset.from_dict(VIDEOS), themes)
    # only clips 1 (0..5) and 3 (1..30) have timings -> 5 and 29
    assert stats.clip_duration_s == Distribution(count=2, min=5.0, median=17.0, mean=17.0, max=29.0)
    assert stats.clip_caption_words == Distribution(count=2, min=1, median=1.5, mean=1.5, max=2)
    assert stats.num_themes == 2


def test_caption_words_are_counted_as_str_split_counts_them():
    # A caption ending in a newline, one with leading and doubled spaces, Unicode spaces, and an empty one.
    captions = ["a man rides.\n", "  two  words ", "x\u2003y\u00a0z", ""]
    stats = compute_statistics(Dataset.from_dict({**CLIPS, "caption": captions}), Dataset.from_dict(VIDEOS))
    words = sorted(len(caption.split()) for caption in captions)  # 0, 2, 3, 3
    assert words == [0, 2, 3, 3]
    assert stats.clip_caption_words == Distribution(count=4, min=0, median=2.5, mean=2.0, max=3)


def test_statistics_name_missing_columns():
    with pytest.raises(ValueError, match=r"clips dataset lacks columns \['caption'\]"):
        compute_statistics(Dataset.from_dict({"video_id": ["a"], "clip_id": ["a-1"]}), Dataset.from_dict(VIDEOS))


@pytest.mark.parametrize(
    "rows, expected",
    [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (40_804, "10K<n<100K"), (100_000, "100K<n<1M")],
)
def test_size_category(rows, expected):
    assert size_category(rows) == expected


def test_size_category_rejects_negative():
    with pytest.raises(ValueError, match="num_rows=-1"):
        size_category(-1)


def test_word_count_equals_str_split_on_any_text():
    # The fast path (ASCII words between single spaces) and every way out of it: other whitespace, doubled, leading
    # and trailing spaces, Unicode spaces, empty text.
    alphabet = [
        "a",
        "b",
        " ",
        " ",
        "\t",
        "\n",
        "\x0b",
        "\x0c",
        "\r",
        "\x1c",
        "\x1f",
        "\x85",
        "\xa0",
        "\u2003",
        "é",
        ".",
    ]
    rng = random.Random(0)
    texts = ["", " ", "a", "a b", "a  b", " a", "a ", "x\u3000y", "a\u200bb"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(5000)]
    assert [word_count(text) for text in texts] == [len(text.split()) for text in texts]


def test_accumulated_statistics_equal_the_computed_ones():
    # Fed in chunks, with a clip repeated in a later chunk (counted once), as an export feeds the tables it writes.
    clips = {k: v + v[:1] for k, v in CLIPS.items()}
    themes = {"clip_id": ["vidA-Scene-001", "vidA-Scene-002"], "video_id": ["vidA"] * 2, "theme": ["a", "b"]}
    expected = compute_statistics(Dataset.from_dict(clips), Dataset.from_dict(VIDEOS), Dataset.from_dict(themes))
    stats = StatisticsAccumulator()
    table = pa.Table.from_pydict(clips)
    for start in range(0, len(table), 2):
        stats.add_clips(table.slice(start, 2))
    stats.add_videos(pa.Table.from_pydict(VIDEOS))
    stats.add_themes(pa.Table.from_pydict(themes))
    assert stats.result() == expected
    assert expected.num_clips == 4 and expected.num_themes == 2


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_caption_words_of_arrow_chunks_equal_str_split(chunk_rows):
    # Chunks of plain ASCII words (counted from their spaces) beside chunks that are not, with empty, null, leading-
    # and trailing-space captions, and sliced chunks whose buffers hold text outside the slice.
    rng = random.Random(1)
    words = ["a", "bb", "ccc", " ", "  ", "\t", "é", "\u2003"]
    texts = [None, "", " ", "plain words here", " lead", "trail ", "x"]
    texts += ["".join(rng.choice(words) for _ in range(rng.randrange(8))) for _ in range(3000)]
    texts += [" ".join(rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randrange(1, 9))) for _ in range(3000)]
    array = pa.array(texts, pa.string())
    column = pa.chunked_array([array.slice(start, chunk_rows) for start in range(0, len(texts), chunk_rows)])
    stats = compute_statistics(
        Dataset(
            pa.table(
                {
                    **{k: pa.array([v[0]] * len(texts)) for k, v in CLIPS.items() if k != "caption"},
                    "clip_id": pa.array([str(i) for i in range(len(texts))]),
                    "caption": column,
                }
            )
        ),
        Dataset.from_dict(VIDEOS),
    )
    assert stats.clip_caption_words == Distribution.of([len(text.split()) for text in texts if text is not None])
