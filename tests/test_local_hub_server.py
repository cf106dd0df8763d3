"""The local Hub (`tests/local_hub.py`) as its clients see it: raw HTTP from here, huggingface_hub from a subprocess
(it reads HF_ENDPOINT at import, and this process is offline)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from .local_hub import git_blob_oid

# Run as one client against a fresh hub: every line is a check whose expected value is derived by hand.
CLIENT_CHECKS = r"""
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError,
                                    RevisionNotFoundError)

def raises(error, call):
    try:
        call()
    except error as err:
        return err
    raise AssertionError(f"{call} did not raise {error.__name__}")

api, anonymous = HfApi(), HfApi(token=False)
repo = dict(repo_id="org/d", repo_type="dataset")
url = api.create_repo(**repo)
assert (url.repo_id, url.repo_type) == ("org/d", "dataset"), url
assert api.create_repo(**repo, exist_ok=True) == url
assert raises(HfHubHTTPError, lambda: api.create_repo(**repo)).response.status_code == 409
api.create_repo("org/private", private=True)

add = lambda path, data: CommitOperationAdd(path, data)
first = api.create_commit(**repo, operations=[add("a/x.txt", b"one"), add("a/b/y.txt", b"yy")], commit_message="c1")
second = api.create_commit(**repo, operations=[add("a/x.txt", b"two")], commit_message="c2")
# Reading at a revision: the first commit still holds "one"; main moved on.
assert open(hf_hub_download(**repo, filename="a/x.txt", revision=first.oid)).read() == "one"
assert open(hf_hub_download(**repo, filename="a/x.txt")).read() == "two"
assert api.dataset_info("org/d").sha == second.oid

# Pull requests: numbered refs from main, main untouched.
pr1 = api.create_commit(**repo, operations=[add("a/x.txt", b"pr")], commit_message="p1", create_pr=True)
pr2 = api.create_commit(**repo, operations=[CommitOperationDelete("a/b/")], commit_message="p2", create_pr=True)
assert (pr1.pr_num, pr1.pr_revision, pr2.pr_num) == (1, "refs/pr/1", 2), (pr1, pr2)
assert open(hf_hub_download(**repo, filename="a/x.txt", revision="refs/pr/1")).read() == "pr"
assert api.list_repo_files(**repo, revision="refs/pr/2") == [".gitattributes", "a/x.txt"]
assert api.dataset_info("org/d").sha == second.oid

# Trees: direct children or everything; lastCommit is where each entry last changed.
tree = {e.path: e for e in api.list_repo_tree(**repo, path_in_repo="a", expand=True)}
assert sorted(tree) == ["a/b", "a/x.txt"] and tree["a/b"].last_commit.title == "c1"
assert tree["a/x.txt"].last_commit.title == "c2"
assert [e.path for e in api.list_repo_tree(**repo, recursive=True)] == [".gitattributes", "a", "a/b", "a/b/y.txt", "a/x.txt"]
# paths-info: a missing path is left out; 'yy' is 2 bytes
assert [(e.path, getattr(e, "size", None)) for e in api.get_paths_info(**repo, paths=["a/b/y.txt", "a/b", "nope"])] == [
    ("a/b/y.txt", 2), ("a/b", None)]

# A ranged read through HfFileSystem: bytes 1..2 of "two"
with HfFileSystem().open("datasets/org/d/a/x.txt", block_size=2) as f:
    f.seek(1)
    assert f.read(2) == b"wo"

# The errors huggingface_hub raises from X-Error-Code.
raises(EntryNotFoundError, lambda: hf_hub_download(**repo, filename="missing.txt"))
raises(RevisionNotFoundError, lambda: hf_hub_download(**repo, filename="a/x.txt", revision="nobranch"))
raises(RepositoryNotFoundError, lambda: api.model_info("org/missing"))
raises(RepositoryNotFoundError, lambda: anonymous.model_info("org/private"))
assert api.model_info("org/private").private is True
raises(EntryNotFoundError, lambda: api.create_commit(**repo, operations=[CommitOperationDelete("gone.txt")],
                                                     commit_message="d"))
bad_card = raises(ValueError, lambda: api.upload_file(path_or_fileobj=b"---\n- a list\n---\n", path_in_repo="README.md", **repo))
assert "not a mapping" in str(bad_card), bad_card
assert raises(HfHubHTTPError, lambda: anonymous.create_repo("org/nope")).response.status_code == 401
print("all checks passed")
"""


def test_huggingface_hub_sees_a_hub(local_hub, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_CHECKS],
        cwd=tmp_path,
        env=local_hub.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "all checks passed"


def _request(hub, path: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(hub.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _create_with_file(hub, repo: str, path: str, data: bytes) -> None:
    """A model repo holding one file, written with raw API calls."""
    auth = {"Authorization": f"Bearer {hub.token}"}
    ns, name = repo.split("/")
    status, _, _ = _request(
        hub,
        "/api/repos/create",
        "POST",
        json.dumps({"name": name, "organization": ns}).encode(),
        {**auth, "Content-Type": "application/json"},
    )
    assert status == 200
    lines = [
        {"key": "header", "value": {"summary": "add"}},
        {
            "key": "file",
            "value": {"path": path, "encoding": "base64", "content": __import__("base64").b64encode(data).decode()},
        },
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    status, _, _ = _request(hub, f"/api/models/{repo}/commit/main", "POST", body, auth)
    assert status == 200


def test_resolve_headers_head_and_ranges(local_hub):
    _create_with_file(local_hub, "org/raw", "w.bin", b"0123456789")
    commit = json.loads(_request(local_hub, "/api/models/org/raw")[2])["sha"]
    status, headers, body = _request(local_hub, "/org/raw/resolve/main/w.bin", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["ETag"] == f'"{git_blob_oid(b"0123456789")}"' and headers["Content-Length"] == "10"
    assert headers["X-Repo-Commit"] == commit
    # bytes=2-4 is "234"; bytes=-3 the last three, "789"
    assert _request(local_hub, "/org/raw/resolve/main/w.bin", headers={"Range": "bytes=2-4"})[::2] == (206, b"234")
    status, headers, body = _request(local_hub, "/org/raw/resolve/main/w.bin", headers={"Range": "bytes=-3"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 7-9/10", b"789")
    assert _request(local_hub, "/org/raw/resolve/main/w.bin", headers={"Range": "bytes=20-"})[0] == 416
    status, headers, _ = _request(local_hub, f"/org/raw/resolve/{commit}/nope.bin")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", commit)


@pytest.mark.parametrize(
    "headers, status",
    [({}, 401), ({"Authorization": "Bearer hf_wrong"}, 401)],
    ids=["no token", "wrong token"],
)
def test_writes_need_the_token(local_hub, headers, status):
    body = json.dumps({"name": "x", "organization": "org"}).encode()
    assert _request(local_hub, "/api/repos/create", "POST", body, headers)[0] == status
    assert ("model", "org/x") not in local_hub.repos


def test_unknown_routes_and_oversized_bodies(local_hub, monkeypatch):
    status, headers, _ = _request(local_hub, "/api/spaces/org/s/runtime")
    assert status == 404 and "X-Error-Code" not in headers
    monkeypatch.setattr("tests.local_hub.MAX_BODY_BYTES", 4)
    assert _request(local_hub, "/api/validate-yaml", "POST", b'{"content": ""}')[0] == 413
