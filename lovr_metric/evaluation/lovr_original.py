"""`--protocol lovr-original`: the original LoVR evaluation code's protocol, where it differs from the corrected one.

Everything this protocol does differently lives here, behind the hooks of `protocol.Protocol`:

- frames fed as BGR (the original flipped decord's RGB frames "to RGB");
- a video's embedding from its clips, not its own file: every `--interval`-th frame of the clips taken one after the
  other, the count going on across clip boundaries (the original's `make_video_dict`);
- frames pooled and texts tokenised as the original script of that model did (below);
- theme retrieval ranked both ways (theme -> clip and clip -> theme);
- defined for frame encoders only, every interval-th frame decoded at full size.

The original evaluated every model with a script of its own (LoVR-benchmark commit 00ca611,
`scripts/evaluation_script/code/<file>`; removed from the repository in 18907ad). Their `encode_image` blocks do not
all pool alike: the CLIP, SigLIP, SigLIP2, MetaCLIP, EVA02-CLIP and PE-Core scripts L2-normalise each frame's
features, average them and normalise the mean; the GME script averages its per-frame embeddings as returned, then
normalises. Their `encode_text` blocks tokenise alike except the CLIP script's, which uses OpenAI's `clip.tokenize`:
its `basic_clean` (ftfy's `fix_text`, `html.unescape` twice) and `whitespace_clean` run before the BPE, and
transformers' CLIP tokenizer does neither (`clean_like_openai_clip` does them first).

`original_script(model, model_type)` finds the script of a registry model, or of a model outside the registry by its
architecture (a `clip` model as the CLIP script, a `siglip` or `siglip2` one as theirs); `None` where no script
applies, and then the frame-model scripts' common rule is followed (normalised pooling, texts as they are).

    >>> original_script("clip-vit-b-32", "clip").file
    'CLIP_test.py'
    >>> clean_like_openai_clip("  Tom &amp;amp; Jerry\\n\\n run ")
    'Tom & Jerry run'
"""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass
from pathlib import Path

from lovr_common.encoders import VideoEncoder
from lovr_metric.evaluation.frames import FrameSampling
from lovr_metric.evaluation.jobs import EvalData, plan
from lovr_metric.evaluation.protocol import Protocol
from lovr_metric.evaluation.registry import get_baseline
from lovr_metric.evaluation.tasks import DIRECTIONS

ORIGINAL_COMMIT = "00ca611"


@dataclass(frozen=True)
class OriginalScript:
    """One of the original's per-model scripts, as far as its embeddings depend on it.

    Args:
        file (`str`): its name under `scripts/evaluation_script/code/`.
        pooling (`str`): `"normalized"` (each frame's features L2-normalised, averaged, normalised again) or `"raw"`
            (averaged as the model returns them, then normalised).
        text_cleaning (`str`, *optional*): `"openai-clip"` when texts went through OpenAI's `clip.tokenize`
            (`clean_like_openai_clip`); `None` when the model's own tokenizer took them as they are.
    """

    file: str
    pooling: str
    text_cleaning: str | None = None

    def record(self) -> dict:
        """What results.json records of it."""
        return {"file": self.file, "commit": ORIGINAL_COMMIT, "pooling": self.pooling,
                "text_cleaning": self.text_cleaning}  # fmt: skip


ORIGINAL_SCRIPTS = {
    script.file: script
    for script in (
        OriginalScript("CLIP_test.py", "normalized", "openai-clip"),
        OriginalScript("siglip-base-patch16-224_test.py", "normalized"),
        OriginalScript("siglip2-base-patch16-224_test.py", "normalized"),
        OriginalScript("MetaCLIP-ViT-H-14_test.py", "normalized"),
        OriginalScript("gme-Qwen2-VL-7B-Instruct_test.py", "raw"),
    )
}
# A model outside the registry follows the script of its architecture.
_SCRIPT_OF_MODEL_TYPE = {
    "clip": "CLIP_test.py",
    "siglip": "siglip-base-patch16-224_test.py",
    "siglip2": "siglip2-base-patch16-224_test.py",
}


def original_script(model: str, model_type: str | None) -> OriginalScript | None:
    """The original script that embedded `model` (a registry name or repo id, else found by `model_type`)."""
    baseline = get_baseline(model)
    if baseline is not None:
        file = baseline.original_script
    else:
        file = _SCRIPT_OF_MODEL_TYPE.get(model_type)
    return None if file is None else ORIGINAL_SCRIPTS[file]


def clean_like_openai_clip(text: str) -> str:
    """`text` as OpenAI's `clip.tokenize` cleans it before its BPE: ftfy's `fix_text`, HTML entities unescaped twice,
    whitespace runs made one space, stripped (the lower-casing is the tokenizer's own, in both)."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class CleanedTextEncoder:
    """A text encoder whose texts are cleaned first, as an original script's tokenizer cleaned them
    (`text_cleaning`, one of `TEXT_CLEANINGS`); everything else is the wrapped encoder's."""

    def __init__(self, encoder, text_cleaning: str):
        self._encoder, self._clean = encoder, TEXT_CLEANINGS[text_cleaning]
        self.text_cleaning = text_cleaning

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode_text(self, texts: list[str]):
        return self._encoder.encode_text([self._clean(text) for text in texts])

    @property
    def token_counts(self):
        counts = getattr(self._encoder, "token_counts", None)
        return None if counts is None else lambda texts: counts([self._clean(text) for text in texts])


TEXT_CLEANINGS = {"openai-clip": clean_like_openai_clip}


def _model_type(encoder) -> str | None:
    return getattr(getattr(getattr(encoder, "model", None), "config", None), "model_type", None)


class LoVROriginal(Protocol):
    """The original code's protocol (module docstring)."""

    name = "lovr-original"
    theme_directions = DIRECTIONS  # the original also ranks the theme texts for each clip

    def check(self, config) -> None:
        clash = [f"--{name}" for name in ("num_frames", "resize_in_decoder") if getattr(config, name)]
        if clash:
            raise ValueError(
                f"{' and '.join(clash)} cannot be used with --protocol {self.name}: the original code embeds every "
                "interval-th frame (--interval), decoded at full size"
            )

    def plan(self, rows, video_root: Path, granularity: list[str]) -> EvalData:
        return plan(*rows, video_root, granularity, video_from_clips=True)

    def sampling(self, config, encoder) -> FrameSampling:
        if isinstance(encoder, VideoEncoder):
            raise ValueError(
                f"--protocol {self.name} is defined for frame encoders: the original feeds a video tower the frames "
                "its own model-specific preprocessing picks, which this toolkit does not reproduce; evaluate "
                f"{config.model} with --protocol default (add --bgr for the original's channel order)"
            )
        script = original_script(config.model, _model_type(encoder))
        return dataclasses.replace(
            super().sampling(config, encoder),
            bgr=True,
            pooling=script.pooling if script else "normalized",
            video_from_clips=True,
        )

    def text_encoder(self, config, encoder):
        script = original_script(config.text_model or config.model, _model_type(encoder))
        if script is None or script.text_cleaning is None:
            return encoder
        return CleanedTextEncoder(encoder, script.text_cleaning)

    def record(self, config, encoder, text_encoder) -> dict:
        scripts = {
            "visual": original_script(config.model, _model_type(encoder)),
            "text": original_script(config.text_model or config.model, _model_type(text_encoder)),
        }
        return super().record(config, encoder, text_encoder) | {
            "frames": "BGR",
            "pooling": "as the model's original script (original_scripts)",
            "video_frames": "clip files, interval across clip boundaries",
            "original_scripts": {side: script and script.record() for side, script in scripts.items()},
        }
