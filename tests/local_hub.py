"""A local Hugging Face Hub for tests: the subset of the Hub's HTTP API that `huggingface_hub`, `datasets` and
`evaluate` call to create repos, commit to them and read them back, served on 127.0.0.1.

    with LocalHub(clients_dir=tmp_path) as hub:
        subprocess.run([sys.executable, "-m", "lovr_dataset", "push", ...], env=hub.client_env())
        hub.files("dataset", "ORG/LoVR")  # {path: bytes} at main

Routes, as huggingface_hub 2.4.0 (`hf_api.py`, `_commit_api.py`, `_upload_pipeline.py`, `file_download.py`,
`hf_file_system.py`), datasets 5.2.0 and evaluate 0.4.6 call them (`{T}` is `models`, `datasets` or `spaces`):

    POST /api/repos/create                      {name, organization, type, visibility, sdk} -> {url}; 409 if it exists
    POST /api/validate-yaml                     {content, repoType} -> {errors, warnings}; 400 on bad YAML
    GET  /api/{T}/{repo}[/revision/{rev}]       repo info: sha, siblings (with size and blobId when ?blobs=true)
    GET  /api/{T}/{repo}/tree/{rev}[/{path}]    ?recursive=true&expand=true (lastCommit of each entry)
    POST /api/{T}/{repo}/paths-info/{rev}       form: paths=...&expand=...
    POST /api/{T}/{repo}/preupload/{rev}        every file "regular" (no LFS or Xet round trip), with its remote oid
    POST /api/{T}/{repo}/commit/{rev}           NDJSON header / file / deletedFile / deletedFolder; ?create_pr=1
                                                opens pull request N on ref refs/pr/N
    GET, HEAD /[datasets/|spaces/]{repo}/resolve/{rev}/{path}
                                                the bytes, with X-Repo-Commit, ETag (git blob sha1), Content-Length;
                                                Range requests get 206

A revision is a branch (`main`), a pull request ref (`refs/pr/N`) or a full commit sha; each commit is a snapshot of
every file. Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) so that
`hf_raise_for_status` raises the matching `huggingface_hub.errors` class; `faults` makes chosen paths fail. Writes need `Authorization: Bearer
<token>` (401 otherwise); reads of public repos need none. Any other route is a plain 404, and every request is
recorded in `requests`. The server is bounded: request bodies above `MAX_BODY_BYTES` get 413, a silent client
times out after `SOCKET_TIMEOUT_S`, handler threads are daemons, and `stop()` (the end of the `with`) shuts it
down. A handler crash answers 500 and is kept in `errors`; the test fixture fails on any.

huggingface_hub and evaluate read `HF_ENDPOINT` when imported, so clients run in subprocesses started with
`client_env()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
# What the Hub's first commit holds (its real .gitattributes lists many more LFS patterns).
INITIAL_FILES = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
MAX_BODY_BYTES = 64 * 1024 * 1024
SOCKET_TIMEOUT_S = 30
# The front matter as huggingface_hub's repocard.py finds it.
YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
# Client environment variables that could point a subprocess at the real Hub, a real token or the test run's caches.
_CLIENT_VAR_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS_OFFLINE")


def git_blob_oid(data: bytes) -> str:
    """The git sha1 of a file's bytes: the Hub's `oid` and `ETag` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    """An HTTP error answer, with the Hub's `X-Error-Code` when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/N" -> commit oid
    num_discussions: int = 0

    def resolve(self, revision: str) -> Commit:
        oid = self.refs.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


class LocalHub:
    """The server and its repos; `url` is the endpoint, `token` the one write token it accepts."""

    def __init__(self, clients_dir: str | os.PathLike, user: str = "local-user"):
        self.token = f"hf_local_{secrets.token_hex(16)}"
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        # URL path -> HTTP status answered instead, for the tests of a Hub that fails.
        self.faults: dict[str, int] = {}
        self._clients_dir = Path(clients_dir)
        self._lock = threading.Lock()
        self._commit_serial = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=SOCKET_TIMEOUT_S)

    def client_env(self, token: bool = True) -> dict[str, str]:
        """`os.environ` for a Hub client subprocess: this endpoint, the token in `HF_TOKEN` (unless `token=False`),
        fresh `HF_HOME` / `HF_HUB_CACHE` / `HF_DATASETS_CACHE`, and no offline switch or other `HF_*` setting."""
        self._clients_dir.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="client-", dir=self._clients_dir))
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_VAR_PREFIXES)}
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(home),
            HF_HUB_CACHE=str(home / "hub"),
            HF_DATASETS_CACHE=str(home / "datasets"),
        )
        if token:
            env["HF_TOKEN"] = self.token
        return env

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file of a repo at `revision`, as the server stores it."""
        with self._lock:
            return dict(self.repos[repo_type, repo_id].resolve(revision).files)

    # ------------------------------------------------------------------ routing

    def dispatch(self, method: str, segments: list[str], query: dict, headers, body: bytes) -> Response:
        fault = self.faults.get("/" + "/".join(segments))
        if fault is not None:
            raise HubError(fault, f"fault injected by the test: {fault}")
        authorization = headers.get("Authorization")
        authorized = authorization == f"Bearer {self.token}"
        if authorization is not None and not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        with self._lock:
            match method, segments:
                case "POST", ["api", "repos", "create"]:
                    _require(authorized)
                    return self._create_repo(_load_json(body))
                case "POST", ["api", "validate-yaml"]:
                    return _validate_yaml(_load_json(body).get("content", ""))
                case "GET", ["api", plural, ns, name]:
                    return self._info(self._repo(plural, ns, name, authorized), "main", query)
                case "GET", ["api", plural, ns, name, "revision", revision]:
                    return self._info(self._repo(plural, ns, name, authorized), revision, query)
                case "GET", ["api", plural, ns, name, "tree", revision, *path]:
                    repo = self._repo(plural, ns, name, authorized)
                    return self._tree(repo, revision, "/".join(p for p in path if p), query)
                case "POST", ["api", plural, ns, name, "paths-info", revision]:
                    return self._paths_info(self._repo(plural, ns, name, authorized), revision, body)
                case "POST", ["api", plural, ns, name, "preupload", revision]:
                    _require(authorized)
                    repo = self._repo(plural, ns, name, authorized)
                    return self._preupload(repo, revision, _load_json(body))
                case "POST", ["api", plural, ns, name, "commit", revision]:
                    _require(authorized)
                    repo = self._repo(plural, ns, name, authorized)
                    return self._commit(repo, revision, body, create_pr=query.get("create_pr") == ["1"])
                case (("GET" | "HEAD"), [("datasets" | "spaces") as plural, ns, name, "resolve", revision, *path]):
                    repo = self._repo(plural, ns, name, authorized)
                    return self._resolve(repo, revision, "/".join(path), headers.get("Range"))
                case (("GET" | "HEAD"), [ns, name, "resolve", revision, *path]):
                    return self._resolve(
                        self._repo("models", ns, name, authorized), revision, "/".join(path), headers.get("Range")
                    )
        raise HubError(404, f"no route for {method} /{'/'.join(segments)} on this local hub")

    def _repo(self, plural: str, ns: str, name: str, authorized: bool) -> Repo:
        repo = self.repos.get((REPO_TYPES.get(plural, ""), f"{ns}/{name}"))
        if repo is None or (repo.private and not authorized):
            # The Hub answers a private repo's anonymous reader as if the repo did not exist.
            raise HubError(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def _new_commit(self, repo: Repo, parent: Commit | None, title: str, files: dict[str, bytes]) -> Commit:
        self._commit_serial += 1  # two identical commits on one parent still get distinct shas, as dates do in git
        tree = "".join(f"{path} {git_blob_oid(data)}\n" for path, data in sorted(files.items()))
        seed = f"{repo.repo_type}/{repo.repo_id}\n{parent and parent.oid}\n{tree}{title}\n{self._commit_serial}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent and parent.oid, title, _now(), files)
        repo.commits[commit.oid] = commit
        return commit

    # ------------------------------------------------------------------ writes

    def _create_repo(self, payload: dict) -> Response:
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"type={repo_type!r}, expected one of {sorted(URL_PREFIXES)}")
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise HubError(400, f"a Space needs sdk in {SPACE_SDKS}, got {sdk!r}")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        if (repo_type, repo_id) in self.repos:
            url = self._repo_url(self.repos[repo_type, repo_id])
            return _json({"error": f"You already created this {repo_type} repo", "url": url}, 409)
        repo = Repo(repo_type, repo_id, payload.get("visibility") == "private", sdk, _now())
        repo.refs["main"] = self._new_commit(repo, None, "initial commit", dict(INITIAL_FILES)).oid
        self.repos[repo_type, repo_id] = repo
        return _json({"url": self._repo_url(repo), "name": repo_id})

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> Response:
        files = repo.resolve(revision).files
        answers = []
        for item in payload.get("files", []):
            remote = files.get(item["path"])
            answers.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": None if remote is None else git_blob_oid(remote),
                }
            )
        return _json({"files": answers})

    def _commit(self, repo: Repo, revision: str, body: bytes, create_pr: bool) -> Response:
        if revision not in repo.refs:
            raise HubError(404, f"Invalid rev id: {revision} is not a branch", "RevisionNotFound")
        lines = [_load_json(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header" or not lines[0]["value"].get("summary"):
            raise HubError(400, "the first NDJSON line must be the header, with a non-empty summary")
        header = lines[0]["value"]
        base = repo.resolve(revision)
        parent_commit = header.get("parentCommit")
        if parent_commit is not None:
            if not (create_pr or base.oid.startswith(parent_commit)):
                raise HubError(412, f"parentCommit {parent_commit} is not the head of {revision} ({base.oid})")
            base = next((c for oid, c in repo.commits.items() if oid.startswith(parent_commit)), None)
            if base is None:
                raise HubError(404, f"parentCommit {parent_commit} does not exist", "RevisionNotFound")
        files = dict(base.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:  # lfsFile never comes: preupload answers "regular" for every file
                raise HubError(400, f"unsupported commit operation {key!r} on this local hub")
        commit = self._new_commit(repo, base, header["summary"], files)
        answer = {"success": True, "commitOid": commit.oid, "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}"}
        if create_pr:
            repo.num_discussions += 1
            repo.refs[f"refs/pr/{repo.num_discussions}"] = commit.oid
            answer["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{repo.num_discussions}"
        else:
            repo.refs[revision] = commit.oid
        return _json(answer)

    # ------------------------------------------------------------------ reads

    def _info(self, repo: Repo, revision: str, query: dict) -> Response:
        commit = repo.resolve(revision)
        blobs = query.get("blobs") == ["true"]
        siblings = [
            {"rfilename": path, **({"size": len(data), "blobId": git_blob_oid(data)} if blobs else {})}
            for path, data in sorted(commit.files.items())
        ]
        info = {
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "createdAt": repo.created,
            "lastModified": commit.date,
            "tags": [],
            "siblings": siblings,
        }
        if repo.sdk is not None:
            info["sdk"] = repo.sdk
        return _json(info)

    def _tree(self, repo: Repo, revision: str, path: str, query: dict) -> Response:
        commit = repo.resolve(revision)
        prefix = f"{path}/" if path else ""
        below = [p for p in commit.files if p.startswith(prefix)]
        if not below:
            raise HubError(
                404, f"{path!r} is not a folder at {revision}", "EntryNotFound", {"X-Repo-Commit": commit.oid}
            )
        recursive = query.get("recursive") == ["true"]
        entries = set()
        for file_path in below:
            parts = file_path[len(prefix) :].split("/")
            if recursive:
                entries.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            else:
                entries.add(prefix + parts[0])
        expand = query.get("expand") == ["true"]
        return _json([self._entry(repo, commit, p, expand) for p in sorted(entries)])

    def _paths_info(self, repo: Repo, revision: str, body: bytes) -> Response:
        commit = repo.resolve(revision)
        form = parse_qs(body.decode())
        expand = form.get("expand") == ["true"]
        found = [p for p in form.get("paths", []) if p in commit.files or _subtree(commit.files, p)]
        return _json([self._entry(repo, commit, p, expand) for p in found])

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
        """A tree / paths-info entry: a file (`oid` its git blob sha1) or a directory."""
        if path in commit.files:
            data = commit.files[path]
            entry = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        else:
            listing = "".join(f"{p} {git_blob_oid(d)}\n" for p, d in sorted(_subtree(commit.files, path).items()))
            entry = {"type": "directory", "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0, "path": path}
        if expand:
            last = _last_commit(repo, commit, path)
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return entry

    def _resolve(self, repo: Repo, revision: str, path: str, range_header: str | None) -> Response:
        commit = repo.resolve(revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = commit.files[path]
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_oid(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if range_header is None:
            return Response(200, data, headers)
        start, end = _byte_range(range_header, len(data))
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(206, data[start : end + 1], headers)


def _load_json(body: bytes) -> dict:
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise HubError(400, f"the request body is not JSON: {err}") from err


def _require(authorized: bool) -> None:
    """Writes need the token: an anonymous one is refused as the Hub refuses it."""
    if not authorized:
        raise HubError(401, "Invalid username or password.")


def _subtree(files: dict[str, bytes], folder: str) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if p.startswith(folder.rstrip("/") + "/")}


def _last_commit(repo: Repo, head: Commit, path: str) -> Commit:
    """The oldest commit, walking back from `head`, since which `path` (a file or a folder) is unchanged."""

    def state(commit: Commit):
        return commit.files.get(path, _subtree(commit.files, path))

    commit, current = head, state(head)
    while commit.parent is not None and state(repo.commits[commit.parent]) == current:
        commit = repo.commits[commit.parent]
    return commit


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """First and last byte (inclusive) of a single-range `Range: bytes=...` header."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        raise HubError(
            416, f"Range {header!r} is not one 'bytes=START-END' range", headers={"Content-Range": f"bytes */{size}"}
        )
    first, last = match.groups()
    start = int(first) if first else max(size - int(last), 0)
    end = min(int(last), size - 1) if first and last else size - 1
    if start > end:
        raise HubError(
            416, f"Range {header!r} is outside the {size} bytes", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, end


def _validate_yaml(content: str) -> Response:
    """The Hub's README check, at the YAML level: the front matter must parse to a mapping."""
    match = YAML_BLOCK.search(content)
    try:
        metadata = yaml.safe_load(match.group(2)) if match else {}
    except yaml.YAMLError as err:
        return _json({"errors": [{"message": f"Invalid YAML in README.md front matter: {err}"}]}, 400)
    if metadata is not None and not isinstance(metadata, dict):
        return _json(
            {"errors": [{"message": f"README.md front matter is a {type(metadata).__name__}, not a mapping"}]}, 400
        )
    return _json({"errors": [], "warnings": []})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, *args) -> None:  # requests are kept in LocalHub.requests instead
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        hub: LocalHub = self.server.hub
        url = urlsplit(self.path)
        # Split before unquoting: a revision such as refs/pr/1 travels as one quoted segment.
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        try:
            response = hub.dispatch(method, segments, parse_qs(url.query), self.headers, self._read_body())
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            response = _json({"error": err.message}, err.status, headers)
        except Exception:
            hub.errors.append(f"{method} {self.path}\n{traceback.format_exc()}")
            response = _json({"error": "local hub crashed; see LocalHub.errors"}, 500)
        hub.requests.append((method, url.path, response.status))
        self.send_response(response.status)
        for name, value in {**response.headers, "Content-Length": str(len(response.body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.close_connection = True
            raise HubError(411, "this local hub reads bodies with a Content-Length only")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would be parsed as the next request
            raise HubError(413, f"request body of {length} bytes exceeds this local hub's {MAX_BODY_BYTES}")
        return self.rfile.read(length)
