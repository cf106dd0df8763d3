"""The metric Space: the `lovr_retrieval` evaluate module folder (owned by `lovr_metric`), checked before upload.

The folder is published as it is: its README.md is the Space's card (YAML validated here with `SpaceCard`), next
to `app.py`, `requirements.txt` and the module file named after the folder (which `evaluate.load` requires).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from huggingface_hub import SpaceCard

MODULE_NAME = "lovr_retrieval"
REQUIRED_FILES = ["README.md", "app.py", "requirements.txt", f"{MODULE_NAME}.py"]
# What a Space running an evaluate widget needs in its card (huggingface/evaluate's metric cards).
REQUIRED_CARD_FIELDS = {"sdk": "gradio", "app_file": "app.py"}
REQUIRED_TAGS = ["evaluate", "metric"]
_UPLOADED_SUFFIXES = {".py", ".md", ".txt"}


def default_metric_dir() -> Path:
    """`lovr_metric/lovr_retrieval` of the installed package."""
    spec = importlib.util.find_spec("lovr_metric")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the lovr_metric package is not importable; pass the metric folder explicitly")
    return Path(next(iter(spec.submodule_search_locations))) / MODULE_NAME


def load_metric_card(metric_dir: str | Path) -> SpaceCard:
    """The Space card of the metric folder, after checking its files and YAML."""
    metric_dir = Path(metric_dir)
    if not metric_dir.is_dir():
        raise ValueError(
            f"metric dir {str(metric_dir)!r} is not a directory; expected the {MODULE_NAME} module folder"
        )
    missing = [name for name in REQUIRED_FILES if not (metric_dir / name).is_file()]
    if missing:
        raise ValueError(f"metric dir {str(metric_dir)!r} lacks {missing}; a metric Space needs {REQUIRED_FILES}")
    card = SpaceCard.load(metric_dir / "README.md")
    wrong = {k: card.data.get(k) for k, v in REQUIRED_CARD_FIELDS.items() if card.data.get(k) != v}
    if wrong:
        raise ValueError(f"{metric_dir / 'README.md'}: YAML has {wrong}; expected {REQUIRED_CARD_FIELDS}")
    missing_tags = [t for t in REQUIRED_TAGS if t not in (card.data.tags or [])]
    if missing_tags:
        raise ValueError(f"{metric_dir / 'README.md'}: YAML tags {card.data.tags} lack {missing_tags}")
    return card


def metric_space_files(metric_dir: str | Path) -> list[Path]:
    """The files of the metric folder that go to the Space (sources, card, requirements), after validation."""
    metric_dir = Path(metric_dir)
    load_metric_card(metric_dir)
    return sorted(
        p.relative_to(metric_dir)
        for p in metric_dir.rglob("*")
        if p.is_file() and p.suffix in _UPLOADED_SUFFIXES and "__pycache__" not in p.parts
    )
