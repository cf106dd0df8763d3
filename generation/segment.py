"""Stage 1: cut every video of a folder into clips at scene changes, with LoVR's settings as defaults.

    accelerate launch -m generation.segment --videos DIR --workdir W [--write_clips] [--adaptive] [--recursive]
    python -m generation.segment --videos DIR --workdir W --low_dynamic_threshold 1.0

Writes one record per video to `W/segments.jsonl` (CONTRIBUTING.md, "Run folder"): its clips as time ranges of the
source video, numbered `<video_id>-Scene-NNN` in time order. The videos are DIR's files (with `--recursive`, also
those of its subfolders, except W and hidden ones); a video's id is its file stem. Videos are shared between
processes; a rerun skips videos already done and retries failed ones. A file that is not a usable video (zero
bytes, corrupt, audio only, fewer than 5 frames, unreadable: a dangling link or a link loop, not a video) gets a
failed record and a line in `W/failures.jsonl`; the other videos go on, and the command exits with status 1 after
printing a summary.

Decoded coverage. PySceneDetect's decoders take a run of undecodable packets for the end of the video, and say
nothing: a file cut short, or corrupt part-way, would be cut into clips of its first part only while its record
claimed the container's whole duration. So what decoded is compared with what the container claims: a video is
failed, with the numbers in its reason, when fewer than `MIN_DECODED_FRACTION` (90%) of its claimed frames decode,
or when decoding stops more than `MAX_MISSING_END_SECONDS` (2 s) before its claimed duration. A smaller shortfall
is ok, with a warning: its clips stop where decoding stopped, and the record's `decoded` (`{"frames", "end",
"coverage"}`: frames decoded, the end in seconds of the last one, frames over `num_frames`) says how much.

`--write_clips` also writes each clip to `W/clips/<video_id>/<clip_id>.mp4`, the official release's layout. The
default `--clip_mode reencode` re-encodes (libx264), so clip files start and end on the detected frames;
`--clip_mode copy` copies the streams, which is fast but keyframe-accurate only (a clip starts at the keyframe
at or before its start).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import av
import cv2
import scenedetect

from generation._scenes import (
    DetectionSettings,
    ScoreTrack,
    choose_scenes,
    low_dynamic_mark,
    score_video,
    settings_record,
    write_clip_files,
)
from generation.options import RunFolder
from generation.stage import FailureLog, run_sharded, stage_main
from lovr_common.run_folder import CLIPS_DIR, SEGMENTS, SegmentRecord, clip_id_of, workdir_lock
from lovr_common.video import LOVR_MIN_CLIP_FRAMES, VideoError, VideoInfo, probe

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".webm", ".mov")
# What a broken file can raise on its way through PyAV, OpenCV and PySceneDetect; anything else is a bug.
_VIDEO_FAILURES = (VideoError, scenedetect.VideoOpenFailure, av.FFmpegError, cv2.error, OSError)
# The decoded-coverage rule (module docstring): below either bound, a video is failed.
MIN_DECODED_FRACTION = 0.9
MAX_MISSING_END_SECONDS = 2.0


@dataclass
class SegmentConfig(RunFolder):
    """Where the run folder (segments go to `W/segments.jsonl`) and the videos are, and whether to write clip files."""

    videos: str = field(metadata={"help": f"Folder of source videos ({', '.join(VIDEO_EXTENSIONS)})."})
    write_clips: bool = field(default=False, metadata={"help": "Also write W/clips/<video_id>/<clip_id>.mp4."})
    recursive: bool = field(
        default=False, metadata={"help": "Also take the videos of subfolders (ids stay file stems, still unique)."}
    )
    clip_mode: Literal["reencode", "copy"] = field(
        default="reencode", metadata={"help": "reencode: frame-accurate cuts; copy: fast, keyframe-accurate."}
    )


@dataclass
class SegmentJob:
    """Everything `generation.segment` runs with: where the videos and the run folder are, and how scenes are cut."""

    config: SegmentConfig
    detection: DetectionSettings = field(default_factory=DetectionSettings)

    @property
    def workdir(self) -> str:
        return self.config.workdir


@dataclass
class SegmentSummary:
    """Every segments record of the videos of the run, by video id."""

    records: dict[str, SegmentRecord]

    @property
    def failed(self) -> bool:
        return any(r["status"] != "ok" for r in self.records.values())

    def report(self) -> str:
        """One line of counts, then one line per failed video."""
        ok = [r for r in self.records.values() if r["status"] == "ok"]
        failed = [r for r in self.records.values() if r["status"] != "ok"]
        lines = [f"segments: {len(ok)} video(s) ok, {sum(len(r['clips']) for r in ok)} clip(s); {len(failed)} failed"]
        lines += [f"  FAILED {r['video_id']} ({r['video_path']}): {r['reason']}" for r in failed]
        return "\n".join(lines)


def _files(folder: Path, recursive: bool, skip: Path | None) -> list[Path]:
    """The files of `folder` (and of its subfolders when `recursive`), sorted, without hidden ones or `skip`."""
    files = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or path.is_dir():
            continue
        # realpath, not Path.resolve: resolve raises on a link loop, which is one bad file, not a bad folder.
        if skip is None or not Path(os.path.realpath(path)).is_relative_to(skip):
            files.append(path)
    return files


def list_videos(videos_dir: str | os.PathLike, *, recursive: bool = False, exclude: str | None = None) -> list[dict]:
    """One item per video file of `videos_dir`, sorted by path: `{"video_id", "video_path"}` (relative to it).

    Only the folder's own files, unless `recursive`; hidden files and folders, and the folder `exclude` (the run
    folder, whose clip files are videos too), are skipped. Files with another suffix are ignored (with a warning);
    two videos with the same stem would get the same `video_id`, so they are an error.
    """
    folder = Path(videos_dir)
    if not folder.is_dir():
        raise ValueError(f"--videos {videos_dir!r} is not a folder; expected a folder of video files")
    skip = Path(exclude).resolve() if exclude is not None else None

    def is_video(path: Path) -> bool:
        return path.suffix.lower() in VIDEO_EXTENSIONS

    files = _files(folder, recursive, skip)
    videos = [path for path in files if is_video(path)]
    ignored = [path.relative_to(folder).as_posix() for path in files if not is_video(path)]
    if ignored:
        logger.warning("Ignoring %d file(s) without a video suffix %s: %s", len(ignored), VIDEO_EXTENSIONS, ignored)
    by_stem = defaultdict(list)
    for path in videos:
        by_stem[path.stem].append(path.relative_to(folder).as_posix())
    duplicates = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    if duplicates:
        raise ValueError(
            f"--videos {videos_dir!r}: video ids are file stems and must be unique, but these files share one: "
            f"{duplicates}; rename or move all but one of each"
        )
    if not videos:
        hint = ""
        if not recursive and any(is_video(path) for path in _files(folder, True, skip)):
            hint = "; its subfolders hold videos: pass --recursive to take them"
        raise ValueError(f"--videos {videos_dir!r} holds no video file (expected suffixes {VIDEO_EXTENSIONS}){hint}")
    return [{"video_id": path.stem, "video_path": path.relative_to(folder).as_posix()} for path in videos]


def decoded_coverage(info: VideoInfo, track: ScoreTrack) -> dict:
    """`{"frames", "end", "coverage"}`: how much of the video decoded; raises `VideoError` when that falls short
    of what its container claims by the rule of `MIN_DECODED_FRACTION` and `MAX_MISSING_END_SECONDS`."""
    frames = len(track.positions)
    end = (track.positions[-1] + 1).seconds  # the end of the last decoded frame
    coverage = frames / info.num_frames
    shortfall = (
        f"{frames} of the {info.num_frames} frames its container claims decode ({coverage:.1%}), up to "
        f"{end:.2f} s of {info.duration:.2f} s"
    )
    if coverage < MIN_DECODED_FRACTION or info.duration - end > MAX_MISSING_END_SECONDS:
        raise VideoError(
            info.path,
            f"truncated or corrupt: only {shortfall}; a video is failed when under {MIN_DECODED_FRACTION:.0%} "
            f"of its frames decode or decoding stops over {MAX_MISSING_END_SECONDS} s before its end",
        )
    if frames < info.num_frames:
        logger.warning("%s: %s; its clips end there", info.path, shortfall)
    return {"frames": frames, "end": round(end, 6), "coverage": round(coverage, 4)}


def segment_video(item: dict, config: SegmentConfig, settings: DetectionSettings) -> SegmentRecord:
    """The segments record of one video (raises `VideoError` for a file that is not a usable video)."""
    videos_dir = Path(config.videos).resolve()
    path = videos_dir / item["video_path"]
    info = probe(path)
    if info.num_frames < LOVR_MIN_CLIP_FRAMES:
        raise VideoError(path, f"too short: {info.num_frames} frame(s), a clip needs {LOVR_MIN_CLIP_FRAMES}")
    track = score_video(path, info.fps, settings)
    decoded = decoded_coverage(info, track)
    scenes, detection = choose_scenes(track, settings)
    video_id = item["video_id"]
    clip_ids = [clip_id_of(video_id, n) for n in range(1, len(scenes) + 1)]
    clip_paths = [None] * len(scenes)
    if config.write_clips:
        workdir = Path(config.workdir).resolve()
        files = write_clip_files(path, scenes, clip_ids, workdir / CLIPS_DIR / video_id, config.clip_mode)
        clip_paths = [str(file.relative_to(workdir)) for file in files]

    clips = []
    for n, ((start, end), clip_id, clip_path) in enumerate(zip(scenes, clip_ids, clip_paths, strict=True), 1):
        mark = None
        if settings.low_dynamic_threshold is not None:
            mark = low_dynamic_mark(track, start.frame_num, end.frame_num, settings.low_dynamic_threshold)
        clips.append(
            {
                "clip_id": clip_id,
                "clip_index": n,
                "start": round(start.seconds, 6),
                "end": round(end.seconds, 6),
                "start_frame": start.frame_num,
                "end_frame": end.frame_num,
                "clip_path": clip_path,
                "low_dynamic": mark,
            }
        )
    return {
        "video_id": video_id,
        "video_path": item["video_path"],
        "videos_dir": str(videos_dir),
        "duration": info.duration,
        "fps": info.fps,
        "num_frames": info.num_frames,
        "width": info.width,
        "height": info.height,
        "decoded": decoded,
        "clips": clips,
        "settings": {
            **settings_record(settings, track),
            **detection,
            "write_clips": config.clip_mode if config.write_clips else None,
        },
        "status": "ok",
    }


def _failed_record(item: dict, config: SegmentConfig, settings: DetectionSettings, reason: str) -> SegmentRecord:
    return {
        **item,
        "videos_dir": str(Path(config.videos).resolve()),
        "settings": asdict(settings),
        "status": "failed",
        "reason": reason,
    }


def run(job: SegmentJob) -> SegmentSummary:
    """Segment every video of `job.config.videos` not done yet, sharing them between processes."""
    config, settings = job.config, job.detection
    videos_dir = Path(config.videos).resolve()
    with workdir_lock(config.workdir, create=True):
        items = list_videos(config.videos, recursive=config.recursive, exclude=config.workdir)

        def process_batch(batch: list[dict]):
            for item in batch:
                try:
                    yield segment_video(item, config, settings)
                except _VIDEO_FAILURES as err:
                    reason = err.reason if isinstance(err, VideoError) else f"{type(err).__name__}: {err}"
                    yield _failed_record(item, config, settings, reason)

        records = run_sharded(
            workdir=config.workdir,
            stage=SEGMENTS,
            items=items,
            process_batch=process_batch,
            is_done=lambda record: record["status"] == "ok",
            failures=FailureLog(
                SEGMENTS.name,
                reason=lambda record: record.get("reason"),
                path=lambda item: videos_dir / item["video_path"],
            ),
            desc="segment",
        )
    return SegmentSummary(records)


def main(argv: list[str] | None = None) -> int:
    return stage_main("generation.segment", SegmentJob, run, argv, creates_workdir=True)


if __name__ == "__main__":
    sys.exit(main())
