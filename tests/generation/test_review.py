import json

import pytest

from generation.review import ReviewError, main, merge_review
from lovr_common.jsonl import read_jsonl


def _caption(clip_id, review):
    return {
        "clip_id": clip_id,
        "video_id": "v",
        "caption": f"machine caption of {clip_id}",
        "score": 0.1,
        "status": "ok",
        "review": review,
        "settings": {"model": "m"},
    }


def _queue_line(clip_id, decision=None, reviewed_caption=None):
    return {
        "clip_id": clip_id,
        "video_id": "v",
        "caption": f"machine caption of {clip_id}",
        "score": 0.1,
        "attempts": [],
        "reviewed_caption": reviewed_caption,
        "decision": decision,
    }


@pytest.fixture
def workdir(tmp_path):
    records = [
        _caption("v-Scene-001", "pending"),
        _caption("v-Scene-002", "pending"),
        _caption("v-Scene-003", "pending"),
        _caption("v-Scene-004", None),
        _caption("v-Scene-005", "pending"),
    ]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _captions(workdir):
    return {r["clip_id"]: r for r in read_jsonl(workdir / "captions.jsonl")}


def test_merge_applies_each_decision_and_is_idempotent(workdir):
    _write(
        workdir / "review.jsonl",
        [
            _queue_line("v-Scene-001", "accepted"),
            _queue_line("v-Scene-002", "edited", "  A person fixes the caption.  "),
            _queue_line("v-Scene-003", None),  # not reviewed yet
        ],
    )
    before = (workdir / "captions.jsonl").read_text()
    counts = merge_review(workdir)
    assert counts == {"accepted": 1, "edited": 1, "rejected": 0, "pending": 2}
    captions = _captions(workdir)
    assert captions["v-Scene-001"]["review"] == "accepted"
    assert captions["v-Scene-001"]["caption"] == "machine caption of v-Scene-001"
    assert captions["v-Scene-002"]["review"] == "edited"
    assert captions["v-Scene-002"]["caption"] == "A person fixes the caption."
    assert captions["v-Scene-002"]["caption_source"] == "human"
    assert captions["v-Scene-003"]["review"] == "pending"
    assert captions["v-Scene-004"] == json.loads(before.splitlines()[3])
    after = (workdir / "captions.jsonl").read_text()
    assert merge_review(workdir) == counts
    assert (workdir / "captions.jsonl").read_text() == after


def test_rejected_keeps_the_caption_and_marks_it(workdir):
    edited = _write(workdir / "mine.jsonl", [_queue_line("v-Scene-003", "rejected")])
    main(["--workdir", str(workdir), "--file", str(edited)])
    record = _captions(workdir)["v-Scene-003"]
    assert record["review"] == "rejected" and record["caption"] == "machine caption of v-Scene-003"


def test_every_problem_is_reported_with_file_and_line_and_nothing_is_merged(workdir):
    edited = _write(
        workdir / "review.jsonl",
        [
            _queue_line("v-Scene-001", "accepted"),  # fine, but must not be merged either
            _queue_line("nope-Scene-009", "accepted"),
            "{not json",
            _queue_line("v-Scene-002", "approved"),
            _queue_line("v-Scene-003", "edited", "   "),
            {"clip_id": "v-Scene-001", "decision": "rejected"},
            _queue_line("v-Scene-004", "accepted"),
            {"clip_id": "v-Scene-005"},
            "[1, 2]",
        ],
    )
    before = (workdir / "captions.jsonl").read_text()
    with pytest.raises(ReviewError) as info:
        merge_review(workdir)
    message = str(info.value)
    assert "8 problem(s)" in message and "nothing merged" in message
    for expected in [
        f"{edited}:2: unknown clip_id='nope-Scene-009'",
        f"{edited}:3: not valid JSON",
        f"{edited}:4: decision='approved'",
        f"{edited}:5: decision 'edited' needs a non-empty reviewed_caption, got '   '",
        f"{edited}:6: clip_id='v-Scene-001' repeated (first on line 1)",
        f"{edited}:7: clip_id='v-Scene-004' was never queued",
        f"{edited}:8: missing 'decision'",
        f"{edited}:9: expected a JSON object, got list",
    ]:
        assert expected in message
    assert (workdir / "captions.jsonl").read_text() == before


