"""LoVR retrieval evaluation: the metric maths (pure torch, no `evaluate` import) beside the `evaluate` module
`lovr_retrieval`, and the harness (`lovr_metric.evaluation`) that embeds a LoVR dataset with any model and ranks it."""

from pathlib import Path

from .lovr_retrieval.retrieval import retrieval_metrics


def lovr_retrieval_path() -> str:
    """Folder of the `evaluate` module shipped in this package: `evaluate.load(lovr_retrieval_path())`."""
    return str(Path(__file__).parent / "lovr_retrieval")


__all__ = ["lovr_retrieval_path", "retrieval_metrics"]
