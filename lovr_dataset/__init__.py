"""The LoVR `datasets` builder (configs `clips`, `videos`, `themes`), its readers (`lovr_dataset.sources`: the
official release, the Hub Parquet copy and a pipeline run folder), and the export to a script-free Hub dataset."""

from .export import card_yaml, export
from .lovr import CLIP_FEATURES, CONFIG_NAMES, THEME_FEATURES, VIDEO_FEATURES, LoVR, LoVRConfig
from .push import push, upload_plan
from .sources import detect_source, read_source
from .video import attach_video_root

__all__ = [
    "CLIP_FEATURES",
    "CONFIG_NAMES",
    "THEME_FEATURES",
    "VIDEO_FEATURES",
    "LoVR",
    "LoVRConfig",
    "attach_video_root",
    "card_yaml",
    "detect_source",
    "export",
    "push",
    "read_source",
    "upload_plan",
]