def test_a_hand_broken_last_line_without_newline_is_an_error_not_a_torn_write(workdir):
    path = workdir / "review.jsonl"
    path.write_text(json.dumps(_queue_line("v-Scene-001", "accepted")) + "\n" + '{"clip_id": "v-Scene-002"')
    with pytest.raises(ReviewError, match=r"review.jsonl:2: not valid JSON"):
        merge_review(workdir)


def test_cli_exits_with_the_problems(workdir):
    _write(workdir / "review.jsonl", [_queue_line("v-Scene-001", "maybe")])
    with pytest.raises(SystemExit, match="decision='maybe'"):
        main(["--workdir", str(workdir)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--workdir", str(workdir), "--file", str(workdir / "missing.jsonl")])


def test_a_cut_short_captions_file_is_an_error_naming_file_and_line(workdir):
    # captions.jsonl is written whole: its torn last line is damage, not a clip to call "unknown"
    path = workdir / "captions.jsonl"
    path.write_bytes(path.read_bytes()[:-10])
    before = path.read_bytes()
    _write(workdir / "review.jsonl", [_queue_line("v-Scene-005", "accepted")])
    with pytest.raises(SystemExit, match=r"^generation\.review: .*captions\.jsonl:5: malformed .*cut short"):
        main(["--workdir", str(workdir)])
    assert path.read_bytes() == before


def test_a_clip_id_on_two_lines_of_captions_is_refused_naming_both(workdir):
    path = workdir / "captions.jsonl"
    other = {**_caption("v-Scene-002", "pending"), "caption": "another caption"}
    with open(path, "a") as f:
        f.write(json.dumps(other) + "\n")  # line 6
    before = path.read_bytes()
    _write(workdir / "review.jsonl", [_queue_line("v-Scene-001")])  # no decisions: nothing to merge
    with pytest.raises(SystemExit, match=r"captions\.jsonl:6: clip_id='v-Scene-002' is repeated \(also on line 2\)"):
        main(["--workdir", str(workdir)])
    assert path.read_bytes() == before


@pytest.mark.parametrize("decision", ["accepted", "rejected"])
def test_a_typed_caption_on_a_line_not_edited_is_refused_not_dropped(workdir, decision):
    path = _write(
        workdir / "review.jsonl",
        [
            _queue_line("v-Scene-001", decision, "A caption the person typed."),  # was merged, the text dropped
            _queue_line("v-Scene-002", decision, "   "),  # nothing typed: fine
            _queue_line("v-Scene-003", None, "Typed, not decided yet."),  # stays pending, the text stays in the file
        ],
    )
    before = (workdir / "captions.jsonl").read_text()
    with pytest.raises(SystemExit) as info:
        main(["--workdir", str(workdir)])
    assert str(info.value).endswith(
        f"1 problem(s) in {path}, nothing merged:\n{path}:1: decision {decision!r} with reviewed_caption="
        f"'A caption the person typed.': ambiguous; set decision to 'edited' to use that caption, or "
        f"reviewed_caption to null to keep the decision {decision!r}"
    )
    assert (workdir / "captions.jsonl").read_text() == before


def test_a_review_file_saved_with_a_byte_order_mark_merges_and_a_repeated_key_is_a_problem(workdir):
    path = workdir / "review.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_queue_line("v-Scene-001", "accepted")).encode() + b"\r\n")
    assert merge_review(workdir)["accepted"] == 1
    path.write_text('{"clip_id": "v-Scene-002", "decision": "edited", "reviewed_caption": "A", "decision": null}\n')
    with pytest.raises(ReviewError, match=rf"{path}:1: key 'decision' appears twice in one object"):
        merge_review(workdir)
