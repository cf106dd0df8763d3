"""The registry: every model has a route or a reason, routes name families that exist, `python -m lovr_metric models`
prints them without torch or transformers, and the adapters fail clearly without their authors' packages."""

import subprocess
import sys

import pytest

from lovr_common.encoders import FAMILIES
from lovr_metric.evaluation.registry import (
    BASELINES,
    ROUTE_FAMILIES,
    VISUAL_INPUTS,
    Baseline,
    Route,
    check_servable,
    get_baseline,
)
from lovr_standins.tiny_models import available

# Families that do not go through lovr_common.encoders.load_encoder's FAMILIES: a server and an adapter file.
OUTSIDE_FAMILIES = {"endpoint", "adapter"}


def test_every_entry_has_a_route_or_a_reason_and_not_both():
    for baseline in BASELINES:
        assert (baseline.route is None) != (baseline.unsupported_reason is None), baseline.name
        if baseline.route:
            assert baseline.route.source, f"{baseline.name}: where its route was checked"
    with pytest.raises(ValueError, match="m: expected a route or an unsupported_reason"):
        Baseline("m", "org/m")


def test_routes_name_families_visual_inputs_and_standins_that_exist():
    for baseline in BASELINES:
        route = baseline.route
        if route is None:
            continue
        assert route.family in ROUTE_FAMILIES and route.visual_input in VISUAL_INPUTS, baseline.name
        if route.family in OUTSIDE_FAMILIES:
            continue
        if route.family not in FAMILIES:  # the vlm-embedder family lands with lovr_common/vlm_encoder.py
            assert route.family == "vlm-embedder", f"{baseline.name}: family {route.family!r} does not exist"
            continue
        assert route.standin is None or route.standin in available(), baseline.name
    assert set(FAMILIES) <= set(ROUTE_FAMILIES)  # every family of the encoders can be named by a route


def test_the_paper_baselines_and_the_leaders_are_registered():
    for name in [
        "clip-vit-b-32",
        "siglip-base-p16-224",
        "siglip2-base-p16-224",
        "eva02-clip-b16",
        "metaclip-h14-fullcc2.5b",
        "pe-core-b16-224",
        "videoclip-xl",
        "videoclip-xl-v2",
        "languagebind-video",
        "gme-qwen2-vl-7b",
        "mm-embed",
        "blip",
        "jina-clip-v2",
        "gme-qwen2-vl-2b",
        "qwen3-vl-embedding-2b",
        "qwen3-vl-embedding-8b",
    ]:
        assert get_baseline(name) is not None, name
    # A repo served two ways finds its first (local) entry.
    assert get_baseline("Qwen/Qwen3-VL-Embedding-8B").route.family == "sentence-transformers"
    assert get_baseline("qwen3-vl-embedding-8b-vllm").route.family == "endpoint"


def test_adapters_are_refused_by_the_runner_with_the_file_to_copy():
    with pytest.raises(ValueError, match=r"not supported: ships as a custom package .*adapters/languagebind.py"):
        check_servable(get_baseline("languagebind-video"), trust_remote_code=True)
    with pytest.raises(ValueError, match="pass --trust_remote_code"):
        check_servable(get_baseline("jina-clip-v2"), trust_remote_code=False)


def test_status_follows_route_torchvision_and_cache():
    assert get_baseline("pe-core-b16-224").status().startswith("unsupported: a perception_models")
    assert get_baseline("videoclip-xl").status().startswith("adapter: copy lovr_metric/adapters/videoclip_xl.py")
    assert get_baseline("qwen3-vl-embedding-8b-vllm").status().startswith("supported through --endpoint")
    local = Route("dual", "frames", "every 10th frame", source="test")
    # Nothing is in this machine's Hub cache (HF_HUB_OFFLINE, no downloads).
    assert Baseline("x", "org/not-cached", local).status().startswith("needs weights")


def test_models_command_prints_every_entry_without_torch_or_transformers():
    done = subprocess.run([sys.executable, "-m", "lovr_metric", "models"], capture_output=True, text=True)
    check = "; import sys; print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| model | repo | route (family / visual input / frames) | status |")
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0].removeprefix("| ").removesuffix(" *") for row in rows] == [b.name for b in BASELINES]
    assert "a tiny random-weight model of the same architecture through the same code" in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv = ['x', 'models']; import lovr_metric.__main__ as m; m.main()" + check,
        ],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0 and "imported: []" in probe.stdout, probe.stderr[-2000:]


def test_models_command_takes_no_arguments():
    from lovr_metric.__main__ import main

    assert main(["models", "--all"]) == 2


@pytest.mark.parametrize(
    ("module", "cls", "args", "message"),
    [
        ("lovr_metric.adapters.languagebind", "LanguageBindAdapter", (), "package `languagebind`: pip install"),
        ("lovr_metric.adapters.videoclip_xl", "VideoCLIPXLAdapter", ("/nonexistent",), "holds no modeling.py"),
    ],
)
def test_adapters_import_without_their_package_and_say_what_is_missing(module, cls, args, message):
    import importlib

    adapter = getattr(importlib.import_module(module), cls)
    with pytest.raises((ImportError, ValueError), match=message):
        adapter(*args)


def test_the_runner_loads_a_registry_model_by_its_routes_family():
    from lovr_metric.evaluation.runner import EvaluateConfig, _encoder_config

    def family(model: str, **options) -> str | None:
        config = EvaluateConfig(dataset="d", model=model, output="o", **options)
        return _encoder_config(config, model, None).family

    assert family("gme-qwen2-vl-7b") == "vlm-embedder"  # GME's repo ships no family transformers can detect
    assert family("clip-vit-b-32") == "dual"
    assert family("gme-qwen2-vl-7b", family="text") == "text"  # --family still wins
    assert family("some/unknown-model") is None  # detected when loaded
