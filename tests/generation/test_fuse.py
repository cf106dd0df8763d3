import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from generation._fuse_prompts import parse_two_paragraphs, split_paragraphs
from generation._llm import LlmCall, call_with_retries
from generation.backends import BackendArguments, ChatResult, EndpointBackend, GenerationParams
from generation.fuse import FuseConfig, FuseJob, FuseParams, main, run
from generation.review import merge_review
from lovr_common.jsonl import read_jsonl
from lovr_standins.tiny_models import tiny_model_path

SERVER = Path(__file__).with_name("openai_server.py")


def fuse(config, backend_args, backend=None, params=None):
    """Every videos record after `generation.fuse` ran with `backend` (loaded from `backend_args` when None) and
    `params` (fusion's defaults when None)."""
    return run(FuseJob(config, params or FuseParams(), backend_args), backend).records


class ScriptedSummarizer:
    """A deterministic chat backend that follows the fusion prompts, for checking the layout.

    The tiny random-weight LLM cannot follow an instruction, so its replies are unusable and every boundary falls
    back; this backend answers in the requested shape (and fails on request) to exercise the successful path.
    """

    model = "scripted"

    def __init__(self, fail_first=0):
        self.fail_first = fail_first
        self.calls = []

    def generate(self, requests, params):
        self.calls.append((len(requests), params.seed))
        results = []
        for request in requests:
            if "[fail]" in request.user or params.seed < self.fail_first:
                results.append(ChatResult(error="scripted failure"))
            elif request.user.startswith("The two paragraphs"):
                body = request.user.split("Paragraph 1:\n", 1)[1]
                before, after = body.split("\n\nParagraph 2:\n")
                results.append(ChatResult(text=f"{before} Then,\n\nnext {after}"))
            elif request.user.startswith("The first paragraph"):
                results.append(ChatResult(text="The story moves on."))
            else:
                results.append(ChatResult(text="Overall, the video\nis scripted."))
        return results


def _write_run(workdir, n_clips, captions=None, video_id="v"):
    clips = [
        {"clip_id": f"{video_id}-Scene-{n:03d}", "clip_index": n, "start": 5.0 * (n - 1), "end": 5.0 * n}
        for n in range(1, n_clips + 1)
    ]
    segment = {"video_id": video_id, "duration": 5.0 * n_clips, "clips": clips, "status": "ok"}
    with open(workdir / "segments.jsonl", "a") as f:
        f.write(json.dumps(segment) + "\n")
    with open(workdir / "captions.jsonl", "a") as f:
        for clip in clips:
            caption = (captions or {}).get(clip["clip_index"], f"Scene {clip['clip_index']} text.")
            record = {"clip_id": clip["clip_id"], "video_id": video_id, "caption": caption, "status": "ok"}
            if caption is None:
                record.update(caption=None, status="failed", reason="decode error")
            f.write(json.dumps(record) + "\n")


def test_parsing_helpers():
    assert split_paragraphs("a\n\n  b\nc \n\n\n") == ["a", "b\nc"]
    assert parse_two_paragraphs("one\n\ntwo") == ("one", "two")
    assert parse_two_paragraphs("one\ntwo\n") == ("one", "two")
    with pytest.raises(ValueError, match="expected two paragraphs"):
        parse_two_paragraphs("one\ntwo\nthree")


def test_layout_clusters_linkage_and_summary(tmp_path):
    # 5 clips, clusters of 2: [1, 2] [3, 4] [5]; clip 4 has two paragraphs; clip 3 failed and is skipped,
    # so the clusters are [1, 2] [4, 5].
    _write_run(tmp_path, 5, captions={3: None, 4: "Four a.\n\nFour b."})
    backend = ScriptedSummarizer()
    records = fuse(FuseConfig(str(tmp_path), cluster_size=2, call_backoff=0), BackendArguments(model="m"), backend)
    record = records["v"]
    assert record["status"] == "ok" and record["clip_ids"] == [
        "v-Scene-001",
        "v-Scene-002",
        "v-Scene-004",
        "v-Scene-005",
    ]
    assert record["clusters"] == [["v-Scene-001", "v-Scene-002"], ["v-Scene-004", "v-Scene-005"]]
    assert record["skipped_clips"] == [{"clip_id": "v-Scene-003", "reason": "caption failed: decode error"}]
    assert record["caption"] == (
        "Clip 1: Scene 1 text. Then,\n\n"
        "Clip 2: next Scene 2 text.\n\n"
        "Linkage: The story moves on.\n\n"
        "Clip 4: Four a.\nFour b. Then,\n\n"
        "Clip 5: next Scene 5 text.\n\n"
        "Summary: Overall, the video is scripted."
    )
    assert [(b["after"], b["kind"], b["status"]) for b in record["boundaries"]] == [
        ("v-Scene-001", "rewrite", "ok"),
        ("v-Scene-004", "rewrite", "ok"),
        ("v-Scene-002", "linkage", "ok"),
        ("v-Scene-005", "summary", "ok"),
    ]
    # three batched passes: odd boundaries (2 calls), even boundaries (none), linkage + summary (2 calls)
    assert backend.calls == [(2, 0), (2, 0)]
    assert record["settings"]["prompt_version"] == "lovr-fuse-v1" and record["settings"]["temperature"] == 0.5


