"""`results.md`: the table's columns follow the metrics that were computed."""

from lovr_metric.evaluation.outputs import results_markdown


def _results(metrics: dict) -> dict:
    return {
        "model": "m",
        "text_model": None,
        "random_weights": False,
        "dataset": "d",
        "metrics": metrics,
        "unranked": {},
        "cost_ms": {},
        "failed_videos": [],
        "num_video_files": 2,
        "settings": {"missing": []},
    }


def _direction(prefix: str, **values) -> dict:
    return {f"{prefix}_{key.replace('_at_', '@')}": value for key, value in values.items()}


def test_columns_follow_the_k_values_and_recall_shows_when_it_differs():
    # Theme -> clip ranked with k = 1, 3 and a query with two relevant clips: recall@1 (0.25) differs from pass@1
    # (0.5), so recall@k columns follow. The video gallery held 2 videos, so k = 3 was not computed there: blank.
    rank = {"mrr": 0.75, "ndcg_at_10": 0.8, "median_rank": 1.5, "mean_rank": 1.5, "num_queries": 2}
    theme = _direction("text_to_video", pass_at_1=0.5, pass_at_3=1.0, recall_at_1=0.25, recall_at_3=1.0, **rank)
    video = _direction("text_to_video", pass_at_1=0.5, recall_at_1=0.5, **rank)
    lines = results_markdown(_results({"theme": theme, "video": video})).splitlines()
    assert (
        "| direction | pass@1 | pass@3 | recall@1 | recall@3 | mrr | ndcg@10 | median_rank | mean_rank | "
        "num_queries |" in lines
    )
    assert "| theme → clip | 0.5000 | 1 | 0.2500 | 1 | 0.7500 | 0.8000 | 1.5000 | 1.5000 | 2 |" in lines
    assert "| text → video | 0.5000 |  | 0.5000 |  | 0.7500 | 0.8000 | 1.5000 | 1.5000 | 2 |" in lines
