import subprocess
import sys

import pytest
import torch

from lovr_common.provenance import RANDOM_WEIGHTS_MARKER, is_random_weights
from lovr_standins.tiny_models import available, tiny_model_path


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"name='nope'.*'clip'"):
        tiny_model_path("nope", tmp_path)


def test_build_is_cached_and_rebuilt_when_the_recipe_changed(tmp_path):
    assert {"clip", "siglip", "xclip", "vlm", "causal-lm"} <= set(available())
    path = tiny_model_path("clip", tmp_path)
    assert is_random_weights(path)
    (path / "sentinel").write_text("kept while the recipe is unchanged")
    assert tiny_model_path("clip", tmp_path) == path
    assert (path / "sentinel").exists()

    # a folder built by an older recipe carries another fingerprint
    marker = path / RANDOM_WEIGHTS_MARKER
    marker.write_text(marker.read_text().replace("recipe: ", "recipe: old"))
    assert tiny_model_path("clip", tmp_path) == path
    assert not (path / "sentinel").exists()
    assert "recipe: old" not in marker.read_text()


@pytest.mark.parametrize("name", available())
def test_every_recipe_builds_the_same_weights_twice(tmp_path, name):
    # Cached embeddings, resumed runs and expected test outputs all rely on a recipe being deterministic.
    from safetensors.torch import load_file

    first, second = (tiny_model_path(name, tmp_path / run) for run in ("a", "b"))
    [weights_a], [weights_b] = (list(path.glob("*.safetensors")) for path in (first, second))
    a, b = load_file(weights_a), load_file(weights_b)
    assert a.keys() == b.keys()
    assert [key for key in a if not torch.equal(a[key], b[key])] == []


def test_the_documented_command_builds_every_tiny_model(tmp_path):
    # Run as `-m`, the recipes once registered into another copy of the module and nothing was built.
    done = subprocess.run(
        [sys.executable, "-m", "lovr_standins.tiny_models", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == available()
    assert all(is_random_weights(tmp_path / name) for name in available())
