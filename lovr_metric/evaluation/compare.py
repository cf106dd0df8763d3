"""Compare two evaluation runs query by query: per-metric deltas with a paired interval and p-value.

    python -m lovr_metric compare runs/clip runs/siglip [--num_resamples 1000] [--seed 0] [--output delta.json]

`--bootstrap_resamples` and `--bootstrap_seed` (the names `evaluate` uses) are accepted for `--num_resamples` and
`--seed`.

Both runs must come from the same protocol on the same dataset rows (`protocol` and `dataset_fingerprint` in their
`results.json`), and have embedded the same items (a video that failed to decode in one run only changes its
gallery); otherwise their numbers measure different things and the comparison is refused. The queries of
each direction are paired by id; a query only one run ranked (its item failed to decode in the other) is left out
and counted. Deltas are run B minus run A; see `uncertainty.paired_comparison` for the interval and the p-value.
Runs whose galleries both lost the same items are compared, and each is said to be incomplete above the table
(`tasks.incomplete_reason`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lovr_metric.evaluation.data import FINGERPRINT_SCHEME
from lovr_metric.evaluation.ranking import PER_QUERY_FILE, DirectionRanks, metric_values, read_per_query
from lovr_metric.evaluation.tasks import incomplete_reason
from lovr_metric.evaluation.uncertainty import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, paired_comparison

RESULTS_FILE = "results.json"
# Fields of results.json that must be equal for two runs to be comparable.
COMPARABLE = ("protocol", "dataset_fingerprint")
# What `compare` and `leaderboard` read besides, as (keys, type): the run, its metrics and the items it left out.
READ = (
    (("model",), str),
    (("random_weights",), bool),
    (("metrics",), dict),
    (("failed_videos",), list),
    (("settings", "missing"), list),
)


@dataclass
class CompareConfig:
    """Arguments of `python -m lovr_metric compare`."""

    run_a: str = field(metadata={"help": "The first run's --output folder (the baseline)."})
    run_b: str = field(metadata={"help": "The second run's --output folder; deltas are B - A."})
    num_resamples: int = field(
        default=DEFAULT_RESAMPLES,
        metadata={
            "help": "Bootstrap and permutation resamples.",
            "aliases": ["--bootstrap_resamples", "--bootstrap-resamples"],
        },
    )
    confidence: float = field(default=DEFAULT_CONFIDENCE, metadata={"help": "Level of the delta's interval."})
    seed: int = field(
        default=DEFAULT_SEED,
        metadata={"help": "Seed of the resampling.", "aliases": ["--bootstrap_seed", "--bootstrap-seed"]},
    )
    output: str | None = field(default=None, metadata={"help": "Also write the comparison as JSON here."})


def load_results(folder: str | Path) -> dict:
    """A run's `results.json`; a clear error naming the file when the folder holds none, or one that is cut short,
    written by an older toolkit, or lacking what `compare` and `leaderboard` read."""
    folder = Path(folder)
    results_path = folder / RESULTS_FILE
    if not results_path.is_file():
        raise ValueError(f"{folder} holds no {RESULTS_FILE}: expected the --output folder of `lovr_metric evaluate`")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{results_path} is not valid JSON ({err}): is it cut short? evaluate again") from err
    if not isinstance(results, dict):
        raise ValueError(f"{results_path} holds a JSON {type(results).__name__}; expected an object")
    missing = [name for name in COMPARABLE if name not in results]
    if missing:
        raise ValueError(f"{results_path} has no {missing}: it was written by an older toolkit; evaluate again")
    for keys, kind in READ:
        value = _lookup(results, keys)
        if not isinstance(value, kind):
            raise ValueError(
                f"{results_path}: {'.'.join(keys)} must be a {kind.__name__}, but got {value!r}; expected the "
                "results.json of `lovr_metric evaluate`"
            )
    bad = {granularity: v for granularity, v in results["metrics"].items() if not isinstance(v, dict)}
    if bad:
        raise ValueError(f"{results_path}: metrics must map each granularity to its metrics, but got {bad}")
    return results


def _lookup(results: dict, keys: tuple[str, ...]):
    for key in keys:
        results = results.get(key) if isinstance(results, dict) else None
    return results


def load_run(folder: str | Path) -> tuple[dict, dict[tuple[str, str], DirectionRanks]]:
    """A run's `results.json` and its per-query ranks."""
    return load_results(folder), read_per_query(Path(folder) / PER_QUERY_FILE)


def _left_out(results: dict) -> set[str]:
    """The clips and videos a run could not embed (failed video files, items without a file)."""
    missing = results.get("settings", {}).get("missing", [])
    return {r["id"] for r in results.get("failed_videos", [])} | {r["id"] for r in missing}


def check_comparable(runs: dict[str, dict]) -> None:
    """Refuse runs (by folder) whose protocol or dataset fingerprint differ, naming each run's value."""
    for name in COMPARABLE:
        values = {folder: json.dumps(results[name], sort_keys=True) for folder, results in runs.items()}
        if len(set(values.values())) > 1:
            listed = "; ".join(f"{folder}: {value}" for folder, value in values.items())
            message = f"runs with different {name} are not comparable ({listed})"
            older = [folder for folder, results in runs.items() if _older_fingerprint(results)]
            if name == "dataset_fingerprint" and 0 < len(older) < len(runs):  # schemes mixed
                message += (
                    f"; {', '.join(older)} hashed the rows as an earlier toolkit did: evaluate it again (its "
                    "embeddings are cached) to compare it"
                )
            raise ValueError(message)


