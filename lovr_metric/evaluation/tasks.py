"""What LoVR ranks: its retrieval tasks, the split its query captions come from, its frame rule, and when a run's
galleries fall short of the dataset's.

`LOVR_TASKS` maps each granularity to a `Task`: the runner ranks it, `results.md` labels its rows with it, and
the model card turns its metrics into `model-index` entries with it. How the embeddings are made is a protocol's
(`protocol.py`).

    >>> LOVR_TASKS["theme"].label("text_to_video")
    'theme → clip'
"""

from __future__ import annotations

from dataclasses import dataclass

from lovr_common.splits import QUERY_SPLIT

# The official evaluation embeds every 10th frame of a clip (LOVR_REFERENCE.md); 30 for the slowest models.
LOVR_FRAME_INTERVAL = 10
# The key prefixes of `retrieval_metrics`: texts ranking the gallery's items, and the items ranking the texts.
DIRECTIONS = ("text_to_video", "video_to_text")


@dataclass(frozen=True)
class Task:
    """One retrieval task of LoVR: query texts of one kind ranked against a gallery of clip or video embeddings.

    Args:
        name (`str`): the granularity, as `--granularity` and `results.json` name it.
        query (`str`): what a query is, in labels ("text", "theme").
        gallery (`str`): the embeddings ranked, `"clip"` or `"video"`.
        directions (`tuple[str]`): the directions it can be ranked in, among `DIRECTIONS` (`Protocol.directions`
            says which are ranked).
        config (`str`): the dataset config the query texts come from.
        description (`str`): the query texts, in messages ("video captions").
    """

    name: str
    query: str
    gallery: str
    directions: tuple[str, ...]
    config: str
    description: str

    def label(self, direction: str, arrow: str = " → ") -> str:
        """How a direction of the task is shown: "text → clip" for `text_to_video`, "clip → text" back (or
        "text->clip" with `arrow="->"`)."""
        if direction not in self.directions:
            raise ValueError(f"direction={direction!r} is not one of task {self.name!r}'s {self.directions}")
        ends = (self.query, self.gallery) if direction == DIRECTIONS[0] else (self.gallery, self.query)
        return arrow.join(ends)


LOVR_TASKS = {
    task.name: task
    for task in (
        Task("clip", "text", "clip", DIRECTIONS, "clips", f"query captions (clips of the '{QUERY_SPLIT}' split)"),
        Task("video", "text", "video", DIRECTIONS, "videos", "video captions"),
        Task("theme", "theme", "clip", DIRECTIONS, "themes", "theme texts (a 'themes' config)"),
    )
}
GRANULARITIES = tuple(LOVR_TASKS)


def incomplete_reason(results: dict) -> str | None:
    """Why an evaluation's galleries are smaller than its dataset's, or `None` when every item was embedded.

    The clips and videos of a file that failed to decode, clips with no frame to embed (past the end of their file),
    and items without a file are left out of their gallery: the rest is ranked, an easier task than LoVR's, so such results are marked incomplete (results.json's
    `complete`, results.md's first line, the printed summary) and kept off model cards and leaderboards unless the
    user says otherwise. Reads `failed_videos` and `settings.missing`, which every results.json holds.

        >>> incomplete_reason({"failed_videos": [], "settings": {"missing": []}}) is None
        True
        >>> print(incomplete_reason({"failed_videos": [{"id": "a"}], "settings": {"missing": [{"id": "b"}]}})[:59])
        1 file or clip could not be embedded and 1 item has no file
    """
    failed, missing = len(results["failed_videos"]), len(results["settings"]["missing"])
    if not failed and not missing:
        return None
    parts = (
        [f"{failed} file{'s' * (failed != 1)} or clip{'s' * (failed != 1)} could not be embedded"] if failed else []
    )
    parts += [f"{missing} item{'s have' if missing != 1 else ' has'} no file"] if missing else []
    return (
        f"{' and '.join(parts)}: what they hold is left out of the galleries, so every metric is measured on a "
        "smaller, easier gallery than the dataset's"
    )
