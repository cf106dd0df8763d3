"""Two ranks fill one text cache with `encode_texts`, the main rank starting late or early (a test of the split).

    accelerate launch --multi_gpu --num_processes 2 tests/metric/late_rank_texts.py CACHE_ROOT {main|other} N

The rank named by the second argument sleeps before it reads the cache, as a rank that starts slower than the
other. The other rank's share may then already be written when it reads; unless every rank splits the list it read
before any writes, the late one splits a shorter list and some texts are embedded by neither. Prints the number of
texts the merged cache lacks (the main rank), and exits 1 when it is not 0.
"""

import sys
import time

import numpy as np
import torch

from lovr_common.processes import process_state
from lovr_metric.evaluation.embedding import EmbeddingCache, encode_texts, sync, text_key

LATE_SECONDS = 3.0


class CodePointEncoder:
    """A stand-in text encoder: each text's vector counts its characters' code points, folded into 8 bins."""

    calls = 0  # the text encoders' protocol

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        rows = [np.bincount([ord(c) % 8 for c in text], minlength=8).astype(np.float32) + 1 for text in texts]
        return torch.from_numpy(np.stack(rows))


def main() -> int:
    root, late, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    state = process_state()
    if state.num_processes != 2:
        print(f"expected 2 ranks, got {state.num_processes}")
        return 1
    if state.is_main_process == (late == "main"):
        time.sleep(LATE_SECONDS)
    cache = EmbeddingCache(root, "counting", {"kind": "text"}, state.process_index)
    texts = [f"text number {n}" for n in range(count)]
    encode_texts(CodePointEncoder(), cache, texts, batch_size=2)
    sync(cache)
    if not state.is_main_process:
        return 0
    missing = [t for t in texts if not cache.has("text", text_key(t))]
    print(f"missing {len(missing)} of {count}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