def _older_fingerprint(results: dict) -> bool:
    """Whether a run's dataset fingerprint lacks the scheme of today's `dataset_fingerprint` (an earlier toolkit's,
    or `score-original`'s own hash of ids)."""
    return not str(results["dataset_fingerprint"]).startswith(FINGERPRINT_SCHEME)


def _common_ks(results_a: dict, results_b: dict, granularity: str, direction: str) -> list[int]:
    def ks(results):
        metrics = results["metrics"].get(granularity, {})
        return {int(m.group(1)) for key in metrics if (m := re.fullmatch(rf"{direction}_pass@(\d+)", key))}

    return sorted(ks(results_a) & ks(results_b))


def _paired(a: DirectionRanks, b: DirectionRanks, ks: list[int]):
    """Both directions' per-query values on the queries both ranked, in one order, and how many were left out."""
    rows_b = {query: i for i, query in enumerate(b.query_ids)}
    common = [(i, rows_b[q]) for i, q in enumerate(a.query_ids) if q in rows_b]
    if not common:
        raise ValueError(f"{a.granularity} {a.direction}: the two runs ranked no query in common")
    left_out = len(a.query_ids) + len(b.query_ids) - 2 * len(common)
    index_a, index_b = (np.array(ix) for ix in zip(*common, strict=True))
    values_a = {name: v[index_a] for name, v in metric_values(a, ks).items()}
    values_b = {name: v[index_b] for name, v in metric_values(b, ks).items()}
    return values_a, values_b, len(common), left_out


def compare_runs(config: CompareConfig) -> dict:
    """`{"run_a", "run_b", "protocol", "dataset_fingerprint", "settings", "incomplete", "directions": [...]}`; each
    direction lists per metric `a`, `b`, `delta`, `low`, `high`, `p_value`, and its `num_queries` and
    `num_left_out`; `incomplete` maps each run whose galleries lost items to why (`tasks.incomplete_reason`)."""
    (results_a, ranks_a), (results_b, ranks_b) = load_run(config.run_a), load_run(config.run_b)
    check_comparable({config.run_a: results_a, config.run_b: results_b})
    if _left_out(results_a) != _left_out(results_b):
        # Their galleries differ, so every rank may differ for reasons other than the models.
        only = sorted(_left_out(results_a) ^ _left_out(results_b))
        raise ValueError(
            f"{config.run_a} and {config.run_b} could not embed the same items ({len(only)} differ, e.g. {only[:3]}): "
            "their galleries differ, so their ranks are not comparable; fix the failed videos and evaluate again"
        )
    directions = []
    for key in [k for k in ranks_a if k in ranks_b]:
        ks = _common_ks(results_a, results_b, *key)
        values_a, values_b, num_queries, left_out = _paired(ranks_a[key], ranks_b[key], ks)
        metrics = paired_comparison(
            values_a, values_b, num_resamples=config.num_resamples, confidence=config.confidence, seed=config.seed
        )
        granularity, direction = key
        directions.append(
            {
                "granularity": granularity,
                "direction": direction,
                "num_queries": num_queries,
                "num_left_out": left_out,
                "metrics": metrics,
            }
        )
    if not directions:
        raise ValueError(f"{config.run_a} and {config.run_b} share no ranked granularity and direction")
    return {
        "run_a": config.run_a,
        "run_b": config.run_b,
        "protocol": results_a["protocol"],
        "dataset_fingerprint": results_a["dataset_fingerprint"],
        "settings": {"num_resamples": config.num_resamples, "confidence": config.confidence, "seed": config.seed},
        "incomplete": {
            run: reason
            for run, results in ((config.run_a, results_a), (config.run_b, results_b))
            if (reason := incomplete_reason(results))
        },
        "directions": directions,
    }


def comparison_markdown(comparison: dict) -> str:
    """The comparison as a Markdown table, one row per granularity, direction and metric."""
    level = f"{100 * comparison['settings']['confidence']:g}%"
    lines = [
        f"# LoVR comparison: B = `{comparison['run_b']}` vs A = `{comparison['run_a']}`",
        "",
        f"Deltas are B - A; {level} paired-bootstrap interval; two-sided paired permutation p-value "
        f"({comparison['settings']['num_resamples']} resamples, seed {comparison['settings']['seed']}).",
        "",
        *(f"**Run `{run}` is incomplete**: {reason}.\n" for run, reason in comparison["incomplete"].items()),
        f"| granularity | direction | metric | A | B | delta | {level} interval | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in comparison["directions"]:
        for name, m in d["metrics"].items():
            lines.append(
                f"| {d['granularity']} | {d['direction']} | {name} | {m['a']:.4f} | {m['b']:.4f} | {m['delta']:+.4f} "
                f"| [{m['low']:+.4f}, {m['high']:+.4f}] | {m['p_value']:.4f} |"
            )
        if d["num_left_out"]:
            lines.append(f"| {d['granularity']} | {d['direction']} | queries left out | | | {d['num_left_out']} | | |")
    return "\n".join(lines) + "\n"
