"""Upload an exported LoVR folder to the Hugging Face Hub as a dataset repo, in one commit.

    python -m lovr_dataset push OUT_DIR --repo_id ORG/NAME [--private] [--dry_run]

Hidden files (the export's `.lovr-export` marker, any `.name` file or folder) are local state and never go.
The token comes from huggingface_hub's usual places (`HF_TOKEN`, `hf auth login`) and is never printed.
`--dry_run` prints what would be created and uploaded, touching no network.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import filter_repo_objects

REPO_TYPE = "dataset"
# upload_folder's own matcher: `*` crosses `/`, so these catch a dot-name at the top and at any depth.
HIDDEN_PATTERNS = [".*", "*/.*"]


def upload_plan(out_dir: str | os.PathLike) -> list[tuple[str, int]]:
    """(path in the repo, size in bytes) of every file the upload would send, in path order."""
    out_dir = Path(out_dir)
    if not (out_dir / "README.md").is_file():
        raise ValueError(f"out_dir={str(out_dir)!r} holds no README.md; expected a folder written by `export`")
    sizes = {
        path.relative_to(out_dir).as_posix(): path.stat().st_size for path in out_dir.rglob("*") if path.is_file()
    }
    return sorted((path, sizes[path]) for path in filter_repo_objects(sizes, ignore_patterns=HIDDEN_PATTERNS))


def describe(out_dir, repo_id: str, private: bool) -> str:
    files = upload_plan(out_dir)
    lines = [
        f"repo_id: {repo_id}",
        f"repo_type: {REPO_TYPE}",
        f"private: {private}",
        f"files: {len(files)} ({sum(size for _, size in files)} bytes, one commit)",
    ]
    lines += [f"  {size:>12}  {path}" for path, size in files]
    return "\n".join(lines)


def push(
    out_dir, repo_id: str, *, private: bool = False, dry_run: bool = False, commit_message: str = "Upload LoVR"
) -> str:
    """Create `repo_id` if needed and upload `out_dir` in one commit; return the plan (dry run) or the commit URL."""
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id={repo_id!r}, expected 'ORG/NAME'")
    plan = describe(out_dir, repo_id, private)
    if dry_run:
        return plan
    api = HfApi()
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    # A copy: upload_folder appends its default patterns to the list it is given.
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type=REPO_TYPE,
        folder_path=str(out_dir),
        commit_message=commit_message,
        ignore_patterns=list(HIDDEN_PATTERNS),
    )
    return str(commit)
