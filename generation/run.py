"""Stage 5: the whole LoVR construction pipeline, segment -> caption -> refine -> fuse, in one process group.

    accelerate launch -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-7B-Instruct \
        --scorer_model openai/clip-vit-base-patch32 --threshold 0.25 --fuse_model Qwen/Qwen2.5-7B-Instruct
    python -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-72B-Instruct --endpoint http://localhost:8000/v1 \
        --threshold 0.25 --scorer_model openai/clip-vit-base-patch32

Each stage runs through its own `run`, with the configs `stage_configs` composes, so each behaves exactly as its
own command (sharded over the processes of `accelerate launch`, resumable, printing its report): a rerun skips what
is done and retries what failed. `--model` / `--endpoint`
caption and re-caption; `--fuse_model` / `--fuse_endpoint` fuse (default: the captioning model, which also
answers text-only requests). Refinement runs when `--threshold` and `--scorer_model` are given, else it is
skipped and said so. A stage whose items partly fail does not stop the run (later stages skip what is missing);
a stage that cannot run at all (bad arguments, missing input, a damaged stage file) stops it. The run ends with a
summary read from `W` and exits with status 1 when anything failed. The run folder is locked from the first stage
to the summary (`lovr_common.run_folder.workdir_lock`): a second run or stage on the same `--workdir` is refused at
once, naming the pid that holds it. `--do_sample false` decodes greedily in every stage, so that the captions do
not depend on batch composition, process count or interruptions; the other sampling options reach the stages
named in their help. `--dtype` and `--trust_remote_code` reach the captioning and fusion models, `--revision` the
captioning model (and fusion when it uses that model), `--image_processor_backend` captioning and re-captioning;
refinement's scorer (`--scorer_model`) is loaded with the defaults (PIL's image processor, the checkpoint's dtype).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generation import caption, fuse, refine, segment
from generation._scenes import DetectionSettings
from generation.backends import BackendArguments, GenerationParams, image_processor_backend_field
from generation.stage import StageSummary, stage_main
from lovr_common.processes import process_state
from lovr_common.run_folder import CAPTIONS, SEGMENTS, VIDEOS, load_records, workdir_lock

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
        revision (`str`, *optional*): the revision of `model`, and of the fusion model when that is `model` too.
        dtype (`str`, *optional*, defaults to "auto"): torch dtype of the local captioning and fusion models.
        image_processor_backend (`str`, *optional*, defaults to "pil"): a local VLM's image processor, for
            captioning and re-captioning (`generation.backends.BackendArguments`).
        trust_remote_code (`bool`, *optional*, defaults to False): run the repositories' own code, for the captioning
            and fusion models.
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
    revision: str | None = field(
        default=None, metadata={"help": "Revision of --model (and of fusion's model when it is --model)."}
    )
    dtype: str = field(
        default="auto", metadata={"help": "torch dtype of the captioning and fusion models: auto, bfloat16..."}
    )
    image_processor_backend: str = image_processor_backend_field()
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the captioning and fusion models' own code."}
    )


def _given(**options: Any) -> dict[str, Any]:
    """The options that were given (not None): the others keep the stage's defaults."""
    return {name: value for name, value in options.items() if value is not None}


def stage_configs(config: RunConfig) -> list[tuple[str, Callable[[Any], StageSummary] | None, Any]]:
    """(name, the stage's `run` or None when skipped, its job), in order."""
    local = {"dtype": config.dtype, "trust_remote_code": config.trust_remote_code}
    model = BackendArguments(
        model=config.model, endpoint=config.endpoint, revision=config.revision,
        image_processor_backend=config.image_processor_backend, **local,
    )  # fmt: skip
    sampling = _given(
        temperature=config.temperature, top_p=config.top_p, repetition_penalty=config.repetition_penalty,
        seed=config.seed, do_sample=config.do_sample,
    )  # fmt: skip
    fuse_sampling = _given(
        temperature=config.fuse_temperature,
        seed=config.seed if config.fuse_seed is None else config.fuse_seed,
        do_sample=config.do_sample if config.fuse_do_sample is None else config.fuse_do_sample,
    )
    fuse_endpoint = config.fuse_endpoint
    if config.fuse_model is None and config.fuse_endpoint is None:
        fuse_endpoint = config.endpoint
    fuse_name = config.fuse_model or config.model
    fuse_revision = config.revision if fuse_name == config.model else None
    fuse_model = BackendArguments(model=fuse_name, endpoint=fuse_endpoint, revision=fuse_revision, **local)
    refine_job = None
    if config.threshold is not None and config.scorer_model is not None:
        refine_job = refine.RefineJob(
            refine.RefineConfig(
                config.workdir, threshold=config.threshold, scorer_model=config.scorer_model, scorer=config.scorer
            ),
            GenerationParams(max_new_tokens=config.max_new_tokens, **sampling),
            model,
        )
    return [
        (
            "segment",
            segment.run,
            segment.SegmentJob(
                segment.SegmentConfig(videos=config.videos, workdir=config.workdir, recursive=config.recursive),
                DetectionSettings(),
            ),
        ),
        (
            "caption",
            caption.run,
            caption.CaptionJob(
                caption.CaptionArguments(workdir=Path(config.workdir), batch_size=config.batch_size),
                caption.CaptionSettings(),
                GenerationParams(max_new_tokens=config.max_new_tokens, **sampling),
                model,
            ),
        ),
        ("refine", refine.run if refine_job else None, refine_job),
        (
            "fuse",
            fuse.run,
            fuse.FuseJob(
                fuse.FuseConfig(config.workdir, max_new_tokens=config.max_new_tokens, **fuse_sampling), fuse_model
            ),
        ),
    ]


def summarize(workdir: str | Path) -> str:
    """Counts of what the run folder holds, stage by stage."""
    videos = load_records(workdir, SEGMENTS)
    captions = load_records(workdir, CAPTIONS)
    fused = load_records(workdir, VIDEOS)
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


@dataclass
class RunSummary:
    """Each stage's status (`"ok"`, skipped, items failed, could not run), and the run folder's counts."""

    statuses: dict[str, str]
    folder: str | None

    @property
    def failed(self) -> bool:
        done = all(s == "ok" or s.startswith("skipped") for s in self.statuses.values())
        return not (done and "fuse" in self.statuses)

    def report(self) -> str:
        lines = [f"{name}: {status}" for name, status in self.statuses.items()]
        return "\n".join(lines if self.folder is None else [*lines, self.folder])


def run(config: RunConfig) -> RunSummary:
    """Run every stage in order, the run folder locked throughout, each printing its report."""
    state = process_state()
    statuses = {}
    with workdir_lock(config.workdir):
        for name, stage_run, job in stage_configs(config):
            if stage_run is None:
                statuses[name] = "skipped (needs --threshold and --scorer_model)"
                continue
            try:
                summary = stage_run(job)
            except ValueError as err:
                statuses[name] = f"could not run: {err}"
                break
            if state.is_main_process and (report := summary.report()):
                print(report)
            statuses[name] = "some items failed (see failures.jsonl)" if summary.failed else "ok"
        try:
            folder = summarize(config.workdir)
        except ValueError as err:  # a damaged stage file: said by the stage that read it, or here
            statuses["summary"] = f"could not read the run folder: {err}"
            folder = None
    return RunSummary(statuses, folder)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("generation.run", RunConfig, run, argv, creates_workdir=True)


if __name__ == "__main__":
    sys.exit(main())
