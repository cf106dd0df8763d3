"""How an evaluation turns a dataset's files into embeddings, and which directions it ranks: a `Protocol`.

`Protocol` is the corrected LoVR protocol (`--protocol default`): RGB frames, every `--interval`-th frame of a clip
(or `--num_frames` uniform ones, or a video tower's own number), a clip's and a video's embedding the L2-normalised
mean of their frames' normalised features, a video embedded from its own file, and theme -> clip ranked. Its
methods are the hooks where another protocol may differ. A protocol that reproduces other code subclasses it,
overrides them in a module of its own (`lovr_original.py`, `--protocol lovr-original`) and is listed in the
runner's `PROTOCOLS`; the runner calls only these hooks:

- `check(config)`: refuse the options it cannot honour, before any work;
- `plan(rows, video_root, granularity)`: the queries, galleries and decode jobs of a dataset's rows;
- `sampling(config, encoder)`: which frames embed a clip or video, and how they are pooled;
- `text_encoder(config, encoder)`: what the query texts go through before the model;
- `directions(task)`: the directions of each task it ranks;
- `record(config, encoder, text_encoder)`: what results.json records of it (`protocol_settings`).

    >>> from lovr_metric.evaluation.tasks import LOVR_TASKS
    >>> Protocol().directions(LOVR_TASKS["theme"])
    ('text_to_video',)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lovr_common.encoders import VideoEncoder
from lovr_metric.evaluation.data import EvalData, plan
from lovr_metric.evaluation.frames import FrameSampling
from lovr_metric.evaluation.registry import get_baseline
from lovr_metric.evaluation.tasks import DIRECTIONS, LOVR_FRAME_INTERVAL, Task

if TYPE_CHECKING:
    from lovr_metric.evaluation.data import LoVRRows
    from lovr_metric.evaluation.runner import EvaluateConfig


class Protocol:
    """The corrected LoVR protocol; subclass it and override its hooks for another one (module docstring)."""

    name = "default"
    # The paper ranks clips for themes (theme -> clip) only.
    theme_directions: tuple[str, ...] = DIRECTIONS[:1]

    def check(self, config: EvaluateConfig) -> None:
        """Raise `ValueError` for an option this protocol cannot honour (called when the options are parsed)."""

    def plan(self, rows: LoVRRows, video_root: Path, granularity: list[str]) -> EvalData:
        """The queries, galleries and decode jobs of `rows` for the tasks of `granularity`."""
        return plan(*rows, video_root, granularity)

    def sampling(self, config: EvaluateConfig, encoder) -> FrameSampling:
        """The frames of a clip or video: a video tower's own number; else `--num_frames` uniform frames, or every
        `--interval`-th (the registry's interval for a baseline, else LoVR's)."""
        common = {
            "bgr": config.bgr,
            "resize_in_decoder": config.resize_in_decoder,
            "batch_size": config.batch_size,
            "num_workers": config.num_workers,
            "decode_threads": config.decode_threads,
        }
        if isinstance(encoder, VideoEncoder):  # a video tower takes exactly its number of frames
            return FrameSampling(interval=None, num_frames=encoder.num_frames, **common)
        if config.num_frames:
            return FrameSampling(interval=None, num_frames=config.num_frames, **common)
        baseline = get_baseline(config.model)
        default = baseline.frame_interval if baseline and baseline.frame_interval else LOVR_FRAME_INTERVAL
        return FrameSampling(interval=config.interval or default, **common)

    def text_encoder(self, config: EvaluateConfig, encoder):
        """The text encoder the query texts go through: `encoder` as it is."""
        return encoder

    def directions(self, task: Task) -> tuple[str, ...]:
        """The directions of `task` this protocol ranks."""
        return self.theme_directions if task.name == "theme" else task.directions

    def record(self, config: EvaluateConfig, encoder, text_encoder) -> dict:
        """What results.json records of the protocol (`protocol_settings`)."""
        return {
            "name": self.name,
            "frames": "RGB",
            "pooling": "normalized",
            "video_frames": "the video's own file",
            "theme_directions": list(self.theme_directions),
        }
