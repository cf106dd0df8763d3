"""The export loads through `load_dataset` exactly as the builder builds it; push --dry-run prints the plan."""

from __future__ import annotations

import importlib
import subprocess
import sys

import datasets
import pyarrow.parquet as pq
import pytest
import yaml

from lovr_dataset import LoVR, card_yaml, export, upload_plan
from model_cards.dataset import dataset_card

export_module = importlib.import_module("lovr_dataset.export")  # `lovr_dataset.export` is also the function
lovr_module = importlib.import_module("lovr_dataset.lovr")


@pytest.fixture(scope="module")
def exported(official_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return export(official_root, root / "lovr", cache_dir=str(root / "hf-cache"), num_queries=3, query_seed=1)


def test_layout_and_card_yaml(exported):
    files = sorted(path.relative_to(exported).as_posix() for path in exported.rglob("*") if path.is_file())
    assert files == [
        ".lovr-export",
        "README.md",
        "clips/test-00000-of-00001.parquet",
        "clips/train-00000-of-00001.parquet",
        "themes/test-00000-of-00001.parquet",
        "videos/test-00000-of-00001.parquet",
    ]
    header = yaml.safe_load(exported.joinpath("README.md").read_text().split("---")[1])
    assert header["configs"][0] == {
        "config_name": "clips",
        "data_files": [
            {"split": "train", "path": "clips/train-*.parquet"},
            {"split": "test", "path": "clips/test-*.parquet"},
        ],
        "default": True,
    }
    assert [config["config_name"] for config in header["dataset_info"]] == ["clips", "themes", "videos"]
    schema = pq.read_schema(exported / "clips/test-00000-of-00001.parquet")
    assert "video" not in schema.names and not any("bytes" in str(field.type) for field in schema)


@pytest.mark.parametrize("config", ["clips", "videos", "themes"])
def test_load_dataset_of_the_export_equals_the_builder(exported, official_root, config, tmp_path):
    loaded = datasets.load_dataset(str(exported), config, cache_dir=str(tmp_path / "c1"))
    builder = LoVR(
        config_name=config, data_dir=official_root, cache_dir=str(tmp_path / "c2"), num_queries=3, query_seed=1
    )
    builder.download_and_prepare()
    built = builder.as_dataset()
    assert list(loaded) == list(built)
    for split in built:
        assert loaded[split].features == built[split].features
        assert loaded[split].to_list() == built[split].to_list()


def test_load_dataset_lovr_by_name_from_the_working_directory(exported, tmp_path, monkeypatch):
    monkeypatch.chdir(exported.parent)
    clips = datasets.load_dataset("lovr", cache_dir=str(tmp_path / "c"))  # the default config is clips
    assert clips["test"].num_rows == 3 and clips["train"].num_rows == 2  # 3 of 4 captioned clips drawn as queries
    named = datasets.load_dataset("lovr", "clips", cache_dir=str(tmp_path / "c"))
    assert named["test"]["clip_id"] == clips["test"]["clip_id"]


def test_card_yaml_is_reusable(exported, official_root, tmp_path):
    builder = LoVR(config_name="videos", data_dir=official_root, cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    header = card_yaml({"videos": builder.info})
    assert header["configs"] == [
        {"config_name": "videos", "data_files": [{"split": "test", "path": "videos/test-*.parquet"}]}
    ]
    assert header["license"] == "cc-by-nc-sa-4.0"


def test_push_dry_run_prints_the_plan_without_network(exported, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_printed")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lovr_dataset",
            "push",
            str(exported),
            "--repo-id",
            "org/lovr",
            "--private",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    plan = upload_plan(exported)
    assert result.stdout.splitlines()[:3] == ["repo_id: org/lovr", "repo_type: dataset", "private: True"]
    for path, size in plan:
        assert f"{size:>12}  {path}" in result.stdout
    assert "hf_secret" not in result.stdout + result.stderr


def test_export_command_line(official_root, tmp_path):
    out = tmp_path / "lovr"
    subprocess.run(
        [sys.executable, "-m", "lovr_dataset", "export", str(official_root), str(out), "--num-queries", "2"],
        check=True,
        capture_output=True,
        env={**__import__("os").environ, "HF_DATASETS_CACHE": str(tmp_path / "c")},
    )
    assert pq.read_metadata(out / "clips/test-00000-of-00001.parquet").num_rows == 2


def test_the_card_written_in_one_pass_equals_the_card_read_back(exported):
    # The export gathers the statistics while writing; rendered again from the Parquet files, the card is the same.
    readme = (exported / "README.md").read_text(encoding="utf-8")
    assert "| clips | 5 |" in readme and "| long videos | 2 |" in readme
    assert str(dataset_card(exported)) == readme


def test_the_export_writes_what_download_and_prepare_writes(exported, official_root, tmp_path):
    # datasets' own Parquet writer, as the builder drives it: same rows, schema metadata and row groups.
    builder = LoVR(
        config_name="clips", data_dir=official_root, cache_dir=str(tmp_path / "c"), num_queries=3, query_seed=1
    )
    builder.download_and_prepare(output_dir=str(tmp_path / "built"), file_format="parquet")
    for split in ("train", "test"):
        (built,) = (tmp_path / "built").glob(f"lovr-{split}*.parquet")
        ours = exported / f"clips/{split}-00000-of-00001.parquet"
        assert pq.read_table(ours).equals(pq.read_table(built), check_metadata=True)
        assert pq.read_metadata(ours).metadata == pq.read_metadata(built).metadata
    assert (exported / "README.md").read_text().count(f"num_bytes: {builder.info.splits['train'].num_bytes}") == 1


def test_a_split_cut_into_parts_holds_the_same_rows_and_card(exported, official_root, tmp_path, monkeypatch):
    # Parts of at most 2 rows, written at once: the clips train split's 2 rows stay one file, the 3 query rows
    # become 2 files (numbered across the parts); the rows, their order, the counts and the card's statistics are
    # those of the export in one part each.
    monkeypatch.setattr(export_module, "PART_ROWS", 2)
    parted = export(official_root, tmp_path / "lovr", num_queries=3, query_seed=1)
    assert sorted(path.name for path in (parted / "clips").glob("*.parquet")) == [
        "test-00000-of-00002.parquet",
        "test-00001-of-00002.parquet",
        "train-00000-of-00001.parquet",
    ]
    assert [pq.read_metadata(path).num_rows for path in sorted((parted / "clips").glob("test-*"))] == [2, 1]
    for config in ("clips", "videos", "themes"):
        ours = datasets.load_dataset(str(parted), config, cache_dir=str(tmp_path / f"p-{config}"))
        whole = datasets.load_dataset(str(exported), config, cache_dir=str(tmp_path / f"w-{config}"))
        assert {split: ours[split].to_list() for split in ours} == {split: whole[split].to_list() for split in whole}
    infos = {name: yaml.safe_load(p.read_text().split("---")[1])["dataset_info"] for name, p in [
        ("parted", parted / "README.md"), ("whole", exported / "README.md")]}  # fmt: skip
    for config_parted, config_whole in zip(infos["parted"], infos["whole"], strict=True):
        splits = {split["name"]: split for split in config_parted["splits"]}
        for split in config_whole["splits"]:
            # num_bytes, Arrow's buffer sizes, moves by a few bytes with the tables' cut (validity bitmaps).
            assert splits[split["name"]]["num_examples"] == split["num_examples"]
    body = (parted / "README.md").read_text().split("---", 2)[2]
    assert body == (exported / "README.md").read_text().split("---", 2)[2]


def test_parts_of_many_tables_and_files_hold_the_same_rows(exported, official_root, tmp_path, monkeypatch):
    # Parts of 2 rows, tables of 1 row and a new file after every table: each part hands its writer several tables in
    # turn with the others', each part writes several files, and the files are numbered across the parts.
    monkeypatch.setattr(export_module, "PART_ROWS", 2)
    monkeypatch.setattr(lovr_module, "TABLE_ROWS", 1)
    monkeypatch.setattr(export_module, "MAX_SHARD_BYTES", 0)
    parted = export(official_root, tmp_path / "lovr", num_queries=3, query_seed=1)
    names = sorted(path.name for path in (parted / "clips").glob("test-*.parquet"))
    assert names == [f"test-{index:05d}-of-00003.parquet" for index in range(3)]
    assert [pq.read_metadata(parted / "clips" / name).num_rows for name in names] == [1, 1, 1]
    for config in ("clips", "videos", "themes"):
        ours = datasets.load_dataset(str(parted), config, cache_dir=str(tmp_path / f"p-{config}"))
        whole = datasets.load_dataset(str(exported), config, cache_dir=str(tmp_path / f"w-{config}"))
        assert {split: ours[split].to_list() for split in ours} == {split: whole[split].to_list() for split in whole}


def test_a_part_whose_writer_fails_fails_the_export_and_leaves_nothing(official_root, tmp_path, monkeypatch):
    import threading

    write = export_module._Shards.write

    def failing(self, table):
        if self.part == "00001":
            raise OSError(28, "No space left on device")
        write(self, table)

    monkeypatch.setattr(export_module, "PART_ROWS", 2)
    monkeypatch.setattr(export_module._Shards, "write", failing)
    with pytest.raises(OSError, match="No space left on device"):
        export(official_root, tmp_path / "lovr", num_queries=3, query_seed=1)
    assert not any(tmp_path.iterdir())  # neither the export nor its staging folder
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("lovr-export")]


def test_export_refuses_an_unknown_option_before_writing(official_root, tmp_path):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_query'\]; expected some of \['num_queries'"):
        export(official_root, tmp_path / "lovr", num_query=3)
    assert not any(tmp_path.iterdir())
