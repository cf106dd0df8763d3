import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from generation.stage import FailureLog, parse_job, run_sharded, stage_main
from lovr_common.jsonl import JsonlError
from lovr_common.run_folder import StageFile, load_records, read_failures
from tests.generation.echo_stage import ECHO, launch_command

S = StageFile("s", "id", "tests.generation.test_stage")


def _ids(path):
    return [json.loads(line)["id"] for line in Path(path).read_text().splitlines()]


def test_run_sharded_skips_done_ids_and_keeps_item_order(tmp_path):
    calls = []

    def process(batch):
        calls.append([item["id"] for item in batch])
        return [{"id": item["id"], "n": item["n"], "status": "ok"} for item in batch]

    items = [{"id": f"v{n}", "n": n} for n in (3, 1, 2)]
    run_sharded(workdir=tmp_path, stage=S, items=items[:2], process_batch=process, batch_size=2)
    records = run_sharded(workdir=tmp_path, stage=S, items=items, process_batch=process, batch_size=2)
    assert calls == [["v3", "v1"], ["v2"]]
    assert list(records) == ["v3", "v1", "v2"]
    assert _ids(S.path(tmp_path)) == ["v3", "v1", "v2"]
    assert not list((tmp_path / ".shards").glob("*.jsonl"))


def test_is_done_retries_failed_records_and_later_record_wins(tmp_path):
    outcome = {"a": "failed", "b": "ok"}

    def process(batch):
        return [{"id": item["id"], "status": outcome[item["id"]]} for item in batch]

    items = [{"id": "a"}, {"id": "b"}]
    run_sharded(workdir=tmp_path, stage=S, items=items, process_batch=process)
    outcome["a"] = "ok"
    seen = []

    def process_again(batch):
        seen.extend(item["id"] for item in batch)
        return process(batch)

    records = run_sharded(
        workdir=tmp_path,
        stage=S,
        items=items,
        process_batch=process_again,
        is_done=lambda r: r["status"] == "ok",
    )
    assert seen == ["a"]
    assert {k: r["status"] for k, r in records.items()} == {"a": "ok", "b": "ok"}
    assert _ids(S.path(tmp_path)) == ["a", "b"]


def test_leftover_shard_of_a_killed_run_counts_as_done(tmp_path):
    shards = tmp_path / ".shards"
    shards.mkdir()
    # a crash left one whole record and a torn line behind
    (shards / "s-00001.jsonl").write_text('{"id": "b", "status": "ok"}\n{"id": "c", "sta')
    done = []

    def process(batch):
        done.extend(item["id"] for item in batch)
        return [{"id": item["id"], "status": "ok"} for item in batch]

    run_sharded(workdir=tmp_path, stage=S, items=[{"id": x} for x in "abc"], process_batch=process)
    assert done == ["a", "c"]
    assert _ids(S.path(tmp_path)) == ["a", "b", "c"]


def test_a_torn_last_line_of_a_merged_file_is_damage_not_an_interrupted_write(tmp_path):
    # s.jsonl is only ever written whole (atomic rename): its cut-short line 2 is damage, for every reader
    S.path(tmp_path).write_text('{"id": "a", "status": "ok"}\n{"id": "b", "sta')
    with pytest.raises(JsonlError, match=r"s\.jsonl:2: malformed .*cut short"):
        load_records(tmp_path, S)
    with pytest.raises(JsonlError, match=r"s\.jsonl:2: malformed"):
        run_sharded(workdir=tmp_path, stage=S, items=[{"id": "b"}], process_batch=lambda b: [])
    assert S.path(tmp_path).read_text() == '{"id": "a", "status": "ok"}\n{"id": "b", "sta'


def test_a_key_on_two_lines_of_a_merged_file_is_refused_naming_both(tmp_path):
    lines = ['{"id": "a", "n": 1}', '{"id": "b", "n": 2}', "", '{"id": "a", "n": 3}']  # line 3 is blank
    S.path(tmp_path).write_text("\n".join(lines) + "\n")
    with pytest.raises(JsonlError, match=r"s\.jsonl:4: id='a' is repeated \(also on line 1\)"):
        load_records(tmp_path, S)


def test_a_shard_record_overrides_the_merged_one(tmp_path):
    # a retry of a failed id lands in a shard: it wins over the merged record, as the resume logic needs
    S.path(tmp_path).write_text('{"id": "a", "status": "failed"}\n')
    (tmp_path / ".shards").mkdir()
    (tmp_path / ".shards" / "s-00000.jsonl").write_text('{"id": "a", "status": "ok"}\n')
    assert load_records(tmp_path, S) == {"a": {"id": "a", "status": "ok"}}


