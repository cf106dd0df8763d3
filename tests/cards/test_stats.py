import random

import pyarrow as pa
import pytest
from datasets import Dataset

from model_cards import stats
from model_cards.stats import (
    Distribution,
    StatisticsAccumulator,
    compute_statistics,
    size_category,
    word_counts,
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


# Every ASCII character (str.split splits on 0x09-0x0D, 0x1C-0x1F and space: CPython's _Py_ascii_whitespace), the
# Unicode spaces it splits on beyond ASCII, and non-ASCII characters that are no space (a zero-width space among them).
TRICKY = [chr(code) for code in range(128)] + ["\x85", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u3000"]
TRICKY += ["é", "\u200b", "\U0001f600"]


def tricky_texts(seed: int, count: int) -> list[str | None]:
    """Hand-picked edge cases, then random texts: runs of tricky characters between words, and plain captions."""
    rng = random.Random(seed)
    texts = [None, "", " ", "  ", "\t", "a", "a b", "a  b", " a", "a ", " a b ", "a\tb", "a\x1cb\x1fc", "a\x1bb"]
    texts += ["a\xa0b", "a\u2028b", "\u3000", "x\x85y", "a\x00b", "a\x7fb", "\n\r\x0b\x0c", None, "é é"]
    texts += ["a b", "\u3000x\u2003y", "\u2028", "\xa0z\xa0"]  # non-ASCII opening a string that follows another
    for _ in range(count):
        if rng.random() < 0.5:
            texts.append("".join(rng.choice([*TRICKY, "word", "w", " "]) for _ in range(rng.randrange(10))))
        else:
            texts.append(" ".join(rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randrange(1, 12))))
        if rng.random() < 0.05:
            texts.append(None)
    return texts


@pytest.mark.parametrize("block_bytes", [1, 16, stats._BLOCK_BYTES])
@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string(), pa.string_view()])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000, 10_000])
def test_word_counts_equal_str_split(monkeypatch, block_bytes, string_type, chunk_rows):
    # Chunks of every size, sliced out of one array (their buffers hold text outside the slice), counted a string, a
    # few or all at a time, each against a naive len(str.split()) per non-null string; string_view has no offsets
    # buffer and takes the str.split path.
    monkeypatch.setattr(stats, "_BLOCK_BYTES", block_bytes)
    texts = tricky_texts(seed=chunk_rows, count=3000)
    array = pa.array(texts, string_type)
    column = pa.chunked_array([array.slice(start, chunk_rows) for start in range(0, len(texts), chunk_rows)])
    expected = [len(text.split()) for text in texts if text is not None]
    assert word_counts(column) == expected
    assert word_counts(array) == expected
    assert word_counts(array.slice(5, 40)) == [len(text.split()) for text in texts[5:45] if text is not None]


def test_word_counts_of_empty_all_null_and_null_slots_holding_text():
    assert word_counts(pa.chunked_array([], pa.string())) == []
    assert word_counts(pa.array([], pa.string())) == []
    assert word_counts(pa.array([None, None], pa.string())) == []
    assert word_counts(pa.array(["", ""], pa.string())) == [0, 0]
    # A null slot may span bytes (Arrow leaves them unspecified): "x y" and "é z" under nulls count for nothing.
    data = "a b" + "x y" + "c" + "é z"
    offsets = [0, 3, 6, 7, 7 + len("é z".encode())]
    validity = pa.array([True, False, True, False]).buffers()[1]
    array = pa.Array.from_buffers(
        pa.string(), 4, [validity, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(data.encode())]
    )
    assert array.to_pylist() == ["a b", None, "c", None]
    assert word_counts(array) == [2, 1]
