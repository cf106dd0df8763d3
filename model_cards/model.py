"""Model-card results for a model evaluated on LoVR: `model-index` entries (`ModelCardData` + `EvalResult`) and a
results section, from the `results.json` the evaluation runner writes.

Random-weight results are meaningless. They are refused unless `allow_random_weights=True`, and even then the
card is labelled in its model name, its tags and its first line, so it cannot pass for a real result. Results of an
evaluation whose galleries lost items (`tasks.incomplete_reason`: videos that failed to decode, items without a
file) are refused unless `allow_incomplete=True`, and then say so above the table and in every `model-index` metric
name. A metric that is not a finite number is refused.

    from model_cards.model import load_results, results_card
    results_card(load_results("runs/eval/clip"), dataset_repo_id="ORG/LoVR").save("README.md")
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lovr_metric.evaluation.tasks import LOVR_TASKS, QUERY_SPLIT, incomplete_reason

TEMPLATE = Path(__file__).parent / "templates" / "model_card_section.md"
# The markers let a later evaluation replace its own section in a model's README instead of appending another.
SECTION_START = "<!-- lovr-results:start -->"
SECTION_END = "<!-- lovr-results:end -->"
RANDOM_WEIGHTS_LABEL = "RANDOM WEIGHTS: these numbers are meaningless"
INCOMPLETE_LABEL = "incomplete gallery"

ARROW = "->"  # directions are named "text->clip", "clip->text", ... in model-index entries and the results table
TASK_TYPES = {"text_to_video": "text-to-video-retrieval", "video_to_text": "video-to-text-retrieval"}
# (key suffix in results.json, model-index metric type, pretty name); ranks are "lower is better".
CARD_METRICS = [
    ("pass@1", "pass_at_1", "pass@1"),
    ("pass@5", "pass_at_5", "pass@5"),
    ("pass@10", "pass_at_10", "pass@10"),
    ("recall@1", "recall_at_1", "recall@1"),
    ("mrr", "mrr", "MRR"),
    ("ndcg@10", "ndcg_at_10", "nDCG@10"),
    ("median_rank", "median_rank", "median rank"),
]
REQUIRED_KEYS = {"model": str, "random_weights": bool, "dataset": str, "metrics": dict, "protocol": str}


class ResultsError(ValueError):
    """A results.json is missing or does not follow the runner's schema (the message names the file)."""


@dataclass
class EvaluationResults:
    """The parts of a runner's `results.json` a card needs."""

    path: Path
    model: str
    text_model: str | None
    revision: str | None
    random_weights: bool
    dataset: str
    settings: dict
    metrics: dict[str, dict[str, float]]
    toolkit_version: str | None = None
    protocol: str = "default"
    incomplete: str | None = None  # why its galleries are smaller than the dataset's (`tasks.incomplete_reason`)


