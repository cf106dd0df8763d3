import pytest

from lovr_common.tiny_models import RANDOM_WEIGHTS_MARKER, available, is_random_weights, tiny_model_path


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
