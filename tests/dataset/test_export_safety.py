"""Export never loses data: it refuses the source, a user's file or folder, cleans what a killed export left, and
writes folders with normal permissions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lovr_dataset import export
from lovr_dataset.export import MARKER

from .dataset_layouts import make_official


@pytest.fixture
def official(tmp_path, clip_files):
    return make_official(tmp_path / "LoVR", clip_files)


def tree(folder) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def export_command(src, out, *options) -> list[str]:
    return [sys.executable, "-m", "lovr_dataset", "export", str(src), str(out), "--num-queries", "2", *options]


def test_export_onto_its_own_source_is_refused_by_the_command_line_and_deletes_nothing(official, tmp_path):
    before = tree(official)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "c")}
    result = subprocess.run(export_command(official, official, "--overwrite"), capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "is the source" in result.stderr and "Traceback" not in result.stderr
    assert tree(official) == before and (official / "caption_data/all_clip.jsonl").is_file()


@pytest.mark.parametrize("where", ["parent", "inside", "same_via_dots"])
def test_export_above_inside_or_onto_the_source_is_refused(official, tmp_path, cache_dir, where):
    out = {"parent": tmp_path, "inside": official / "export", "same_via_dots": official / "caption_data" / ".."}[where]
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=r"is the source data_dir=.*inside it or above it"):
        export(official, out, overwrite=True, cache_dir=cache_dir)
    assert tree(tmp_path) == before


def test_overwrite_replaces_an_earlier_export_but_not_a_users_folder(official, tmp_path, cache_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=r"non-empty folder that no export wrote \(it has no \.lovr-export\)"):
        export(official, mine, overwrite=True, cache_dir=cache_dir)
    assert tree(mine) == ["thesis.tex"]
    out = export(official, tmp_path / "lovr", cache_dir=cache_dir)
    (out / "stale.txt").write_text("from the earlier export")
    export(official, out, overwrite=True, cache_dir=cache_dir)
    assert (out / MARKER).is_file() and not (out / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LoVR", "lovr", "mine"]  # no leftovers, and no cache


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_file_or_symlink_at_out_dir_is_refused_before_anything_is_written(official, tmp_path, cache_dir, kind):
    out = tmp_path / "lovr"
    if kind == "file":
        out.write_text("a user's file")
    else:
        (tmp_path / "target").mkdir()
        out.symlink_to(tmp_path / "target")
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=r"out_dir=.*lovr' is a file or a symlink, not a folder"):
        export(official, out, overwrite=True, cache_dir=cache_dir)
    assert tree(tmp_path) == before  # no staging folder, no renamed file
    if kind == "file":
        assert out.read_text() == "a user's file"


def test_an_empty_folder_is_used(official, tmp_path, cache_dir):
    out = tmp_path / "lovr"
    out.mkdir()
    export(official, out, cache_dir=cache_dir)
    assert (out / MARKER).is_file() and (out / "clips").is_dir()


def test_the_export_follows_the_umask(official, tmp_path, cache_dir):
    out = tmp_path / "lovr"
    umask = os.umask(0o022)
    try:
        export(official, out, cache_dir=cache_dir)
    finally:
        os.umask(umask)
    # umask 022: folders 0777 & ~022 = 0755, files 0666 & ~022 = 0644 (mkdtemp would give the top folder 0700).
    modes = {path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777 for path in [out, *out.rglob("*")]}
    assert modes["lovr"] == 0o755 and modes["lovr/clips"] == 0o755
    assert modes["lovr/README.md"] == 0o644 and modes["lovr/clips/test-00000-of-00001.parquet"] == 0o644
    assert set(modes.values()) == {0o755, 0o644}


def test_leftovers_of_a_sigkilled_export_are_cleaned_by_the_next_one(official, tmp_path):
    out = tmp_path / "lovr"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "c")}
    export(official, out, cache_dir=str(tmp_path / "c"))
    process = subprocess.Popen(export_command(official, out, "--overwrite"), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(f".lovr.tmp-{process.pid}-*/{MARKER}")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    (killed,) = tmp_path.glob(f".lovr.tmp-{process.pid}-*")
    # An old export renamed aside by a swap killed before removing it (OUT_DIR is the new one), made by a process
    # that has exited (and been reaped).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old = tmp_path / f".lovr.old-{gone.stdout.strip()}-0123abcd"
    old.mkdir()
    (old / MARKER).touch()
    # Kept: one of a live process (this one), one without the marker, and a name of another pattern.
    live = tmp_path / f".lovr.tmp-{os.getpid()}-89abcdef"
    unmarked = tmp_path / f".lovr.tmp-{gone.stdout.strip()}-00000000"
    other = tmp_path / f".lovr.tmp-{gone.stdout.strip()}-notours"
    for folder in (live, unmarked, other):
        folder.mkdir()
        (folder / "x").touch()
    (live / MARKER).touch()
    (other / MARKER).touch()
    subprocess.run(export_command(official, out, "--overwrite"), env=env, check=True, capture_output=True)
    assert not killed.exists() and not old.exists()
    assert live.exists() and unmarked.exists() and other.exists()
    assert (out / MARKER).is_file() and (out / "clips").is_dir()


def test_an_export_set_aside_by_a_killed_swap_is_put_back(official, tmp_path, cache_dir):
    # The state a SIGKILL between the swap's two renames leaves: OUT_DIR gone, the earlier export aside, the new one
    # staged, both named after a process that has exited.
    out = export(official, tmp_path / "lovr", cache_dir=cache_dir)
    (out / "earlier.txt").write_text("from the earlier export")
    before = tree(out)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out.rename(tmp_path / f".lovr.old-{gone.stdout.strip()}-0123abcd")
    staged = tmp_path / f".lovr.tmp-{gone.stdout.strip()}-4567cdef"
    staged.mkdir()
    (staged / MARKER).touch()
    with pytest.raises(ValueError, match=r"lovr' already exists; pass overwrite=True"):
        export(official, out, cache_dir=cache_dir)
    assert tree(out) == before and not staged.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LoVR", "lovr"]


def test_a_running_export_keeps_its_staging_while_another_exports_the_same_folder(official, tmp_path):
    out = tmp_path / "lovr"
    # A cache each: a process stopped while it holds the datasets cache lock would block the other forever.
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "c1")}
    first = subprocess.Popen(export_command(official, out, "--overwrite"), env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(f".lovr.tmp-{first.pid}-*/{MARKER}")) and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # alive but still: its staging folder stays as it is while the second runs
        (staging,) = tmp_path.glob(f".lovr.tmp-{first.pid}-*")
        env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "c2")}
        second = export_command(official, out, "--overwrite")
        subprocess.run(second, env=env, check=True, capture_output=True, timeout=60)
        assert staging.is_dir() and (staging / MARKER).is_file()
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=60) == 0  # it replaces the second's export, an export too
    finally:
        first.kill()
        first.wait()
    assert (out / MARKER).is_file() and not list(tmp_path.glob(".lovr.*"))