def test_a_stale_shard_of_a_killed_run_never_outranks_a_newer_record(tmp_path):
    # A killed 2-process run left rank 1's failed record of "a"; this run retries "a" as rank 0. Shards are read in
    # name order, so without folding the leftovers first the stale s-00001 line would win the merge.
    (tmp_path / ".shards").mkdir()
    (tmp_path / ".shards" / "s-00001.jsonl").write_text('{"id": "a", "status": "failed"}\n')

    def process(batch):
        return [{"id": item["id"], "status": "ok"} for item in batch]

    records = run_sharded(
        workdir=tmp_path,
        stage=S,
        items=[{"id": "a"}],
        process_batch=process,
        is_done=lambda r: r["status"] == "ok",
    )
    assert records == {"a": {"id": "a", "status": "ok"}}
    assert S.path(tmp_path).read_text() == '{"id": "a", "status": "ok"}\n'


def _launch(workdir, count, *extra, processes=2):
    cmd = [*launch_command(processes), str(workdir), str(count), *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_accelerate_launch_two_processes_then_resume_after_sigkill(tmp_path):
    # Real `accelerate launch` with two processes: each writes its own shard, the main process merges.
    crashed = _launch(tmp_path / "w", 20, "--die_after", 4)
    assert crashed.returncode != 0
    partial = load_records(tmp_path / "w", ECHO)
    assert 0 < len(partial) < 20
    resumed = _launch(tmp_path / "w", 20)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = [json.loads(line) for line in ECHO.path(tmp_path / "w").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"i-{n:03d}" for n in range(20)]
    assert all(r["text"] == r["id"].upper() for r in records)

    single = _launch(tmp_path / "single", 20, processes=1)
    assert single.returncode == 0, single.stderr[-2000:]
    assert ECHO.path(tmp_path / "single").read_text() == ECHO.path(tmp_path / "w").read_text()


@pytest.mark.slow
def test_a_rank_that_reads_the_folder_late_still_gets_the_same_share(tmp_path):
    # Rank 0 reads what is done 1 s after rank 1, which has written its half (i-010..019) by then. Without a barrier
    # between reading and writing, rank 0 takes those for done, splits the 10 left, does its half (i-000..004) and
    # i-005..009 are never done.
    done = _launch(tmp_path / "w", 20, "--lag_main", 1.0)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _ids(ECHO.path(tmp_path / "w")) == [f"i-{n:03d}" for n in range(20)]


def test_failed_records_are_logged_once_each_by_the_runner(tmp_path):
    def process(batch):
        return [{"id": i["id"], "status": "failed" if i["id"] == "b" else "ok", "reason": "bad"} for i in batch]

    failures = FailureLog(
        "s-stage",
        reason=lambda r: r["reason"] if r["status"] == "failed" else None,
        path=lambda item: f"{item['id']}.mp4",
    )
    items = [{"id": x} for x in "abc"]
    run_sharded(workdir=tmp_path, stage=S, items=items, process_batch=process, batch_size=2, failures=failures)
    assert read_failures(tmp_path) == [{"stage": "s-stage", "id": "b", "path": "b.mp4", "reason": "bad"}]


def test_a_batch_yielding_records_out_of_item_order_is_a_bug_said_at_once(tmp_path):
    def process(batch):
        return [{"id": item["id"], "status": "ok"} for item in reversed(batch)]

    with pytest.raises(RuntimeError, match="process_batch gave id='b' for the item 'a'"):
        run_sharded(workdir=tmp_path, stage=S, items=[{"id": "a"}, {"id": "b"}], process_batch=process, batch_size=2)


@dataclass
class _Paths:
    workdir: str = field(metadata={"help": "Run folder."})


@dataclass
class _Size:
    size: int = 1

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be >= 1, but got size={self.size}")


@dataclass
class _Job:
    paths: _Paths
    size: _Size

    @property
    def workdir(self):
        return self.paths.workdir


@dataclass
class _Summary:
    n: int

    @property
    def failed(self):
        return self.n > 2

    def report(self):
        return f"toy: {self.n}"


def test_stage_main_parses_groups_runs_reports_and_exits(tmp_path, capsys):
    assert parse_job(_Job, ["--workdir", str(tmp_path), "--size", "3"]) == _Job(_Paths(str(tmp_path)), _Size(3))
    assert parse_job(_Paths, ["--workdir", "w"]) == _Paths("w")  # a job that is one argument group
    run = lambda job: _Summary(job.size.size)  # noqa: E731
    assert stage_main("toy", _Job, run, ["--workdir", str(tmp_path), "--size", "2"], creates_workdir=True) == 0
    assert stage_main("toy", _Job, run, ["--workdir", str(tmp_path), "--size", "3"]) == 1
    assert capsys.readouterr().out == "toy: 2\ntoy: 3\n"
    with pytest.raises(SystemExit, match=r"^toy: size must be >= 1, but got size=0$"):
        stage_main("toy", _Job, run, ["--workdir", str(tmp_path), "--size", "0"])
    with pytest.raises(SystemExit, match=r"^toy: run folder .*missing does not exist"):
        stage_main("toy", _Job, run, ["--workdir", str(tmp_path / "missing")])


@pytest.mark.parametrize("records, word", [([], "fewer"), ([{"id": "a"}, {"id": "b"}], "more")])
def test_a_batch_yielding_too_few_or_too_many_records_is_named(tmp_path, records, word):
    with pytest.raises(RuntimeError, match=f"s: process_batch gave {word} records than the 1 items of its batch"):
        run_sharded(workdir=tmp_path, stage=S, items=[{"id": "a"}], process_batch=lambda batch: records)


def test_prepare_runs_on_the_next_batch_while_this_one_is_processed(tmp_path):
    items = [{"id": f"v{n}", "n": n} for n in range(5)]  # batches of 2: [v0 v1] [v2 v3] [v4]
    prepared_ready = [threading.Event() for _ in range(3)]
    threads = set()

    def prepare(batch):
        threads.add(threading.current_thread().name)
        prepared_ready[batch[0]["n"] // 2].set()
        return [item["n"] * 10 for item in batch]

    def process(batch, prepared):
        index = batch[0]["n"] // 2
        # Without overlap this would wait forever: the next batch is prepared only once this one is done.
        if index + 1 < len(prepared_ready):
            assert prepared_ready[index + 1].wait(timeout=30), f"batch {index + 1} was not prepared meanwhile"
        return [{"id": item["id"], "tens": tens} for item, tens in zip(batch, prepared, strict=True)]

    records = run_sharded(workdir=tmp_path, stage=S, items=items, process_batch=process, batch_size=2, prepare=prepare)
    assert [r["tens"] for r in records.values()] == [0, 10, 20, 30, 40]
    # the first batch, with nothing to overlap, on the calling thread (lazy model loading stays there); the rest in
    # the background
    assert threading.current_thread().name in threads and len(threads) == 2


def test_a_failing_prepare_keeps_the_batches_already_done(tmp_path):
    items = [{"id": f"v{n}", "n": n} for n in range(4)]

    def prepare(batch):
        if batch[0]["n"] == 2:
            raise RuntimeError("decoder crashed")
        return None

    with pytest.raises(RuntimeError, match="decoder crashed"):
        run_sharded(
            workdir=tmp_path,
            stage=S,
            items=items,
            process_batch=lambda b, _: [{"id": i["id"]} for i in b],
            batch_size=2,
            prepare=prepare,
        )
    # the first batch's records are in this rank's shard, and a rerun merges them instead of redoing them
    seen = []
    run_sharded(
        workdir=tmp_path,
        stage=S,
        items=items,
        batch_size=2,
        process_batch=lambda batch: seen.extend(i["id"] for i in batch) or [{"id": i["id"]} for i in batch],
    )
    assert seen == ["v2", "v3"] and _ids(S.path(tmp_path)) == ["v0", "v1", "v2", "v3"]


def test_an_error_does_not_wait_for_the_next_batchs_preparation(tmp_path):
    release = threading.Event()

    def prepare(batch):
        if batch[0]["n"] == 2:
            release.wait(timeout=30)  # a slow decode of the second batch
        return None

    def process(batch, prepared):
        raise RuntimeError("the model failed")

    items = [{"id": f"v{n}", "n": n} for n in range(4)]
    try:
        with pytest.raises(RuntimeError, match="the model failed"):
            run_sharded(workdir=tmp_path, stage=S, items=items, process_batch=process, batch_size=2, prepare=prepare)
        assert not release.is_set()  # the error came out while the next batch was still being prepared
    finally:
        release.set()
