"""The human-readable outputs of an evaluation: `results.md` (a Markdown table) and `pass_at_k.png`."""

from __future__ import annotations

import re
from pathlib import Path

RANDOM_WEIGHTS_WARNING = (
    "> **WARNING: random weights.** These numbers come from a tiny random-weight stand-in model built for offline "
    "tests. They are MEANINGLESS and must not be compared with or reported as results of any real model."
)
DIRECTIONS = {"text_to_video": "text → {item}", "video_to_text": "{item} → text"}
ITEM = {"clip": "clip", "video": "video", "theme": "clip"}
COLUMNS = ("pass@1", "pass@5", "pass@10", "recall@10", "mrr", "ndcg@10", "median_rank", "mean_rank", "num_queries")


def _direction_rows(metrics: dict[str, dict]) -> list[tuple[str, dict[str, float]]]:
    """(label, {metric: value}) per granularity and direction, e.g. ("theme → clip", {"pass@1": 0.2, ...})."""
    rows = []
    for granularity, values in metrics.items():
        for direction, label in DIRECTIONS.items():
            found = {key[len(direction) + 1 :]: v for key, v in values.items() if key.startswith(direction + "_")}
            if found:
                name = label.format(item=ITEM[granularity])
                rows.append(("theme → clip" if granularity == "theme" else name, found))
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return str(int(value)) if isinstance(value, (int, float)) else str(value)


def results_markdown(results: dict) -> str:
    """The Markdown table of `results` (the dict written to results.json)."""
    lines = [f"# LoVR retrieval: `{results['model']}`", ""]
    if results["random_weights"]:
        lines += [RANDOM_WEIGHTS_WARNING, ""]
    if results["text_model"]:
        lines += [f"Text model: `{results['text_model']}`", ""]
    lines += [f"Dataset: `{results['dataset']}`", ""]
    lines += ["| direction | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, values in _direction_rows(results["metrics"]):
        lines.append(f"| {label} | " + " | ".join(_cell(values.get(column)) for column in COLUMNS) + " |")
    lines += ["", "Pass@k is the share of queries with a relevant item in the top k (CLIP4Clip's R@k).", ""]
    costs = results["cost_ms"]
    if costs:
        lines += ["| cost (ms) | decode | preprocess | encode | total with decoding | total without decoding |"]
        lines += ["|---|---|---|---|---|---|"]
        for kind, parts in costs.items():
            order = ("decode", "preprocess", "encode", "total_with_io", "total_without_io")
            lines.append(f"| per {kind} | " + " | ".join(f"{parts[p]:.1f}" for p in order) + " |")
        lines.append("")
    if results["num_failed_videos"]:
        lines += [f"{results['num_failed_videos']} video file(s) could not be decoded: see results.json.", ""]
    return "\n".join(lines)


def plot_pass_at_k(results: dict, path: Path) -> None:
    """Pass@k against k, one line per direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in _direction_rows(results["metrics"]):
        points = sorted((int(m.group(1)), v) for key, v in values.items() if (m := re.fullmatch(r"pass@(\d+)", key)))
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    title = results["model"] + (" (RANDOM WEIGHTS: meaningless)" if results["random_weights"] else "")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
