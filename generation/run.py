"""Stage 5: the whole LoVR construction pipeline, segment -> caption -> refine -> fuse, in one process group.

    accelerate launch -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-7B-Instruct \
        --scorer_model openai/clip-vit-base-patch32 --threshold 0.25 --fuse_model Qwen/Qwen2.5-7B-Instruct
    python -m generation.run --videos DIR --workdir W --model Qwen/Qwen2.5-VL-72B-Instruct --endpoint http://localhost:8000/v1 \
        --threshold 0.25 --scorer_model openai/clip-vit-base-patch32

Each stage runs through its own `run`, with the jobs `stage_configs` composes, so each behaves exactly as its
own command (sharded over the processes of `accelerate launch`, resumable, printing its report): a rerun skips what
is done and retries what failed. `--model` / `--endpoint`
caption and re-caption; `--fuse_model` / `--fuse_endpoint` fuse (default: the captioning model, which also
answers text-only requests). Refinement runs when `--threshold` and `--scorer_model` are given, else it is
skipped and said so. A stage whose items partly fail does not stop the run (later stages skip what is missing);
a stage that cannot run at all (bad arguments, missing input, a damaged stage file) stops it. The run ends with a
summary read from `W` and exits with status 1 when anything failed. The run folder is locked from the first stage
to the summary (`lovr_common.run_folder.workdir_lock`): a second run or stage on the same `--workdir` is refused at
once, naming the pid that holds it. `--do_sample false` decodes greedily in every stage, so that the captions do
not depend on batch composition, process count or interruptions. The sampling options are captioning's and
refinement's (`GenerationParams`); fusion follows `--max_new_tokens`, `--seed` and `--do_sample` unless
`--fuse_seed` / `--fuse_do_sample` say otherwise, and has its own `--fuse_temperature` (`generation.fuse.FuseParams`).
`--dtype` and `--trust_remote_code` reach the captioning and fusion models, `--revision` the captioning model (and
fusion when it uses that model), `--image_processor_backend` captioning and re-captioning; refinement's scorer
(`--scorer_model`) is loaded with the defaults (PIL's image processor, the checkpoint's dtype).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from generation import caption, fuse, refine, segment
from generation._scenes import DetectionSettings
from generation.backends import BackendArguments, GenerationParams
from generation.options import FrameOptions, option_copy, options_of
from generation.stage import StageSummary, stage_main
from lovr_common.processes import process_state
from lovr_common.run_folder import CAPTIONS, SEGMENTS, VIDEOS, load_records, workdir_lock

logger = logging.getLogger(__name__)

# The stages' options that `generation.run` offers, each declared once, in its stage or group; the others keep
# their defaults. Fusion gets a second, `fuse_`-prefixed copy of the model and sampling options it can differ by.
RunFolders = option_copy("RunFolders", segment.SegmentConfig, ("workdir", "videos", "recursive"))
RefineOptions = option_copy(
    "RefineOptions",
    refine.RefineConfig,
    ("threshold", "scorer_model", "scorer"),
    unset={"threshold": "no refinement", "scorer_model": "no refinement"},
)
CaptionOptions = option_copy("CaptionOptions", caption.CaptionArguments, ("batch_size",))
FuseModel = option_copy(
    "FuseModel",
    BackendArguments,
    ("model", "endpoint"),
    prefix="fuse_",
    unset={"model": "--model", "endpoint": "--endpoint when --fuse_model is unset too"},
    help_prefix="Fusion's model: ",
)
FuseSampling = option_copy(
    "FuseSampling",
    fuse.FuseParams,
    ("temperature", "seed", "do_sample"),
    prefix="fuse_",
    unset={"temperature": "generation.fuse's default (LoVR: 0.5)", "seed": "--seed", "do_sample": "--do_sample"},
    help_prefix="Fusion: ",
)


@dataclass
class RunConfig:
    """Arguments of `generation.run`: the options of its stages that it offers (the module docstring says which
    reach which stage).

    Args:
        folders (`RunFolders`): `--workdir`, `--videos`, `--recursive` (`generation.segment.SegmentConfig`'s).
        model (`BackendArguments`): the captioning model, also re-captioning's, and fusion's unless `fuse_model`.
        params (`GenerationParams`): sampling of captioning and re-captioning; fusion follows some (`fuse_params`).
        refinement (`RefineOptions`): `--threshold` and `--scorer_model` (no refinement without them), `--scorer`.
        captioning (`CaptionOptions`): `--batch_size`, clips per captioning call.
        fuse_model (`FuseModel`): `--fuse_model`, `--fuse_endpoint`.
        fuse_params (`FuseSampling`): `--fuse_temperature`, `--fuse_seed`, `--fuse_do_sample`.
    """

    folders: RunFolders
    model: BackendArguments
    params: GenerationParams
    refinement: RefineOptions
    captioning: CaptionOptions
    fuse_model: FuseModel
    fuse_params: FuseSampling

    @property
    def workdir(self) -> str:
        return self.folders.workdir


def fusion_backend(config: RunConfig) -> BackendArguments:
    """The fusion model: `--fuse_model` / `--fuse_endpoint`, else the captioning model at its endpoint; loaded with
    the captioning model's `--dtype` and `--trust_remote_code`."""
    captioner, chosen = config.model, config.fuse_model
    endpoint = chosen.fuse_endpoint
    if chosen.fuse_model is None and chosen.fuse_endpoint is None:
        endpoint = captioner.endpoint
    name = chosen.fuse_model or captioner.model
    # A revision names a commit of one repository: it cannot follow the captioner to another model.
    revision = captioner.revision if name == captioner.model else None
    return BackendArguments(
        model=name,
        endpoint=endpoint,
        revision=revision,
        dtype=captioner.dtype,
        trust_remote_code=captioner.trust_remote_code,
    )


def fusion_params(config: RunConfig) -> fuse.FuseParams:
    """Fusion's sampling: `--max_new_tokens`, `--seed` and `--do_sample` as captioning's unless a `--fuse_` option
    says otherwise, fusion's defaults for the rest."""
    params = config.params
    follows = fuse.FuseParams(max_new_tokens=params.max_new_tokens, seed=params.seed, do_sample=params.do_sample)
    given = {name: value for name, value in options_of(config.fuse_params, "fuse_").items() if value is not None}
    return replace(follows, **given)


def stage_configs(config: RunConfig) -> list[tuple[str, Callable[[Any], StageSummary] | None, Any]]:
    """(name, the stage's `run` or None when skipped, its job), in order."""
    workdir = config.workdir
    refine_job = None
    if config.refinement.threshold is not None and config.refinement.scorer_model is not None:
        refine_job = refine.RefineJob(
            refine.RefineConfig(workdir, **options_of(config.refinement)), FrameOptions(), config.params, config.model
        )
    return [
        (
            "segment",
            segment.run,
            segment.SegmentJob(segment.SegmentConfig(**options_of(config.folders)), DetectionSettings()),
        ),
        (
            "caption",
            caption.run,
            caption.CaptionJob(
                caption.CaptionArguments(workdir, **options_of(config.captioning)),
                caption.CaptionSettings(),
                config.params,
                config.model,
            ),
        ),
        ("refine", refine.run if refine_job else None, refine_job),
        ("fuse", fuse.run, fuse.FuseJob(fuse.FuseConfig(workdir), fusion_params(config), fusion_backend(config))),
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