def test_one_paragraph_clip_is_rewritten_at_both_ends_in_two_passes(tmp_path):
    _write_run(tmp_path, 3)
    record = fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), ScriptedSummarizer())["v"]
    # pass 1 rewrites boundary 1-2, pass 2 boundary 2-3, on clip 2's already rewritten paragraph
    assert record["caption"].split("\n\n")[:3] == [
        "Clip 1: Scene 1 text. Then,",
        "Clip 2: next Scene 2 text. Then,",
        "Clip 3: next Scene 3 text.",
    ]


def test_failed_calls_are_retried_with_new_seeds_then_fall_back(tmp_path):
    calls = [LlmCall("s", "The first paragraph [fail]", str), LlmCall("s", "The first paragraph", str)]
    backend = ScriptedSummarizer(fail_first=1)  # every call fails at seed 0
    outcomes = call_with_retries(backend, calls, GenerationParams(seed=0), max_retries=2, backoff=0)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].reason == "call failed: scripted failure (after 3 tries)" and outcomes[1].tries == 2
    # both fail at seed 0 and are sent again with seed 1; only the still failing one is sent with seed 2
    assert backend.calls == [(2, 0), (2, 1), (1, 2)]


def test_a_video_never_fails_because_calls_fail(tmp_path):
    _write_run(tmp_path, 3, captions={2: "Two [fail]."})
    record = fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), ScriptedSummarizer())["v"]
    assert record["status"] == "ok"
    statuses = {(b["after"], b["kind"]): (b["status"], b["reason"]) for b in record["boundaries"]}
    assert statuses[("v-Scene-001", "rewrite")] == ("fallback", "call failed: scripted failure (after 3 tries)")
    # every call mentions clip 2 (the summary reads every clip's first sentence): all fall back, the video stays
    assert [b["status"] for b in record["boundaries"]] == ["fallback"] * 3
    assert record["caption"] == "Clip 1: Scene 1 text.\n\nClip 2: Two [fail].\n\nClip 3: Scene 3 text."


def test_video_without_usable_captions_fails_alone_and_is_retried(tmp_path):
    _write_run(tmp_path, 2, captions={1: None, 2: None}, video_id="bad")
    _write_run(tmp_path, 1, video_id="good")
    records = fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), ScriptedSummarizer())
    assert records["good"]["status"] == "ok"
    assert records["bad"]["status"] == "failed" and "none of the video's 2 clips" in records["bad"]["reason"]
    failures = list(read_jsonl(tmp_path / "failures.jsonl"))
    assert [(f["stage"], f["id"]) for f in failures] == [("fuse", "bad")]
    backend = ScriptedSummarizer()
    fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), backend)
    assert backend.calls == []  # only the failed video was redone, and it has nothing to call the LLM for


def test_a_video_whose_clip_captions_changed_in_review_is_fused_again(tmp_path, caplog):
    _write_run(tmp_path, 2, video_id="a")
    _write_run(tmp_path, 2, video_id="b")
    config, args = FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m")
    first = fuse(config, args, ScriptedSummarizer())
    # a human edits clip 2 of video b: refine queued it, the review merge rewrites captions.jsonl
    captions = list(read_jsonl(tmp_path / "captions.jsonl"))
    for record in captions:
        record["review"] = "pending" if record["clip_id"] == "b-Scene-002" else None
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in captions))
    line = {"clip_id": "b-Scene-002", "decision": "edited", "reviewed_caption": "A person wrote this."}
    (tmp_path / "review.jsonl").write_text(json.dumps(line) + "\n")
    merge_review(tmp_path)

    backend = ScriptedSummarizer()
    second = fuse(config, args, backend)
    assert second["a"] == first["a"]  # untouched: not fused again
    assert backend.calls == [(1, 0), (1, 0)]  # one video: its one boundary, then its summary
    assert "Clip 2: next A person wrote this." in second["b"]["caption"]
    assert "Scene 2 text" not in second["b"]["caption"]
    assert second["b"]["inputs_sha256"] != first["b"]["inputs_sha256"]
    backend = ScriptedSummarizer()
    fuse(config, args, backend)
    assert backend.calls == []  # up to date now
    # a record written before input digests existed cannot be trusted: fused again, and the log says why
    records = list(read_jsonl(tmp_path / "videos.jsonl"))
    del records[0]["inputs_sha256"]
    (tmp_path / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with caplog.at_level("INFO", logger="generation.fuse"):
        third = fuse(config, args, ScriptedSummarizer())
    assert "1 video(s) to fuse again, their records predate input digests: ['a']" in caplog.text
    assert third["a"]["inputs_sha256"] == first["a"]["inputs_sha256"]


@pytest.fixture(scope="module")
def server():
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", str(tiny_model_path("causal-lm"))], stdout=subprocess.PIPE, text=True
    )
    url = process.stdout.readline().strip().removeprefix("listening on ")
    yield url
    process.kill()
    process.wait()


