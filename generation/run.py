"""Stage 5: the whole LoVR construction pipeline, segment -> caption -> refine -> fuse, in one process group.

    accelerate launch -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-7B-Instruct \
        --scorer_model openai/clip-vit-base-patch32 --threshold 0.25 --fuse_model Qwen/Qwen2.5-7B-Instruct
    python -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-72B-Instruct --endpoint http://localhost:8000/v1 \
        --threshold 0.25 --scorer_model openai/clip-vit-base-patch32

Each stage runs through its own `main`, so each behaves exactly as its own command (sharded over the processes
of `accelerate launch`, resumable): a rerun skips what is done and retries what failed. `--model` / `--endpoint`
caption and re-caption; `--fuse_model` / `--fuse_endpoint` fuse (default: the captioning model, which also
answers text-only requests). Refinement runs when `--threshold` and `--scorer_model` are given, else it is
skipped and said so. A stage whose items partly fail does not stop the run (later stages skip what is missing);
a stage that cannot run at all (bad arguments, missing input, a damaged stage file) stops it. The run ends with a
summary read from `W` and exits with status 1 when anything failed. The run folder is locked from the first stage
to the summary (`generation._stage.workdir_lock`): a second run or stage on the same `--workdir` is refused at
once, naming the pid that holds it. `--do_sample false` decodes greedily in every stage, so that the captions do
not depend on batch composition, process count or interruptions; the other sampling options reach the stages
named in their help.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from transformers import HfArgumentParser

from generation import caption, fuse, refine, segment
from generation._stage import WorkdirBusyError, load_records, workdir_lock

logger = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Arguments of `generation.run`; each stage's other options keep their defaults.

    Args:
        videos (`str`): the folder of source videos.
        workdir (`str`): the run folder.
        model (`str`): the captioning VLM (Hub id or local folder; the model name at `endpoint`).
        endpoint (`str`, *optional*): an OpenAI-compatible server for the captioning model.
        threshold (`float`, *optional*): refinement threshold; refinement is skipped without it.
        scorer (`str`, *optional*, defaults to "evqa"): "evqa" or "judge".
        scorer_model (`str`, *optional*): the scorer's model; refinement is skipped without it.
        fuse_model (`str`, *optional*): the fusion LLM (default: `model`).
        fuse_endpoint (`str`, *optional*): an OpenAI-compatible server for the fusion LLM.
        max_new_tokens (`int`, *optional*, defaults to 1024): most tokens per caption and per fusion call.
        batch_size (`int`, *optional*, defaults to 8): clips per captioning call.
        recursive (`bool`, *optional*, defaults to False): also take the videos of the subfolders of `videos`.
        temperature, top_p, repetition_penalty, seed (*optional*): sampling settings of captioning (default: LoVR's,
            `generation.backends.GenerationParams`); refinement's re-captions keep the penalty and escalate the
            others from the first caption's (`generation.refine.ESCALATION`).
        do_sample (`bool`, *optional*): `--do_sample false` decodes greedily in every stage (fusion too, unless
            `fuse_do_sample` says otherwise), so that no caption depends on batch composition or interruptions.
        fuse_temperature (`float`, *optional*): fusion's temperature (default: `generation.fuse`'s, 0.5).
        fuse_seed (`int`, *optional*): fusion's seed (default: `seed`).
        fuse_do_sample (`bool`, *optional*): whether fusion samples (default: `do_sample`).
    """

    videos: str = field(metadata={"help": "Folder of source videos."})
    workdir: str = field(metadata={"help": "Run folder W."})
    model: str = field(metadata={"help": "Captioning VLM: Hub id or local folder (the model name at --endpoint)."})
    endpoint: str | None = field(default=None, metadata={"help": "OpenAI-compatible server of the captioning model."})
    threshold: float | None = field(default=None, metadata={"help": "Refinement threshold (no refinement without)."})
    scorer: str = field(default="evqa", metadata={"help": "evqa or judge."})
    scorer_model: str | None = field(default=None, metadata={"help": "Scorer model (no refinement without)."})
    fuse_model: str | None = field(default=None, metadata={"help": "Fusion LLM (default: --model)."})
    fuse_endpoint: str | None = field(default=None, metadata={"help": "OpenAI-compatible server of the fusion LLM."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Most tokens per caption and per fusion call."})
    batch_size: int = field(default=8, metadata={"help": "Clips per captioning call."})
    recursive: bool = field(default=False, metadata={"help": "Also take the videos of its subfolders."})
    temperature: float | None = field(default=None, metadata={"help": "Captioning temperature (LoVR: 0.9)."})
    top_p: float | None = field(default=None, metadata={"help": "Captioning nucleus mass (LoVR: 0.001)."})
    repetition_penalty: float | None = field(default=None, metadata={"help": "Captioning penalty (LoVR: 1.05)."})
    seed: int | None = field(default=None, metadata={"help": "Captioning seed, and fusion's unless --fuse_seed."})
    do_sample: bool | None = field(
        default=None, metadata={"help": "`--do_sample false`: greedy decoding in every stage (default: sample)."}
    )
    fuse_temperature: float | None = field(default=None, metadata={"help": "Fusion temperature (LoVR: 0.5)."})
    fuse_seed: int | None = field(default=None, metadata={"help": "Fusion seed (default: --seed)."})
    fuse_do_sample: bool | None = field(
        default=None, metadata={"help": "Whether fusion samples (default: --do_sample)."}
    )


def _opt(name: str, value) -> list[str]:
    return [] if value is None else [f"--{name}", str(value)]


def stage_commands(config: RunConfig) -> list[tuple[str, Callable[[list[str]], int] | None, list[str]]]:
    """(name, stage main or None when skipped, its arguments), in order."""
    w = ["--workdir", config.workdir]
    model = ["--model", config.model, *_opt("endpoint", config.endpoint)]
    tokens = ["--max_new_tokens", str(config.max_new_tokens)]
    sampling = [
        *_opt("temperature", config.temperature),
        *_opt("top_p", config.top_p),
        *_opt("repetition_penalty", config.repetition_penalty),
        *_opt("seed", config.seed),
        *_opt("do_sample", config.do_sample),
    ]
    fuse_sampling = [
        *_opt("temperature", config.fuse_temperature),
        *_opt("seed", config.seed if config.fuse_seed is None else config.fuse_seed),
        *_opt("do_sample", config.do_sample if config.fuse_do_sample is None else config.fuse_do_sample),
    ]
    refining = config.threshold is not None and config.scorer_model is not None
    fuse_model = ["--model", config.fuse_model or config.model, *_opt("endpoint", config.fuse_endpoint)]
    if config.fuse_model is None and config.fuse_endpoint is None:
        fuse_model += _opt("endpoint", config.endpoint)
    return [
        ("segment", segment.main, ["--videos", config.videos, *w, *(["--recursive"] if config.recursive else [])]),
        ("caption", caption.main, [*w, *model, *tokens, *sampling, "--batch_size", str(config.batch_size)]),
        (
            "refine",
            refine.main if refining else None,
            [
                *w,
                *model,
                *tokens,
                *sampling,
                "--scorer",
                config.scorer,
                *_opt("scorer_model", config.scorer_model),
                *_opt("threshold", config.threshold),
            ],
        ),  # fmt: skip
        ("fuse", fuse.main, [*w, *fuse_model, *tokens, *fuse_sampling]),
    ]


def summarize(workdir: str | Path) -> str:
    """Counts of what the run folder holds, stage by stage."""
    videos = load_records(workdir, "segments", "video_id")
    captions = load_records(workdir, "captions", "clip_id")
    fused = load_records(workdir, "videos", "video_id")
    n_clips = sum(len(v.get("clips") or []) for v in videos.values())
    ok = lambda records: sum(r.get("status") == "ok" for r in records.values())  # noqa: E731
    fallbacks = sum(b["status"] == "fallback" for r in fused.values() for b in r.get("boundaries", []))
    return "\n".join(
        [
            f"segment: {ok(videos)} of {len(videos)} videos cut into {n_clips} clips",
            f"caption: {ok(captions)} of {n_clips} clips captioned",
            f"refine:  {sum('score' in r for r in captions.values())} scored, "
            f"{sum(r.get('review') == 'pending' for r in captions.values())} pending human review",
            f"fuse:    {ok(fused)} of {len(videos)} videos fused, {fallbacks} boundaries fell back to concatenation",
        ]
    )


def run(config: RunConfig) -> int:
    """Run every stage in order, the run folder locked throughout; 0 when nothing failed."""
    state = PartialState()
    statuses = {}
    with workdir_lock(config.workdir):
        for name, stage_main, args in stage_commands(config):
            if stage_main is None:
                statuses[name] = "skipped (needs --threshold and --scorer_model)"
                continue
            try:
                code = stage_main(args)
            except ValueError as err:
                statuses[name] = f"could not run: {err}"
                break
            statuses[name] = "ok" if code == 0 else "some items failed (see failures.jsonl)"
        try:
            summary = summarize(config.workdir)
        except ValueError as err:  # a damaged stage file: said by the stage that read it, or here
            statuses["summary"] = f"could not read the run folder: {err}"
            summary = None
    if state.is_main_process:
        print("\n".join(f"{name}: {status}" for name, status in statuses.items()))
        if summary is not None:
            print(summary)
    return 0 if all(s == "ok" or s.startswith("skipped") for s in statuses.values()) and "fuse" in statuses else 1


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = HfArgumentParser(RunConfig).parse_args_into_dataclasses(args=argv)
    try:
        return run(config)
    except WorkdirBusyError as err:
        raise SystemExit(f"generation.run: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
