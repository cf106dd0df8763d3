"""LoVR retrieval evaluation: the metric maths (pure torch, no `evaluate` import) beside the `evaluate` module
`lovr_retrieval`, and the harness (`lovr_metric.evaluation`) that embeds a LoVR dataset with any model and ranks it."""

from pathlib import Path


def lovr_retrieval_path() -> str:
    """Folder of the `evaluate` module shipped in this package: `evaluate.load(lovr_retrieval_path())`."""
    return str(Path(__file__).parent / "lovr_retrieval")


def __getattr__(name: str):
    # `retrieval_metrics` imports torch: only when asked for, so that `python -m lovr_metric models` runs without it.
    if name == "retrieval_metrics":
        from .lovr_retrieval.retrieval import retrieval_metrics

        return retrieval_metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["lovr_retrieval_path", "retrieval_metrics"]
