"""per_query.parquet, `compare` and `leaderboard`: hand-made runs with values derived by hand, refusals of runs that
do not measure the same thing, and the command line on two real `evaluate` runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lovr_metric.__main__ import main
from lovr_metric.evaluation.compare import CompareConfig, compare_runs, comparison_markdown
from lovr_metric.evaluation.data import FINGERPRINT_SCHEME
from lovr_metric.evaluation.leaderboard import LeaderboardConfig, leaderboard_markdown, load_entries, write_leaderboard
from lovr_metric.evaluation.ranking import (
    DirectionRanks,
    metric_values,
    query_ids,
    rank_embeddings,
    read_per_query,
    write_per_query,
)
from lovr_metric.evaluation.tasks import DIRECTIONS, incomplete_reason


def make_run(
    folder,
    first_ranks,
    *,
    model="m",
    fingerprint=f"{FINGERPRINT_SCHEME}rows-1",
    protocol="default",
    intervals=None,
    failed=(),
):
    """A run folder holding results.json and per_query.parquet for one direction whose queries q0, q1, ... have
    their one relevant item at `first_ranks`; the video ids in `failed` failed to decode."""
    folder.mkdir(parents=True)
    ids = [f"q{i}" for i in range(len(first_ranks))]
    ranks = DirectionRanks("clip", "text_to_video", ids, [np.array([r]) for r in first_ranks], [[] for _ in ids])
    write_per_query(folder / "per_query.parquet", [ranks])
    metrics = {f"text_to_video_{name}": float(np.mean(v)) for name, v in metric_values(ranks, [1, 2]).items()}
    results = {
        "model": model,
        "text_model": None,
        "random_weights": False,
        "protocol": protocol,
        "dataset_fingerprint": fingerprint,
        "metrics": {"clip": metrics},
        "intervals": {"clip": intervals or {}},
        "settings": {"missing": []},
        "failed_videos": [{"id": v, "path": f"{v}.mp4", "reason": "corrupt"} for v in failed],
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_per_query_round_trip_and_pairs():
    ranks = DirectionRanks.from_pairs(
        "video", "video_to_text", ["a", "b", "c"], [2, 0, 0, 2], [4, 3, 1, 2], [["x"], ["y"], ["z"]]
    )
    # Queries in row order, each with its relevant ranks ascending; the query with no pair (b) is not a query.
    assert ranks.query_ids == ["a", "c"] and [r.tolist() for r in ranks.relevant_ranks] == [[1, 3], [2, 4]]
    assert ranks.top_ids == [["x"], ["z"]]
    values = metric_values(ranks, [1, 2])
    assert values["pass@1"].tolist() == [1.0, 0.0] and values["recall@2"].tolist() == [0.5, 0.5]
    assert values["mrr"].tolist() == [1.0, 0.5]


def test_per_query_file_round_trip(tmp_path):
    ranks = DirectionRanks(
        "clip", "text_to_video", ["q1", "q2"], [np.array([1, 5]), np.array([3])], [["c1", "c2"], ["c3", "c1"]]
    )
    write_per_query(tmp_path / "p.parquet", [ranks])
    back = read_per_query(tmp_path / "p.parquet")[("clip", "text_to_video")]
    assert back.query_ids == ["q1", "q2"] and back.top_ids == [["c1", "c2"], ["c3", "c1"]]
    assert [r.tolist() for r in back.relevant_ranks] == [[1, 5], [3]]
    with pytest.raises(ValueError, match="does not exist"):
        read_per_query(tmp_path / "missing.parquet")
    # A query without a relevant rank has no first rank: refused, not given its neighbour's.
    ranks.relevant_ranks[0] = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match=r"query 'q1' of .*p2\.parquet has no relevant rank"):
        write_per_query(tmp_path / "p2.parquet", [ranks])


def test_top_ids_of_duplicate_texts_tie_whatever_the_blocks():
    # 1030 texts drawn from 5 vectors, 40 items: an item's texts with one vector must tie exactly (the earlier text
    # first). Scoring the texts in blocks (1024, then 6) rounded them differently: item 13 listed text 1029 first.
    rng = np.random.default_rng(0)
    base = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((5, 512)), dtype=torch.float32), dim=1)
    texts = base[rng.integers(0, 5, 1030)]
    items = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((40, 512)), dtype=torch.float32), dim=1)
    targets, item_ids = [f"i{j % 40}" for j in range(1030)], [f"i{j}" for j in range(40)]
    _, (_, back) = rank_embeddings("clip", DIRECTIONS, texts, targets, items, item_ids, [1])
    expected = np.argsort(-(items @ texts.T).numpy(), axis=1, kind="stable")[:, :10]
    names = query_ids(targets)
    assert back.top_ids == [[names[j] for j in row] for row in expected]


def test_query_ids_of_texts_about_one_item():
    assert query_ids(["a", "b", "a", "a"]) == ["a", "b", "a#2", "a#3"]


def test_compare_by_hand(tmp_path):
    # pass@1: A = 2/4, B = 4/4, delta 0.5. Per query, B - A is (0, 0, 1, 1): a random swap of each pair gives
    # (s3 + s4) / 4, which reaches |0.5| when the two signs agree: p = 1/2.
    a = make_run(tmp_path / "a", [1, 1, 2, 3])
    b = make_run(tmp_path / "b", [1, 1, 1, 1])
    comparison = compare_runs(CompareConfig(str(a), str(b), num_resamples=20000, seed=3))
    (direction,) = comparison["directions"]
    assert direction["num_queries"] == 4 and direction["num_left_out"] == 0
    pass1 = direction["metrics"]["pass@1"]
    assert (pass1["a"], pass1["b"], pass1["delta"]) == (0.5, 1.0, 0.5)
    assert pass1["p_value"] == pytest.approx(0.5, abs=0.02)
    mrr = direction["metrics"]["mrr"]
    assert mrr["delta"] == pytest.approx(1 - (1 + 1 + 1 / 2 + 1 / 3) / 4)


def test_compare_pairs_queries_by_id(tmp_path):
    a = make_run(tmp_path / "a", [1, 2, 3])
    b = make_run(tmp_path / "b", [1, 2])  # q2 was not ranked in B
    (direction,) = compare_runs(CompareConfig(str(a), str(b), num_resamples=50))["directions"]
    assert direction["num_queries"] == 2 and direction["num_left_out"] == 1
    assert direction["metrics"]["mrr"]["delta"] == 0.0


@pytest.mark.parametrize(
    "field, value", [("fingerprint", f"{FINGERPRINT_SCHEME}rows-2"), ("protocol", "lovr-original")]
)
def test_runs_of_other_rows_or_protocol_are_refused(tmp_path, field, value):
    a = make_run(tmp_path / "a", [1, 2])
    b = make_run(tmp_path / "b", [1, 2], **{field: value})
    name = "dataset_fingerprint" if field == "fingerprint" else "protocol"
    with pytest.raises(ValueError, match=f"runs with different {name} are not comparable"):
        compare_runs(CompareConfig(str(a), str(b)))
    with pytest.raises(ValueError, match="not comparable"):
        load_entries([str(a), str(b)])


def test_a_fingerprint_of_an_earlier_toolkit_is_named_as_such(tmp_path):
    a = make_run(tmp_path / "a", [1, 2])
    b = make_run(tmp_path / "b", [1, 2], fingerprint="0123456789abcdef")  # the scheme before 2026-12-07
    with pytest.raises(ValueError, match=r"b hashed the rows as an earlier toolkit did: evaluate it again"):
        compare_runs(CompareConfig(str(a), str(b)))
    d = make_run(tmp_path / "d", [1, 2], fingerprint="2-0123456789abcdef")  # SHA-256, the scheme before XXH3
    with pytest.raises(ValueError, match=r"d hashed the rows as an earlier toolkit did"):
        compare_runs(CompareConfig(str(a), str(d)))
    # Two fingerprints of the same older scheme: different rows, nothing more to say.
    c = make_run(tmp_path / "c", [1, 2], fingerprint="fedcba9876543210")
    with pytest.raises(ValueError, match=r"not comparable \([^;]*; [^;]*\)$"):
        compare_runs(CompareConfig(str(b), str(c)))


def test_a_folder_that_is_no_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no results.json"):
        compare_runs(CompareConfig(str(tmp_path / "empty"), str(tmp_path / "empty")))
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 1


def test_leaderboard_sorts_best_first_and_shows_intervals(tmp_path):
    weak = make_run(tmp_path / "weak", [2, 3], model="weak", intervals={"text_to_video_pass@1": [0.0, 0.0]})
    strong = make_run(tmp_path / "strong", [1, 1], model="strong", intervals={"text_to_video_pass@1": [1.0, 1.0]})
    markdown, image = write_leaderboard(LeaderboardConfig([str(weak), str(strong)], str(tmp_path / "board")))
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `strong` | 1.0000 [1.0000, 1.0000] |") and rows[1].startswith("| `weak` | 0.0000")
    assert image.read_bytes()[:4] == b"\x89PNG"


def test_compare_and_leaderboard_commands_on_real_runs(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export
    for name in ("clip", "siglip"):
        command = [
            sys.executable,
            "-m",
            "lovr_metric",
            "evaluate",
            "--dataset",
            str(export),
            "--model",
            str(tiny_models[name]),
            "--output",
            str(tmp_path / name),
            "--video_root",
            str(videos_dir),
            "--interval",
            "4",
            "--k_values",
            "1",
            "2",
            "--cache_dir",
            str(tmp_path / "cache"),
        ]
        assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lovr_metric",
            "compare",
            str(tmp_path / "clip"),
            str(tmp_path / "siglip"),
            "--bootstrap-resamples",
            "200",
            "--output",
            str(tmp_path / "delta.json"),
        ],  # evaluate's option name
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "| clip | text_to_video | pass@1 |" in done.stdout
    # The export holds a video that does not decode: both runs ranked smaller galleries, and compare says so.
    reason = incomplete_reason(json.loads((tmp_path / "clip" / "results.json").read_text()))
    assert reason and f"**Run `{tmp_path / 'clip'}` is incomplete**: {reason}" in done.stdout
    comparison = json.loads((tmp_path / "delta.json").read_text())
    assert comparison["settings"]["num_resamples"] == 200
    per_query = {name: read_per_query(tmp_path / name / "per_query.parquet") for name in ("clip", "siglip")}
    for d in comparison["directions"]:
        key = (d["granularity"], d["direction"])
        a, b = (float(np.mean([1 / r[0] for r in per_query[n][key].relevant_ranks])) for n in ("clip", "siglip"))
        assert d["metrics"]["mrr"]["delta"] == pytest.approx(b - a)
    leaderboard = [
        sys.executable,
        "-m",
        "lovr_metric",
        "leaderboard",
        str(tmp_path / "clip"),
        str(tmp_path / "siglip"),
        "--output",
        str(tmp_path / "board"),
    ]
    done = subprocess.run(leaderboard, capture_output=True, text=True)
    assert done.returncode == 1 and f"is incomplete: {reason}" in done.stderr
    done = subprocess.run([*leaderboard, "--allow-incomplete"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    board = (tmp_path / "board" / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and all(f"(RANDOM WEIGHTS: meaningless) (INCOMPLETE: {reason})" in row for row in rows)


def test_leaderboard_puts_a_run_without_the_metric_last(tmp_path):
    best = make_run(tmp_path / "best", [1, 1], model="best")
    other = make_run(tmp_path / "other", [2, 2], model="other")
    results = json.loads((other / "results.json").read_text())
    del results["metrics"]["clip"]["text_to_video_pass@1"]
    (other / "results.json").write_text(json.dumps(results))
    worst = make_run(tmp_path / "worst", [3, 3], model="worst")
    entries = load_entries([str(other), str(worst), str(best)])
    rows = [
        line.split("|")[1].strip()
        for line in leaderboard_markdown(entries, ["pass@1"]).splitlines()
        if line.startswith("| `")
    ]
    assert rows == ["`best`", "`worst`", "`other`"]


def test_runs_that_embedded_other_items_are_refused(tmp_path):
    a = make_run(tmp_path / "a", [1, 2])
    b = make_run(tmp_path / "b", [1, 2], failed=["v7"])
    with pytest.raises(ValueError, match="could not embed the same items"):
        compare_runs(CompareConfig(str(a), str(b)))


def _edit_results(run, **changes):
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, **changes}))


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.splitlines()) == 1, captured.err
    return captured.err


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_leaderboard_refuses_a_metric_that_is_not_finite(tmp_path, value, capsys):
    good = make_run(tmp_path / "good", [1, 2])
    broken = make_run(tmp_path / "broken", [1, 1])
    _edit_results(broken, metrics={"clip": {"text_to_video_pass@1": value}})  # json writes NaN / Infinity
    assert main(["leaderboard", str(good), str(broken), "--output", str(tmp_path / "board")]) == 1
    error = _error_line(capsys)
    assert f"{broken / 'results.json'}: metrics['clip']['text_to_video_pass@1'] is {value}" in error
    assert not (tmp_path / "board").exists()


def test_incomplete_run_is_kept_off_the_leaderboard_unless_allowed_then_marked(tmp_path, capsys):
    full = make_run(tmp_path / "full", [1, 2], model="full")
    shrunk = make_run(tmp_path / "shrunk", [1, 1], model="shrunk", failed=["v7"])
    args = ["leaderboard", str(full), str(shrunk), "--output", str(tmp_path / "board")]
    assert main(args) == 1
    reason = incomplete_reason(json.loads((shrunk / "results.json").read_text()))  # one video failed to decode
    assert f"{shrunk / 'results.json'} is incomplete: {reason}" in _error_line(capsys)
    assert main([*args, "--allow-incomplete"]) == 0
    rows = [
        line for line in (tmp_path / "board" / "leaderboard.md").read_text().splitlines() if line.startswith("| `")
    ]
    assert rows[0].startswith(f"| `shrunk` (INCOMPLETE: {reason}") and rows[1].startswith("| `full` | 0.5000")


def test_compare_says_which_run_is_incomplete(tmp_path, capsys):
    a = make_run(tmp_path / "a", [1, 2], failed=["v7"])
    b = make_run(tmp_path / "b", [1, 1], failed=["v7"])
    complete = make_run(tmp_path / "c", [1, 1])
    assert main(["compare", str(a), str(b), "--num_resamples", "20"]) == 0
    out = capsys.readouterr().out
    reason = incomplete_reason(json.loads((a / "results.json").read_text()))  # one video failed to decode
    assert f"**Run `{a}` is incomplete**: {reason}" in out and f"**Run `{b}` is incomplete**: {reason}" in out
    assert compare_runs(CompareConfig(str(b), str(a), num_resamples=20))["incomplete"] == {
        str(b): reason,
        str(a): reason,
    }
    assert "incomplete" not in comparison_markdown(compare_runs(CompareConfig(str(complete), str(complete))))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, ": metrics must be a dict, but got None"),
        ('{"model": "m",\n', " is not valid JSON (Expecting property name enclosed in double quotes: line 2 column 1"),
        ("[1]", " holds a JSON list; expected an object"),
    ],
)
@pytest.mark.parametrize("command", ["compare", "leaderboard"])
def test_a_broken_results_json_is_named_with_what_is_wrong(tmp_path, command, content, message, capsys):
    run = make_run(tmp_path / "run", [1, 2])
    if content is None:  # no metrics
        results = json.loads((run / "results.json").read_text())
        del results["metrics"]
        (run / "results.json").write_text(json.dumps(results))
    else:  # cut short, or not an object
        (run / "results.json").write_text(content)
    args = [str(run), str(run)] + (["--output", str(tmp_path / "board")] if command == "leaderboard" else [])
    assert main([command, *args]) == 1
    assert f"{run / 'results.json'}{message}" in _error_line(capsys)
