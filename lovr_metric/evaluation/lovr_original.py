"""`--protocol lovr-original`: the original LoVR evaluation code's protocol, where it differs from the corrected one.

Everything this protocol does differently lives here, behind the hooks of `protocol.Protocol`:

- frames fed as BGR (the original flipped decord's RGB frames "to RGB");
- a video's embedding from its clips, not its own file: every `--interval`-th frame of the clips taken one after the
  other, the count going on across clip boundaries (the original's `make_video_dict`);
- frames pooled and texts tokenised as the original script of that model did (below);
- theme retrieval ranked both ways (theme -> clip and clip -> theme);
- defined for frame encoders only, every interval-th frame decoded at full size.

The original evaluated every model with a script of its own (LoVR-benchmark commit 00ca611,
`scripts/evaluation_script/code/<file>`; removed from the repository in 18907ad). Their `encode_image` blocks do not
all pool alike: the CLIP, SigLIP, SigLIP2, MetaCLIP, EVA02-CLIP and PE-Core scripts L2-normalise each frame's
features, average them and normalise the mean; the GME script averages its per-frame embeddings as returned, then
normalises. Their `encode_text` blocks tokenise alike except the CLIP script's, which uses OpenAI's `clip.tokenize`:
its `basic_clean` (ftfy's `fix_text`, `html.unescape` twice) and `whitespace_clean` run before the BPE, and
transformers' CLIP tokenizer does neither (`clean_like_openai_clip` does them first).

Not reproduced: the SigLIP script padded texts to the longest of each 256-text batch (`padding=True`), where the
toolkit pads SigLIP texts to 64 tokens as the SigLIP2 script did; the MM-Embed script kept, for each clip, the frame
most similar to its own caption (the query leaks into the gallery), and MM-Embed stays unsupported.

`original_script(model, model_type)` finds the script of a registry model, or of a model outside the registry by its
architecture (a `clip` model as the CLIP script, a `siglip` or `siglip2` one as theirs); `None` where no script
applies, and then the frame-model scripts' common rule is followed (normalised pooling, texts as they are).

    >>> original_script("clip-vit-b-32", "clip").file
    'CLIP_test.py'
    >>> clean_like_openai_clip("  Tom &amp;amp; Jerry\\n\\n run ")
    'Tom & Jerry run'
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lovr_common.encoders import VideoEncoder
from lovr_common.video import VideoError, VideoInfo, frame_span, iter_frames_at, probe
from lovr_metric.evaluation.data import ClipRows, EvalData, plan_queries
from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, clamp_span, digest
from lovr_metric.evaluation.protocol import Protocol
from lovr_metric.evaluation.registry import get_baseline
from lovr_metric.evaluation.tasks import DIRECTIONS

ORIGINAL_COMMIT = "00ca611"


@dataclass(frozen=True)
class OriginalScript:
    """One of the original's per-model scripts, as far as its embeddings depend on it.

    Args:
        file (`str`): its name under `scripts/evaluation_script/code/`.
        pooling (`str`): `"normalized"` (each frame's features L2-normalised, averaged, normalised again) or `"raw"`
            (averaged as the model returns them, then normalised).
        text_cleaning (`str`, *optional*): `"openai-clip"` when texts went through OpenAI's `clip.tokenize`
            (`clean_like_openai_clip`); `None` when the model's own tokenizer took them as they are.
    """

    file: str
    pooling: str
    text_cleaning: str | None = None

    def record(self) -> dict:
        """What results.json records of it."""
        return {
            "file": self.file,
            "commit": ORIGINAL_COMMIT,
            "pooling": self.pooling,
            "text_cleaning": self.text_cleaning,
        }


ORIGINAL_SCRIPTS = {
    script.file: script
    for script in (
        OriginalScript("CLIP_test.py", "normalized", "openai-clip"),
        OriginalScript("siglip-base-patch16-224_test.py", "normalized"),
        OriginalScript("siglip2-base-patch16-224_test.py", "normalized"),
        OriginalScript("MetaCLIP-ViT-H-14_test.py", "normalized"),
        OriginalScript("gme-Qwen2-VL-7B-Instruct_test.py", "raw"),
    )
}
# A model outside the registry follows the script of its architecture.
_SCRIPT_OF_MODEL_TYPE = {
    "clip": "CLIP_test.py",
    "siglip": "siglip-base-patch16-224_test.py",
    "siglip2": "siglip2-base-patch16-224_test.py",
}


def original_script(model: str, model_type: str | None) -> OriginalScript | None:
    """The original script that embedded `model` (a registry name or repo id, else found by `model_type`)."""
    baseline = get_baseline(model)
    if baseline is not None:
        file = baseline.original_script
    else:
        file = _SCRIPT_OF_MODEL_TYPE.get(model_type)
    return None if file is None else ORIGINAL_SCRIPTS[file]


def clean_like_openai_clip(text: str) -> str:
    """`text` as OpenAI's `clip.tokenize` cleans it before its BPE: ftfy's `fix_text`, HTML entities unescaped twice,
    whitespace runs made one space, stripped (the lower-casing is the tokenizer's own, in both)."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class CleanedTextEncoder:
    """A text encoder whose texts are cleaned first, as an original script's tokenizer cleaned them
    (`text_cleaning`, one of `TEXT_CLEANINGS`); everything else is the wrapped encoder's."""

    def __init__(self, encoder, text_cleaning: str):
        self._encoder, self._clean = encoder, TEXT_CLEANINGS[text_cleaning]
        self.text_cleaning = text_cleaning

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode_text(self, texts: list[str]):
        return self._encoder.encode_text([self._clean(text) for text in texts])

    @property
    def token_counts(self):
        counts = getattr(self._encoder, "token_counts", None)
        return None if counts is None else lambda texts: counts([self._clean(text) for text in texts])


TEXT_CLEANINGS = {"openai-clip": clean_like_openai_clip}


def stride_across_clips(spans: list[tuple[int, int]], interval: int) -> list[int]:
    """Every `interval`-th frame of the frame ranges `[first, stop)` taken one after the other, the count going on
    across each boundary: the frames the original code's `make_video_dict` embeds a video with. After a clip of 25
    frames at interval 10, the next clip's first frame taken is its 6th (the 30th of the two)."""
    frames, seen = [], 0
    for first, stop in spans:
        frames += range(first + (-seen) % interval, stop, interval)
        seen += stop - first
    return frames


def _every_interval(sampling: FrameSampling) -> int:
    if sampling.interval is None:
        raise ValueError(f"the original takes every interval-th frame: got num_frames={sampling.num_frames}")
    return sampling.interval


@dataclass
class ClipFileJob(VideoJob):
    """A clip file embedded on its own, its frames counted as the original counts them: every interval-th of the
    frames its container claims (decord's `len(vr)`), which a stream-copied cut can make more than its duration's."""

    def segment_frames(self, sampling: FrameSampling, infos: list[VideoInfo]) -> list[list[int]]:
        return [list(range(0, infos[0].num_frames, _every_interval(sampling)))]


@dataclass
class ClipSpansJob(VideoJob):
    """A long video's file with its clips' time ranges, the video embedded from its clips' frames: every
    interval-th frame of the clips taken one after the other (`stride_across_clips`)."""

    def segment_frames(self, sampling: FrameSampling, infos: list[VideoInfo]) -> list[list[int]]:
        frames = super().segment_frames(sampling, infos)
        spans = sorted(frame_span(*clamp_span(s, infos[0]), infos[0].fps) for s in self.segments if s.kind == "clip")
        across = stride_across_clips(spans, _every_interval(sampling))
        return [across if s.kind == "video" else f for s, f in zip(self.segments, frames, strict=True)]


@dataclass
class ClipFilesJob(VideoJob):
    """A video's clip files decoded one after the other (in scene order; `path` is the folder that holds them): each
    clip from its own file, the video from all of them, every interval-th frame counted across the files, as the
    original's `make_video_dict` does. `part_of` maps each clip's key to its file's index in `parts`."""

    parts: tuple[Path, ...] = ()
    part_of: dict[str, int] = field(default_factory=dict)

    @property
    def files(self) -> tuple[Path, ...]:
        return self.parts

    def sign(self, stat) -> str:
        """Every clip file's `stat` and the segments, each with the index of its file."""
        segments = [[s.key, s.kind, s.start, s.end, self.part_of.get(s.key)] for s in self.segments]
        return digest([[stat(path) for path in self.parts], segments])

    def open(self) -> tuple[VideoJob, list[VideoInfo], list[dict]]:
        """This job without the clip files that cannot be opened (the original's reader skipped such a clip and
        made the video of the others), their files' infos, and the clips left out; `VideoError` when none opens."""
        kept, infos, skipped = [], [], []
        for index, path in enumerate(self.parts):
            try:
                infos.append(probe(path))
                kept.append(index)
            except VideoError as err:
                skipped += [
                    {"id": key, "path": err.path, "reason": err.reason, "retry": True}
                    for key, part in self.part_of.items()
                    if part == index
                ]
        if not kept:
            raise VideoError(self.path, f"none of its {len(self.parts)} clip files could be opened")
        renumber = {old: new for new, old in enumerate(kept)}
        part_of = {key: renumber[part] for key, part in self.part_of.items() if part in renumber}
        segments = [s for s in self.segments if s.kind == "video" or s.key in part_of]
        job = dataclasses.replace(self, segments=segments, parts=tuple(self.parts[i] for i in kept), part_of=part_of)
        return job, infos, skipped

    def segment_frames(self, sampling: FrameSampling, infos: list[VideoInfo]) -> list[list[int]]:
        """Frames numbered over the files one after the other (frame `k` of the second file is the first file's
        count plus `k`)."""
        interval = _every_interval(sampling)
        offsets = [0]
        for info in infos[:-1]:
            offsets.append(offsets[-1] + info.num_frames)
        spans = [(offset, offset + info.num_frames) for offset, info in zip(offsets, infos, strict=True)]
        return [
            stride_across_clips(spans, interval)
            if s.kind == "video"
            else list(range(*spans[self.part_of[s.key]], interval))
            for s in self.segments
        ]

    def decode(
        self, infos: list[VideoInfo], order: list[int], size_of, threads: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        position, offset = 0, 0
        for index, (path, info) in enumerate(zip(self.parts, infos, strict=True)):
            stop = offset + info.num_frames if index < len(infos) - 1 else float("inf")
            mine = [frame for frame in order[position:] if frame < stop]
            for i, frame in iter_frames_at(path, [(f - offset) / info.fps for f in mine], size_of(info), threads):
                yield position + i, frame
            position, offset = position + len(mine), offset + info.num_frames


def plan_from_clips(clips: list[dict], videos: list[dict], themes: list[dict], video_root: Path, granularity):
    """`data.plan` as the original embeds videos, from their clips' frames: the clips of a video's time ranges go
    into its job (`ClipSpansJob`) whatever is ranked, and a video known by clip files gets one job over those of its
    files that exist, in scene order (`ClipFilesJob`; the original listed the video's clip folder, so a clip whose
    file is absent is left out of the video and listed as missing); a video without clips is listed as missing. A
    clip file of no video ranked is embedded on its own (`ClipFileJob`)."""
    data = plan_queries(clips, videos, themes, granularity)
    rows, wanted = ClipRows(videos, video_root), set(data.video_ids)
    by_video: dict[str, list[Segment]] = {}
    clip_files: dict[str, list[tuple]] = {}  # video id -> [(scene order, clip id, file)]
    for clip in clips:
        if not data.clip_ids and clip["video_id"] not in wanted:
            continue
        if (placed := rows.time_range(clip)) is not None:
            by_video.setdefault(clip["video_id"], []).append(placed[1])
        elif (clip_file := rows.clip_file(clip)) is not None:
            if clip["video_id"] in wanted and not os.path.isfile(clip_file):
                data.missing.append({"id": clip["clip_id"], "path": str(clip_file), "reason": "no such file"})
            elif clip["video_id"] in wanted:
                clip_files.setdefault(clip["video_id"], []).append((_scene_order(clip), clip["clip_id"], clip_file))
            elif data.clip_ids:
                data.jobs.append(ClipFileJob(clip["clip_id"], clip_file, [Segment(clip["clip_id"], "clip")]))
        elif data.clip_ids:
            data.missing.append({"id": clip["clip_id"], "path": None, "reason": "no clip file and no time range"})
    for video_id in data.video_ids:
        if video_id in clip_files and video_id not in by_video:
            files = sorted(clip_files.pop(video_id))
            segments = [Segment(clip_id, "clip") for _, clip_id, _ in files] + [Segment(video_id, "video")]
            parts = tuple(path for *_, path in files)
            part_of = {clip_id: i for i, (_, clip_id, _) in enumerate(files)}
            data.jobs.append(ClipFilesJob(video_id, parts[0].parent, segments, parts, part_of))
        elif video_id not in by_video:
            data.missing.append(
                {
                    "id": video_id,
                    "path": None,
                    "reason": "no clips to take its frames from (the "
                    "lovr-original protocol embeds a video from its clips)",
                }
            )
        else:
            by_video[video_id].append(Segment(video_id, "video"))
    for files in clip_files.values() if data.clip_ids else []:  # a video with time-range clips too: files alone
        data.jobs.extend(ClipFileJob(clip_id, path, [Segment(clip_id, "clip")]) for _, clip_id, path in files)
    rows.add_video_jobs(data, by_video, ClipSpansJob)
    return data


def _scene_order(clip: dict) -> tuple[float, str]:
    """Where a clip comes in its video: its scene number (`clip_index`: Scene-1000 after Scene-999), then its id."""
    index = clip.get("clip_index")
    return (float("inf") if index is None else index, clip["clip_id"])


def _model_type(encoder) -> str | None:
    return getattr(getattr(getattr(encoder, "model", None), "config", None), "model_type", None)


class LoVROriginal(Protocol):
    """The original code's protocol (module docstring)."""

    name = "lovr-original"
    theme_directions = DIRECTIONS  # the original also ranks the theme texts for each clip

    def check(self, config) -> None:
        clash = [f"--{name}" for name in ("num_frames", "resize_in_decoder") if getattr(config, name)]
        if clash:
            raise ValueError(
                f"{' and '.join(clash)} cannot be used with --protocol {self.name}: the original code embeds every "
                "interval-th frame (--interval), decoded at full size"
            )

    def plan(self, rows, video_root: Path, granularity: list[str]) -> EvalData:
        return plan_from_clips(*rows, video_root, granularity)

    def sampling(self, config, encoder) -> FrameSampling:
        if isinstance(encoder, VideoEncoder):
            raise ValueError(
                f"--protocol {self.name} is defined for frame encoders: the original feeds a video tower the frames "
                "its own model-specific preprocessing picks, which this toolkit does not reproduce; evaluate "
                f"{config.model} with --protocol default (add --bgr for the original's channel order)"
            )
        script = original_script(config.model, _model_type(encoder))
        return dataclasses.replace(
            super().sampling(config, encoder),
            bgr=True,
            pooling=script.pooling if script else "normalized",
            video_from_clips=True,
        )

    def text_encoder(self, config, encoder):
        script = original_script(config.text_model or config.model, _model_type(encoder))
        if script is None or script.text_cleaning is None:
            return encoder
        return CleanedTextEncoder(encoder, script.text_cleaning)

    def record(self, config, encoder, text_encoder) -> dict:
        scripts = {
            "visual": original_script(config.model, _model_type(encoder)),
            "text": original_script(config.text_model or config.model, _model_type(text_encoder)),
        }
        return super().record(config, encoder, text_encoder) | {
            "frames": "BGR",
            "pooling": "as the model's original script (original_scripts)",
            "video_frames": "clip files, interval across clip boundaries",
            "original_scripts": {side: script and script.record() for side, script in scripts.items()},
        }