def test_endpoint_server_errors_fall_back_per_boundary(tmp_path, server):
    # A real HTTP server with the tiny random LLM: [fail-500] makes every call about clip 2 answer HTTP 500;
    # the other calls reach the model, whose random replies are unusable or (rarely) usable, never a crash.
    _write_run(tmp_path, 4, captions={2: "Two [fail-500]."})
    backend = EndpointBackend(server, "tiny", max_retries=0, timeout=120)  # generous: 2 shared cores
    config = FuseConfig(str(tmp_path), cluster_size=2, call_retries=1, call_backoff=0)
    args = BackendArguments(model=str(tiny_model_path("causal-lm")))
    record = fuse(config, args, backend, FuseParams(max_new_tokens=8))["v"]
    assert record["status"] == "ok" and record["num_clips"] == 4
    by_kind = {(b["after"], b["kind"]): b for b in record["boundaries"]}
    assert set(by_kind) == {
        ("v-Scene-001", "rewrite"),
        ("v-Scene-003", "rewrite"),
        ("v-Scene-002", "linkage"),
        ("v-Scene-004", "summary"),
    }
    failed = by_kind[("v-Scene-001", "rewrite")]
    assert failed["status"] == "fallback" and failed["reason"].startswith("call failed: HTTP 500")
    assert "(after 2 tries)" in failed["reason"]
    for boundary in record["boundaries"]:
        assert boundary["status"] == "ok" or "HTTP 500" in boundary["reason"] or "unusable reply" in boundary["reason"]
    assert "Clip 2: Two [fail-500]." in record["caption"]
    assert record["settings"]["random_weights"] is True


def test_cli_exit_status(tmp_path):
    with pytest.raises(ValueError, match="segments.jsonl: run generation.segment first"):
        fuse(FuseConfig(str(tmp_path)), BackendArguments(model="m"))
    _write_run(tmp_path, 3)
    _write_run(tmp_path, 1, captions={1: None}, video_id="bad")
    args = ["--workdir", str(tmp_path), "--model", str(tiny_model_path("causal-lm")), "--max_new_tokens", "8"]
    assert main([*args, "--call_backoff", "0"]) == 1  # "bad" has no usable caption
    records = {r["video_id"]: r for r in read_jsonl(tmp_path / "videos.jsonl")}
    assert records["v"]["status"] == "ok" and records["bad"]["status"] == "failed"


def test_a_damaged_captions_file_is_an_error_naming_file_and_line(tmp_path):
    # captions.jsonl is written whole: a cut-short last line is damage, never an interrupted write to skip over
    _write_run(tmp_path, 3)
    path = tmp_path / "captions.jsonl"
    path.write_bytes(path.read_bytes()[:-20])  # line 3 (v-Scene-003) loses its end and its newline
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:3: malformed .*cut short"):
        fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), ScriptedSummarizer())
    assert not (tmp_path / "videos.jsonl").exists()


def test_a_clip_id_on_two_lines_of_captions_is_refused_naming_both(tmp_path):
    _write_run(tmp_path, 2)
    with open(tmp_path / "captions.jsonl", "a") as f:  # line 3: clip 1 again, with another caption
        f.write(json.dumps({"clip_id": "v-Scene-001", "video_id": "v", "caption": "Other.", "status": "ok"}) + "\n")
    with pytest.raises(ValueError, match=r"captions\.jsonl:3: clip_id='v-Scene-001' is repeated \(also on line 1\)"):
        fuse(FuseConfig(str(tmp_path), call_backoff=0), BackendArguments(model="m"), ScriptedSummarizer())
    assert not (tmp_path / "videos.jsonl").exists()


def test_greedy_decoding_is_asked_for_and_recorded(tmp_path):
    _write_run(tmp_path, 2)
    backend = ScriptedSummarizer()
    params = []
    backend.generate = lambda requests, p, generate=backend.generate: params.append(p) or generate(requests, p)
    config, sampling = FuseConfig(str(tmp_path), call_backoff=0), FuseParams(do_sample=False, temperature=0.3, seed=7)
    record = fuse(config, BackendArguments(model="m"), backend, sampling)["v"]
    assert {(p.do_sample, p.temperature, p.seed) for p in params} == {(False, 0.3, 7)}
    assert record["settings"]["do_sample"] is False and record["settings"]["temperature"] == 0.3
