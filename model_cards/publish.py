"""Publish LoVR to the Hub: the dataset repo, the metric Space and model-card pull requests, with `HfApi`.

    python -m model_cards publish --org ORG --dataset lovr --workdir runs/demo --metric --results runs/eval/clip
    python -m model_cards publish --org ORG --dataset lovr --metric --results runs/eval/clip --dry-run --out staged

Every upload is first staged as the exact folder that goes to the Hub (copies: editing a staged file never edits
its source), then each operation is printed and, unless `--dry-run`, executed. A dry run touches no network and
keeps the staged folders under `--out`; a publish that fails leaves `--out` as it was (absent if it was absent). A
model-card pull request merges the results into the model's current README.md (the results card alone when the Hub
has none; a README.md that cannot be read stops the command rather than be replaced). The token comes from
huggingface_hub's standard mechanisms (`hf auth login`, `HF_TOKEN`) and is never printed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import RemoteEntryNotFoundError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from model_cards.dataset import dataset_card
from model_cards.metric import MODULE_NAME, default_metric_dir, metric_space_files
from model_cards.model import load_results, merge_into_model_card, results_card

# Index data only: the videos' licence forbids re-hosting them, so anything else in an export is left behind.
DATASET_SUFFIXES = {".parquet", ".json", ".jsonl", ".csv", ".txt"}
_STAGING_MARKER = ".lovr-publish-staging"


@dataclass
class PublishConfig:
    """What `python -m model_cards publish` publishes, and where."""

    org: str = field(metadata={"help": "The Hub user or organisation that owns the dataset repo and the Space."})
    dataset: str | None = field(default=None, metadata={"help": "An export folder (`python -m lovr_dataset export`)."})
    workdir: str | None = field(default=None, metadata={"help": "The run folder the dataset was built from."})
    dataset_name: str = field(default="LoVR", metadata={"help": "Name of the dataset repo under --org."})
    metric: bool = field(default=False, metadata={"help": "Publish the lovr_retrieval metric Space."})
    metric_dir: str | None = field(default=None, metadata={"help": "The metric folder (default: the package's)."})
    results: list[str] = field(default_factory=list, metadata={"help": "Evaluation folders holding results.json."})
    allow_random_weights: bool = field(
        default=False, metadata={"help": "Render cards for random-weight results, labelled meaningless."}
    )
    allow_incomplete: bool = field(
        default=False,
        metadata={"help": "Render cards for results whose galleries lost items (failed videos), marked incomplete."},
    )
    private: bool = field(default=False, metadata={"help": "Create the dataset repo and Space as private."})
    dry_run: bool = field(default=False, metadata={"help": "Stage and print every operation; no network at all."})
    out: str | None = field(default=None, metadata={"help": "Where staged folders go (kept; default a temp dir)."})

    def __post_init__(self):
        try:
            validate_repo_id(f"{self.org}/{self.dataset_name}")
        except HFValidationError as err:
            raise ValueError(
                f"--org {self.org!r} / --dataset_name {self.dataset_name!r} make no valid repo id: {err}"
            ) from err
        if not (self.dataset or self.metric or self.results):
            raise ValueError("nothing to publish: pass --dataset DIR, --metric and/or --results DIR")

    @property
    def dataset_repo_id(self) -> str:
        return f"{self.org}/{self.dataset_name}"


@dataclass
class Operation:
    """One Hub call: `create_repo`, `upload_folder` or `create_commit` (a pull request) on one repo."""

    op: str
    repo_id: str
    repo_type: str
    folder: Path | None = None
    files: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        options = "".join(f" {k}={v!r}" for k, v in self.options.items())
        line = f"{self.op} {self.repo_type} {self.repo_id}{options}"
        if self.folder is not None:
            line += f"\n    from {self.folder}: " + ", ".join(self.files)
        return line


def _is_hub_model_id(model: str) -> bool:
    """Whether the evaluated model names a Hub repo (a local folder cannot receive a pull request)."""
    if os.path.exists(model):
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return "/" in model


def _copy(src: Path, dst: Path) -> None:
    """A copy, never a hard link: a staged file edited in place must not edit the toolkit or the export."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@contextmanager
def _staging_folder(out: Path) -> Iterator[None]:
    """Make `out` an empty staging folder for the block, refusing to wipe a folder this command did not create; when
    the block fails, `out` is put back as it was (an earlier staging restored, or no folder at all)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / _STAGING_MARKER).exists()):
        raise ValueError(f"--out {str(out)!r} exists and was not made by this command; pick another folder")
    kept = None
    if out.exists():  # set aside beside it (one file system: a rename), until the block has succeeded
        kept = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent)) / out.name
        out.rename(kept)
    try:
        out.mkdir(parents=True)
        (out / _STAGING_MARKER).touch()
        yield
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if kept is not None:
            kept.rename(out)
        raise
    finally:
        if kept is not None:
            shutil.rmtree(kept.parent, ignore_errors=True)


def stage_dataset(config: PublishConfig, out: Path) -> list[Operation]:
    """Stage the export's index files with the rendered card as README.md; videos never go."""
    export = Path(config.dataset)
    card = dataset_card(export, config.workdir, repo_id=config.dataset_repo_id)
    folder = out / "dataset"
    for path in sorted(export.rglob("*")):
        rel = path.relative_to(export)
        if path.is_file() and path.suffix in DATASET_SUFFIXES and not rel.parts[0].startswith("."):
            _copy(path, folder / rel)
    card.save(folder / "README.md")
    repo = dict(repo_id=config.dataset_repo_id, repo_type="dataset")
    return [
        Operation("create_repo", **repo, options={"exist_ok": True, "private": config.private}),
        Operation("upload_folder", **repo, folder=folder, files=_files(folder)),
    ]