def load_results(results_dir: str | Path) -> EvaluationResults:
    """Read and validate `results_dir/results.json` (or the file itself)."""
    path = Path(results_dir)
    if path.suffix != ".json":
        path = path / "results.json"
    if not path.is_file():
        raise ResultsError(f"results file {str(path)!r} does not exist; expected the runner's results.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(raw.get(key), kind):
            raise ResultsError(f"{path}: {key!r} must be a {kind.__name__}, but got {raw.get(key)!r}")
    # What says whether every item was ranked (`tasks.incomplete_reason`): every runner's results.json holds it.
    settings = raw.get("settings")
    left_out = {
        "failed_videos": raw.get("failed_videos"),
        "settings.missing": settings.get("missing") if isinstance(settings, dict) else None,
    }
    for name, value in left_out.items():
        if not isinstance(value, list):
            raise ResultsError(
                f"{path}: {name!r} must be a list (written by the evaluation runner), but got {value!r}"
            )
    metrics = raw["metrics"]
    unknown = set(metrics) - set(LOVR_TASKS)
    if unknown or not metrics:
        raise ResultsError(f"{path}: metrics granularities must be among {sorted(LOVR_TASKS)}, got {sorted(metrics)}")
    for granularity, values in metrics.items():
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ResultsError(f"{path}: metrics[{granularity!r}][{key!r}] is {value!r}; expected a finite number")
    return EvaluationResults(
        path=path,
        model=raw["model"],
        text_model=raw.get("text_model"),
        revision=raw.get("revision"),
        random_weights=raw["random_weights"],
        dataset=raw["dataset"],
        settings=raw["settings"],
        metrics=metrics,
        toolkit_version=raw.get("toolkit_version"),
        protocol=raw["protocol"],
        incomplete=incomplete_reason(raw),
    )


def eval_results(results: EvaluationResults, dataset_repo_id: str, split: str = QUERY_SPLIT) -> list[EvalResult]:
    """One `EvalResult` per (task, direction, metric) present in the results, in a fixed order."""
    out = []
    mark = f" ({INCOMPLETE_LABEL})" if results.incomplete else ""
    for task in LOVR_TASKS.values():
        values = results.metrics.get(task.name, {})
        for direction in task.directions:
            pretty = task.label(direction, ARROW)
            for key, metric_type, metric_name in CARD_METRICS:
                value = values.get(f"{direction}_{key}")
                if value is None:
                    continue
                out.append(
                    EvalResult(
                        task_type=TASK_TYPES[direction],
                        task_name=f"LoVR {pretty} retrieval",
                        dataset_type=dataset_repo_id,
                        dataset_name="LoVR",
                        dataset_config=task.config,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=f"{pretty} {metric_name}{mark}",
                        metric_value=round(float(value), 4),
                    )
                )
    return out


def _check_random_weights(results: EvaluationResults, allow_random_weights: bool) -> None:
    if results.random_weights and not allow_random_weights:
        raise ResultsError(
            f"{results.path}: random_weights=true, so these results are meaningless and are not turned into a "
            "model card; pass allow_random_weights=True (--allow_random_weights) to render a card labelled as such"
        )


def _check_incomplete(results: EvaluationResults, allow_incomplete: bool) -> None:
    if results.incomplete and not allow_incomplete:
        raise ResultsError(
            f"{results.path}: incomplete: {results.incomplete}; pass allow_incomplete=True (--allow_incomplete) to "
            "render a card marked as such"
        )


def results_card(
    results: EvaluationResults,
    dataset_repo_id: str = "lovr",
    allow_random_weights: bool = False,
    allow_incomplete: bool = False,
) -> ModelCard:
    """A results card (YAML `model-index` + the LoVR section) for `results`, ready to merge into a model README."""
    _check_random_weights(results, allow_random_weights)
    _check_incomplete(results, allow_incomplete)
    model_name = results.model + (f" ({RANDOM_WEIGHTS_LABEL})" if results.random_weights else "")
    card_data = ModelCardData(
        model_name=model_name,
        eval_results=eval_results(results, dataset_repo_id),
        tags=["lovr", "video-retrieval"] + (["random-weights"] if results.random_weights else []),
    )
    rows = [
        (task.label(d, ARROW), {k: results.metrics[task.name].get(f"{d}_{k}") for k, _, _ in CARD_METRICS})
        for task in LOVR_TASKS.values()
        if task.name in results.metrics
        for d in task.directions
        if any(key.startswith(f"{d}_") for key in results.metrics[task.name])  # the directions its protocol ranked
    ]
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        results=results,
        dataset_repo_id=dataset_repo_id,
        rows=rows,
        columns=[(key, name) for key, _, name in CARD_METRICS],
        random_weights_label=RANDOM_WEIGHTS_LABEL,
        incomplete_label=INCOMPLETE_LABEL,
        settings_json=json.dumps(results.settings, indent=2, sort_keys=True),
        start_marker=SECTION_START,
        end_marker=SECTION_END,
    )


def merge_into_model_card(existing: ModelCard, section: ModelCard) -> ModelCard:
    """`existing` with the results of `section` merged in: LoVR `model-index` entries replaced (others kept) and
    the LoVR section replaced between its markers, or appended."""
    kept = [r for r in existing.data.eval_results or [] if r.dataset_name != "LoVR"]
    merged_data = ModelCardData(**existing.data.to_dict())
    merged_data.eval_results = kept + list(section.data.eval_results)
    merged_data.model_name = existing.data.model_name or section.data.model_name
    merged_data.tags = list(dict.fromkeys((existing.data.tags or []) + (section.data.tags or [])))
    body = section.text.strip()
    text = existing.text
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        text = before + body + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    return ModelCard(f"---\n{merged_data.to_yaml()}\n---\n{text}")
