"""`lovr_metric.evaluation.data.plan`: dataset rows to decode jobs, with every `clip_path` / `video_path` kept inside
the video root (real files and real symlinks in `tmp_path`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lovr_metric.evaluation.data import plan
from lovr_metric.evaluation.frames import FileStats, Segment, VideoJob, file_stat, sign_jobs


def _rows(clip_path: str | None, video_path: str | None, start=None, end=None):
    """One query clip of video "v" and the video's own row, as the `clips` and `videos` configs hold them."""
    clips = [
        {
            "clip_id": "v-Scene-001",
            "video_id": "v",
            "caption": "a clip",
            "split": "test",
            "start": start,
            "end": end,
            "clip_path": clip_path,
            "video_path": video_path,
        }
    ]
    return clips, [{"video_id": "v", "video_path": video_path, "caption": "a video"}]


@pytest.fixture
def root(tmp_path):
    """A video root holding a clip file, a link to it, and links (to a file, to a folder) that lead out of it."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "clips").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "clips" / "c.mp4").write_bytes(b"clip")
    (elsewhere / "c.mp4").write_bytes(b"clip")
    (root / "inner.mp4").symlink_to(root / "clips" / "c.mp4")
    (root / "outer.mp4").symlink_to(elsewhere / "c.mp4")
    (root / "away").symlink_to(elsewhere)
    return root


@pytest.mark.parametrize(
    ("clip_path", "video_path", "message"),
    [
        ("/etc/hostname", None, r"clip 'v-Scene-001': clip_path='/etc/hostname' is absolute, outside the video root"),
        ("clips/../../c.mp4", None, r"clip_path='clips/../../c.mp4' climbs out of the video root with '\.\.'"),
        (None, "../v.mp4", r"video 'v': video_path='\.\./v\.mp4' climbs out of the video root"),
        (None, "/srv/v.mp4", r"video 'v': video_path='/srv/v\.mp4' is absolute"),
    ],
)
def test_paths_leading_out_of_the_video_root_are_refused(root, clip_path, video_path, message):
    clips, videos = _rows(clip_path, video_path, *((0.0, 1.0) if video_path else (None, None)))
    with pytest.raises(ValueError, match=message):
        plan(clips, videos, [], root, ["clip", "video"])


def test_paths_that_stay_inside_are_kept_as_given(root):
    # A '..' that comes back inside is inside; links in the root are the user's (videos stored elsewhere, linked
    # in), followed wherever they lead: the job reads root / path.
    for clip_path in ("clips/../clips/c.mp4", "inner.mp4", "outer.mp4", "away/c.mp4"):
        data = plan(*_rows(clip_path, None), [], root, ["clip"])
        assert [job.path for job in data.jobs] == [root / clip_path]


@pytest.mark.parametrize(
    ("start", "end", "duration", "message"),
    [
        (13.0, 6.0, None, r"clips row 'v-Scene-001': start=13.0, end=6.0; expected 0 <= start < end"),
        (2.0, 2.0, None, r"start=2.0, end=2.0; expected 0 <= start < end"),
        (-1.0, 2.0, None, r"start=-1.0"),
        (0.0, float("nan"), None, r"end=nan; expected a finite number of seconds"),
        (float("inf"), 2.0, None, r"start=inf; expected a finite number"),
        (1.0, None, None, r"end=None; expected a finite number"),
        (4.0, 12.0, 10.0, r"end=12.0 lies past the end of its video, duration=10.0"),
    ],
)
def test_clip_times_that_are_not_a_time_range_are_refused_before_any_work(tmp_path, start, end, duration, message):
    # FrameSampling.times(13.0, 6.0, 25.0) is [13.0]: such a clip was embedded from one frame, silently.
    clips, videos = _rows(None, "v.mp4", start, end)
    videos[0]["duration"] = duration
    with pytest.raises(ValueError, match=message):
        plan(clips, videos, [], tmp_path, ["clip"])
    assert plan(*_rows(None, "v.mp4", 0.0, 2.0), [], tmp_path, ["clip"]).jobs[0].segments[0].end == 2.0


def test_an_empty_caption_is_no_query_and_is_refused(tmp_path):
    clips, videos = _rows(None, "v.mp4", 0.0, 2.0)
    clips[0]["caption"] = " \n"
    with pytest.raises(ValueError, match=r"1 query captions \(clips of the 'test' split\) are empty, e.g. that of"):
        plan(clips, videos, [], tmp_path, ["clip"])
    clips[0]["caption"] = None  # not known: no query, its clip still in the gallery
    data = plan(clips, videos, [], tmp_path, ["clip"])
    assert data.queries["clip"] == [] and data.clip_ids == ["v-Scene-001"]


@pytest.mark.parametrize(
    "clip_path", ["c.mp4", "clips/c.mp4", "clips//c.mp4", "./clips/./c.mp4", "clips/sub/../c.mp4", "clips/", ""]
)
def test_a_path_is_root_joined_with_it_whatever_its_spelling(tmp_path, clip_path):
    # Folders are parsed once per plan (a cache of root / folder): the path must be the one root / clip_path gives.
    clips, videos = _rows(clip_path, None)
    clips.append({**clips[0], "clip_id": "v-Scene-002"})  # the second clip of a folder takes the cached one
    data = plan(clips, videos, [], tmp_path, ["clip"])
    assert [str(job.path) for job in data.jobs] == [str(tmp_path / clip_path)] * 2
    assert [job.path for job in data.jobs] == [tmp_path / clip_path] * 2


def test_signing_many_jobs_at_once_gives_each_job_its_own_signature(root, tmp_path, monkeypatch):
    # `sign_jobs` resolves each folder once (`FileStats`); what it computes must be what each job computes alone,
    # for a plain file, links to files inside and outside, a file reached through a linked folder, a '..' that
    # comes back, a missing file and a dangling link.
    (root / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    paths = ["clips/c.mp4", "inner.mp4", "outer.mp4", "away/c.mp4", "clips/../clips/c.mp4", "gone.mp4", "dangling.mp4"]
    jobs = [VideoJob(f"job{i}", root / path, [Segment(f"c{i}", "clip")]) for i, path in enumerate(paths)]
    alone = [dataclasses.replace(job).signature for job in jobs]
    sign_jobs(jobs)
    assert [job.signature for job in jobs] == alone
    stats = FileStats()
    assert [stats(root / path) for path in paths] == [file_stat(root / path) for path in paths]
    monkeypatch.chdir(root)  # relative paths: a file of the working folder has no folder in its text
    assert [stats(Path(path)) for path in paths] == [file_stat(Path(path)) for path in paths]

    class OwnSignature(VideoJob):  # a protocol's job that replaces `signature` itself is left to it
        @property
        def signature(self) -> str:
            return "its own"

    own = OwnSignature("own", root / "clips/c.mp4", [Segment("c", "clip")])
    sign_jobs([own])
    assert own.signature == "its own"
    assert stats(root / "away/c.mp4")[0] == str(tmp_path / "elsewhere" / "c.mp4")
