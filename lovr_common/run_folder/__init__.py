"""The run folder `W` of the `generation` pipeline: its names, record shapes, lock, failure log, review queue and
readers. `generation` writes it; `lovr_dataset` and `model_cards` read it. Nothing else spells a file name of W.

    W/segments.jsonl   SEGMENTS  one SegmentRecord per source video (key video_id): its clips as time ranges
    W/captions.jsonl   CAPTIONS  one CaptionRecord per clip (key clip_id), scored in place by refinement
    W/videos.jsonl     VIDEOS    one VideoRecord per video (key video_id): the fused caption
    W/review.jsonl     the human review queue, one ReviewLine per clip below the threshold (review_queue)
    W/failures.jsonl   the failure log, one FailureRecord per input a stage could not process (failures)
    W/.shards/         per-process shards <stage>-<rank>.jsonl of a stage being written (readers)
    W/.lock            the lock that gives the folder one writer (lock)
    W/clips/           CLIPS_DIR: clip files <video_id>/<clip_id>.mp4, when segment --write_clips wrote them

Ids: `video_id` is the source file's stem; `clip_id = clip_id_of(video_id, n)`, n from 1 in time order. Every
stage record carries `status` ("ok" or "failed"), `reason` when failed, and `settings` (what produced it).

    >>> from lovr_common.run_folder import CAPTIONS, load_records
    >>> captions = load_records("runs/demo", CAPTIONS)  # doctest: +SKIP
"""

from lovr_common.run_folder.failures import failures_path, read_failures, record_failure
from lovr_common.run_folder.layout import (
    CAPTIONS,
    CLIP_END_SLACK_SECONDS,
    CLIPS_DIR,
    FAILURES_FILE,
    LOCK_FILE,
    REVIEW_FILE,
    SEGMENTS,
    SHARD_DIR,
    STAGE_FILES,
    VIDEOS,
    Boundary,
    CaptionRecord,
    ClipSpan,
    Decoded,
    FailureRecord,
    LowDynamic,
    ReviewLine,
    SegmentRecord,
    SkippedClip,
    StageFile,
    Status,
    VideoRecord,
    check_clip_span,
    clip_id_of,
)
from lovr_common.run_folder.lock import WorkdirBusyError, command_lock, workdir_lock
from lovr_common.run_folder.readers import load_records, read_merged, require_stage_file
from lovr_common.run_folder.review_queue import (
    DECISIONS,
    ReviewError,
    queue_pending,
    review_line,
    review_path,
    validate_review,
)

__all__ = [
    "CAPTIONS",
    "CLIP_END_SLACK_SECONDS",
    "CLIPS_DIR",
    "DECISIONS",
    "FAILURES_FILE",
    "LOCK_FILE",
    "REVIEW_FILE",
    "SEGMENTS",
    "SHARD_DIR",
    "STAGE_FILES",
    "VIDEOS",
    "Boundary",
    "CaptionRecord",
    "ClipSpan",
    "Decoded",
    "FailureRecord",
    "LowDynamic",
    "ReviewError",
    "ReviewLine",
    "SegmentRecord",
    "SkippedClip",
    "StageFile",
    "Status",
    "VideoRecord",
    "WorkdirBusyError",
    "check_clip_span",
    "clip_id_of",
    "command_lock",
    "failures_path",
    "load_records",
    "queue_pending",
    "read_failures",
    "read_merged",
    "record_failure",
    "require_stage_file",
    "review_line",
    "review_path",
    "validate_review",
    "workdir_lock",
]
