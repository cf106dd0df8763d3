"""The query texts' token counts (`settings.text_lengths` of results.json): tokenized by a first run, read from the
text cache by a re-run, with CLIP's real tokenizer.

    python benchmarks/bench_token_counts.py [--scale 0.05] [--repeats 3]

`evaluate` records how the query texts compare with the text encoder's token limit. Counting is tokenizing every
query text whole: LoVR's 40,804 clip captions of about 1,000 words and 467 video captions of about 17,000. A re-run
on the same texts with the same text encoder (every embedding cached) reads the counts its first run kept
(`runner._token_counts`). The texts here are English: the bundled captions (`lovr_standins.captions`) joined in turn
to those lengths, `--scale` of LoVR's number of each. The tokenizer is the tiny CLIP stand-in's, which is CLIP's own
(its BPE vocabulary). Both paths run on the same texts, taking turns; the fastest of `--repeats` counts.
Target: the re-run's read <= 0.01x the count. The full-scale figure is the count's time per word times LoVR's words.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

from targets import Target, report

from lovr_common.long_text import TokenCounts
from lovr_metric.evaluation.embedding import EmbeddingCache, text_key
from lovr_metric.evaluation.runner import _token_counts
from lovr_standins.captions import SAMPLE_CAPTION_PAIRS
from lovr_standins.tiny_models import tiny_model_path

NUM_CLIPS, NUM_VIDEOS, CLIP_WORDS, VIDEO_WORDS = 40_804, 467, 1_000, 17_000
TARGET = 0.01


class ClipTokenizerCounts:
    """A text encoder's token counting as the CLIP encoder does it (`lovr_common.encoders`), without its model."""

    def __init__(self, tokenizer, max_length: int = 77):
        self.tokenizer, self.max_length, self.calls = tokenizer, max_length, 0

    def token_counts(self, texts: list[str]) -> TokenCounts:
        self.calls += 1
        return TokenCounts.of(self.tokenizer, texts, self.max_length)


def english_texts(scale: float) -> list[str]:
    """Clip captions of `CLIP_WORDS` words and video captions of `VIDEO_WORDS`, each a different run of the bundled
    captions (so no two texts are equal)."""
    words = " ".join(caption for pair in SAMPLE_CAPTION_PAIRS for caption in pair).split()
    texts = []
    for index, length in enumerate(
        [CLIP_WORDS] * max(1, round(NUM_CLIPS * scale)) + [VIDEO_WORDS] * max(1, round(NUM_VIDEOS * scale))
    ):
        start = index % len(words)
        texts.append(f"{index} " + " ".join((words * (length // len(words) + 2))[start : start + length]))
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05, help="Fraction of LoVR's 40,804 clips and 467 videos.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each path, taking turns; the fastest counts.")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    folder = Path(tempfile.mkdtemp(prefix="lovr-bench-tokens-"))
    try:
        encoder = ClipTokenizerCounts(AutoTokenizer.from_pretrained(tiny_model_path("clip", folder / "models")))
        texts = english_texts(args.scale)
        keys = {"clip": [text_key(text) for text in texts]}
        count, read = [], []
        for repeat in range(args.repeats):
            cache = EmbeddingCache(folder / "cache", "bench", {"repeat": repeat})
            started = time.perf_counter()
            counted, record = _token_counts(encoder, texts, keys, cache)  # the first run: tokenized
            count.append(time.perf_counter() - started)
            cache.put_records([record])  # kept, as evaluate keeps it
            cache.merge()
            cache = EmbeddingCache(folder / "cache", "bench", {"repeat": repeat})  # a new process's view
            started = time.perf_counter()
            again, record = _token_counts(encoder, texts, keys, cache)
            read.append(time.perf_counter() - started)
            if again != counted or record is not None or encoder.calls != repeat + 1:
                raise RuntimeError("the re-run did not read the counts the first run kept")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    words = sum(len(text.split()) for text in texts)
    full_words = NUM_CLIPS * CLIP_WORDS + NUM_VIDEOS * VIDEO_WORDS
    print(f"\n{len(texts):,} English texts, {words:,} words, CLIP's tokenizer (fastest of {args.repeats})")
    print("| path | seconds | ratio to the count |")
    print("|---|---|---|")
    print(f"| first run: tokenize every query text | {min(count):.2f} | 1.00x |")
    print(f"| re-run: read the counts kept | {min(read):.4f} | {min(read) / min(count):.4f}x |")
    print(
        f"\nAt LoVR's scale ({full_words:,} words) the count takes about {min(count) * full_words / words:.0f} s here."
    )
    share = 100 * min(read) / min(count)
    return report([Target("re-run's read / count", share, 100 * TARGET, unit="%")], f"scale {args.scale:g}")


if __name__ == "__main__":
    sys.exit(main())
