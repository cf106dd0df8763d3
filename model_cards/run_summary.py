"""The construction settings a run folder `W` actually used, read back from its records
(`lovr_common.run_folder.layout`).

Every record a stage writes carries the `settings` that produced it, so the card states what was run rather than
what the defaults are. Settings that vary per record (the attempt number, a per-clip frame count) are shown as
their distinct values.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lovr_common.run_folder.layout import CAPTIONS, SEGMENTS, VIDEOS, StageFile
from lovr_common.run_folder.readers import read_merged

# (stage name, file it writes, key of the settings dict in each record), in pipeline order. `refine` writes its
# scorer's settings into the caption records under `scorer`.
_STAGES: list[tuple[str, StageFile, str]] = [
    ("segment", SEGMENTS, "settings"),
    ("caption", CAPTIONS, "settings"),
    ("refine", CAPTIONS, "scorer"),
    ("fuse", VIDEOS, "settings"),
]
# Beyond this many distinct values a setting is summarised by its count, to keep the card readable.
_MAX_VALUES_SHOWN = 4


@dataclass
class StageSummary:
    """One stage of a run: record counts by status and each setting's distinct values."""

    name: str
    num_records: int = 0
    status: dict[str, int] = field(default_factory=dict)
    settings: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RunSummary:
    """What the dataset card says about how a run folder was built."""

    workdir: str
    stages: list[StageSummary]
    review: dict[str, int]
    fusion_boundaries: dict[str, int]

    def stage(self, name: str) -> StageSummary | None:
        return next((s for s in self.stages if s.name == name), None)


def _format(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _summarise(name: str, records: list[dict], settings_key: str) -> StageSummary:
    values: dict[str, Counter] = {}
    summary = StageSummary(name=name, num_records=len(records))
    for record in records:
        settings = record.get(settings_key)
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            values.setdefault(key, Counter())[_format(value)] += 1
    summary.status = dict(Counter(str(r.get("status", "unknown")) for r in records))
    for key, counter in values.items():
        distinct = sorted(counter)
        summary.settings[key] = (
            distinct if len(distinct) <= _MAX_VALUES_SHOWN else [f"{len(distinct)} distinct values"]
        )
    return summary


def summarise_run(workdir: str | Path) -> RunSummary:
    """Read the segments, captions and videos files of run folder `workdir` and summarise their settings."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ValueError(f"workdir={str(workdir)!r} is not a directory; expected a pipeline run folder")
    records: dict[StageFile, list[dict]] = {}
    for _, stage_file, _ in _STAGES:
        path = stage_file.path(workdir)
        if stage_file not in records:
            records[stage_file] = list(read_merged(path, stage_file.key).values()) if path.exists() else []
    if not any(records.values()):
        raise ValueError(
            f"workdir={str(workdir)!r} holds none of {sorted(f.filename for f in records)}; "
            "expected a pipeline run folder"
        )
    # `refine` is done for a caption once its record holds a score; an unscored run has no refine stage.
    scored = [r for r in records[CAPTIONS] if "score" in r]
    stages = [
        _summarise(name, scored if name == "refine" else records[stage_file], key)
        for name, stage_file, key in _STAGES
        if name != "refine" or scored
    ]
    review = Counter(str(r["review"]) for r in scored if r.get("review"))
    boundaries = Counter(str(b.get("status", "unknown")) for r in records[VIDEOS] for b in r.get("boundaries") or [])
    return RunSummary(workdir=str(workdir), stages=stages, review=dict(review), fusion_boundaries=dict(boundaries))
