"""Interoperability with what LoVR results and data look like elsewhere.

- `original`: score a run of the original LoVR evaluation code (its `text.pt` and `video.pt`) with this toolkit's
  metrics and reports, as `lovr_metric evaluate` writes them (`python -m lovr_metric.interop score-original ...`).
- `uvrb`: export a LoVR dataset in the layout of UVRB, the Universal Video Retrieval Benchmark
  (`python -m lovr_metric.interop export-uvrb ...`).
- `mteb_tasks`: the LoVR tasks as `mteb` retrieval tasks read from a local export and the user's video root, so any
  `mteb` model wrapper can be evaluated on LoVR (`pip install lovr-toolkit[mteb]`; `mteb` is imported only there).
- `tasks`: the id-keyed LoVR tasks both exports are written from.
"""

from .original import ScoreOriginalConfig, load_original_run, score_original, score_original_run
from .tasks import InteropTask, LoVRRows, load_rows, lovr_tasks
from .uvrb import export_uvrb

__all__ = [
    "InteropTask",
    "LoVRRows",
    "ScoreOriginalConfig",
    "export_uvrb",
    "load_original_run",
    "load_rows",
    "lovr_tasks",
    "score_original",
    "score_original_run",
]
