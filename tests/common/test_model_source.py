"""A `--model` that names a missing folder is reported as such, by every loader (not as a malformed Hub id)."""

import pytest

from generation.backends import TransformersBackend
from generation.scoring import EvqaScorer
from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.model_source import check_model_source


@pytest.mark.parametrize("relative", ["missing/model/dir", "./missing", "../missing"])
def test_a_missing_folder_is_named_with_its_absolute_path(tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--model='.*missing.*': no such folder \(/.*missing.*ORG/NAME"):
        check_model_source(relative, argument="--model")


def test_folders_and_hub_ids_pass_and_a_file_is_refused(tmp_path):
    check_model_source(str(tmp_path))
    # Either could be on the Hub: transformers decides (offline, from its cache).
    check_model_source("ORG/NAME")
    check_model_source("gpt2")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"model='.*config.json' is a file: expected a model folder or a Hub"):
        check_model_source(str(tmp_path / "config.json"))


@pytest.mark.parametrize(
    "load",
    [
        lambda path: TransformersBackend(path),
        lambda path: EvqaScorer(path),
        lambda path: load_encoder(EncoderConfig(model=path, device="cpu"), need="visual"),
    ],
    ids=["caption-backend", "evqa-scorer", "metric-encoder"],
)
def test_every_loader_says_the_folder_does_not_exist(tmp_path, load):
    missing = str(tmp_path / "models" / "clip")
    with pytest.raises(ValueError, match=r"no such folder .*a Hub model id looks like ORG/NAME"):
        load(missing)


def test_a_hub_id_that_cannot_be_loaded_offline_is_a_value_error(monkeypatch):
    # A stage reports ValueErrors as "could not run"; transformers' OSError would end generation.run with a traceback.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"model='lovr-no-such-org/no-such-model' is no local folder"):
        TransformersBackend("lovr-no-such-org/no-such-model")
