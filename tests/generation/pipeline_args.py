"""The `python -m generation.run` command line the pipeline tests share: the tiny random-weight VLM and CLIP scorer,
a threshold every caption passes, and 4 new tokens per caption."""

from __future__ import annotations

from pathlib import Path

from lovr_standins.tiny_models import tiny_model_path


def run_args(videos: Path, workdir: Path, *options: str) -> list[str]:
    """The whole pipeline on `videos` into `workdir` with the tiny models, followed by `options`."""
    return [
        "--videos",
        str(videos),
        "--workdir",
        str(workdir),
        "--model",
        str(tiny_model_path("vlm")),
        "--scorer_model",
        str(tiny_model_path("clip")),
        "--threshold",
        "2.0",
        "--max_new_tokens",
        "4",
        *options,
    ]
