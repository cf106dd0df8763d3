"""The LoVR evaluation protocol: its retrieval tasks, the split its query captions come from, and its frame rule.

`LOVR_TASKS` maps each granularity to a `Task`: the runner ranks it, `results.md` labels its rows with it, and
the model card turns its metrics into `model-index` entries with it.

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
        directions (`tuple[str]`): the directions reported, among `DIRECTIONS`.
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
        # A theme names several clips; the paper ranks clips for themes only.
        Task("theme", "theme", "clip", DIRECTIONS[:1], "themes", "theme texts (a 'themes' config)"),
    )
}
GRANULARITIES = tuple(LOVR_TASKS)