def stage_metric(config: PublishConfig, out: Path) -> list[Operation]:
    """Stage the evaluate module folder (card, module, app.py, requirements.txt) as a gradio Space."""
    metric_dir = Path(config.metric_dir) if config.metric_dir else default_metric_dir()
    folder = out / "space"
    for rel in metric_space_files(metric_dir):
        if rel == Path("README.md"):  # its usage names the Space: this organisation's, not the placeholder
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            text = (metric_dir / rel).read_text(encoding="utf-8")
            (folder / rel).write_text(text.replace(f"ORG/{MODULE_NAME}", f"{config.org}/{MODULE_NAME}"), "utf-8")
        else:
            _copy(metric_dir / rel, folder / rel)
    repo = dict(repo_id=f"{config.org}/{MODULE_NAME}", repo_type="space")
    return [
        Operation("create_repo", **repo, options={"exist_ok": True, "private": config.private, "space_sdk": "gradio"}),
        Operation("upload_folder", **repo, folder=folder, files=_files(folder)),
    ]


def stage_model_cards(config: PublishConfig, out: Path) -> tuple[list[Operation], list[str]]:
    """Stage one results card per evaluation; models that are local folders get a card but no pull request."""
    operations, skipped = [], []
    for results_dir in config.results:
        results = load_results(results_dir)
        card = results_card(
            results,
            config.dataset_repo_id,
            allow_random_weights=config.allow_random_weights,
            allow_incomplete=config.allow_incomplete,
        )
        folder = out / "model-cards" / results.model.strip("/").replace("/", "--")
        card.save(folder / "README.md")
        if not _is_hub_model_id(results.model):
            skipped.append(f"{folder / 'README.md'}: model {results.model!r} is not a Hub repo id, so no pull request")
            continue
        operations.append(
            Operation(
                "create_commit",
                repo_id=results.model,
                repo_type="model",
                folder=folder,
                files=["README.md"],
                options={"create_pr": True, "merge": "LoVR results into the model's current README.md"},
            )
        )
    return operations, skipped


def stage(config: PublishConfig, out: Path) -> tuple[list[Operation], list[str]]:
    """Stage every folder under `out` (already an empty staging folder) and return the operations that would
    publish them."""
    operations, skipped = [], []
    if config.dataset:
        operations += stage_dataset(config, out)
    if config.metric:
        operations += stage_metric(config, out)
    if config.results:
        model_operations, skipped = stage_model_cards(config, out)
        operations += model_operations
    return operations, skipped


def execute(operations: list[Operation], api: HfApi) -> None:
    """Run the staged operations with `api` (an `HfApi`)."""
    for operation in operations:
        repo = dict(repo_id=operation.repo_id, repo_type=operation.repo_type)
        if operation.op == "create_repo":
            api.create_repo(**repo, **operation.options)
        elif operation.op == "upload_folder":
            api.upload_folder(**repo, folder_path=str(operation.folder), commit_message="Update from the LoVR toolkit")
        elif operation.op == "create_commit":
            section = ModelCard.load(operation.folder / "README.md")
            try:
                existing = ModelCard.load(operation.repo_id, repo_type="model", token=api.token)
                card = merge_into_model_card(existing, section)
            except RemoteEntryNotFoundError:  # the Hub said there is none; a failed read raises instead
                card = section
            api.create_commit(
                **repo,
                operations=[CommitOperationAdd("README.md", str(card).encode("utf-8"))],
                commit_message="Add LoVR long-video retrieval results",
                create_pr=True,
            )
        else:
            raise ValueError(f"unknown operation {operation.op!r}")


def publish(config: PublishConfig) -> list[Operation]:
    """Stage, print and (unless `config.dry_run`) execute every operation; returns them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(config.out) if config.out else Path(tmp) / "staged"
        with _staging_folder(out):
            operations, skipped = stage(config, out)
            prefix = "[dry-run] " if config.dry_run else ""
            for operation in operations:
                print(prefix + operation.describe())
            for line in skipped:
                print(f"{prefix}skipped: {line}")
            if config.dry_run:
                print(f"Staged folders are in {out}; nothing was sent to the Hub.")
            else:
                execute(operations, HfApi())
    return operations
