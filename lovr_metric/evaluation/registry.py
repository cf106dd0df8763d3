"""The LoVR paper's baselines: which transformers can load, with their preprocessing settings.

    python -m lovr_metric evaluate --dataset ./lovr --model clip-vit-b-32 --output runs/clip  # a registry name

`get_baseline(name_or_repo)` finds an entry by its short name or repo id; the runner applies its settings (text
length, frame sampling) unless the command line overrides them. Entries the toolkit cannot serve say why: the
runner refuses them with that reason instead of failing somewhere inside a model's remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

from lovr_metric.evaluation.tasks import LOVR_FRAME_INTERVAL

CLIP_TEXT_LENGTH = 77
SIGLIP_TEXT_LENGTH = 64
# The original LoVR scripts that evaluated them (lovr_metric.evaluation.lovr_original).
CLIP_SCRIPT = "CLIP_test.py"
SIGLIP_SCRIPT = "siglip-base-patch16-224_test.py"
SIGLIP2_SCRIPT = "siglip2-base-patch16-224_test.py"
METACLIP_SCRIPT = "MetaCLIP-ViT-H-14_test.py"


@dataclass(frozen=True)
class Baseline:
    """One model of the paper's tables.

    Args:
        name (`str`): short name used on the command line.
        repo_id (`str`): the Hub repository.
        family (`str`): an encoder family of `lovr_common.encoders.FAMILIES`, or `"unsupported"`.
        text_max_length (`int`): the token limit of the model's text tower.
        frame_interval (`int`, *optional*): embed every `frame_interval`-th frame (dual encoders).
        num_frames (`int`, *optional*): frames per clip for models with a fixed-length video tower.
        needs_remote_code (`bool`): loading runs code from the repo (`--trust-remote-code`).
        unsupported_reason (`str`, *optional*): why the toolkit cannot serve it.
        original_script (`str`, *optional*): the original LoVR script that evaluated it, a key of
            `lovr_original.ORIGINAL_SCRIPTS` (`--protocol lovr-original` pools and cleans texts as it did).
    """

    name: str
    repo_id: str
    family: str
    text_max_length: int = CLIP_TEXT_LENGTH
    frame_interval: int | None = LOVR_FRAME_INTERVAL
    num_frames: int | None = None
    needs_remote_code: bool = False
    unsupported_reason: str | None = None
    original_script: str | None = None


BASELINES = [
    Baseline("clip-vit-b-32", "openai/clip-vit-base-patch32", "dual", original_script=CLIP_SCRIPT),
    Baseline("clip-vit-b-16", "openai/clip-vit-base-patch16", "dual", original_script=CLIP_SCRIPT),
    Baseline("clip-vit-l-14", "openai/clip-vit-large-patch14", "dual", original_script=CLIP_SCRIPT),
    Baseline(
        "siglip-base-p16-224",
        "google/siglip-base-patch16-224",
        "dual",
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP_SCRIPT,
    ),
    Baseline(
        "siglip-so400m-p14-384",
        "google/siglip-so400m-patch14-384",
        "dual",
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP_SCRIPT,
    ),
    Baseline(
        "siglip2-base-p16-224",
        "google/siglip2-base-patch16-224",
        "dual",
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP2_SCRIPT,
    ),
    Baseline(
        "siglip2-so400m-p14-384",
        "google/siglip2-so400m-patch14-384",
        "dual",
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP2_SCRIPT,
    ),
    Baseline("metaclip-b32-400m", "facebook/metaclip-b32-400m", "dual", original_script=METACLIP_SCRIPT),
    Baseline("metaclip-h14-fullcc2.5b", "facebook/metaclip-h14-fullcc2.5b", "dual", original_script=METACLIP_SCRIPT),
    Baseline("xclip-base-p32", "microsoft/xclip-base-patch32", "video", frame_interval=None, num_frames=8),
    Baseline("xclip-base-p16", "microsoft/xclip-base-patch16", "video", frame_interval=None, num_frames=8),
    Baseline(
        "eva02-clip-b16",
        "QuanSun/EVA-CLIP",
        "unsupported",
        unsupported_reason="an open_clip / timm checkpoint: transformers has no EVA02-CLIP architecture",
    ),
    Baseline(
        "pe-core-b16-224",
        "facebook/PE-Core-B16-224",
        "unsupported",
        unsupported_reason="a perception_models (open_clip style) checkpoint, not a transformers model",
    ),
    Baseline(
        "jina-clip-v2",
        "jinaai/jina-clip-v2",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="its remote code exposes encode_text / encode_image, not get_*_features: use an adapter",
    ),
    Baseline(
        "languagebind-video",
        "LanguageBind/LanguageBind_Video_FT",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="ships as a custom package (languagebind), not a transformers or remote-code model",
    ),
    Baseline(
        "videoclip-xl",
        "alibaba-pai/VideoCLIP-XL",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="a raw PyTorch checkpoint loaded by the authors' own code; no transformers config",
    ),
    Baseline(
        "videoclip-xl-v2",
        "alibaba-pai/VideoCLIP-XL-v2",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="a raw PyTorch checkpoint loaded by the authors' own code; no transformers config",
    ),
    Baseline(
        "gme-qwen2-vl-7b",
        "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="an instruction-prompted VLM embedder (remote code); wrap it with an adapter",
        original_script="gme-Qwen2-VL-7B-Instruct_test.py",
    ),
    Baseline(
        "mm-embed",
        "nvidia/MM-Embed",
        "unsupported",
        needs_remote_code=True,
        unsupported_reason="remote code built on LLaVA-Next with its own instruction format; wrap it with an adapter",
    ),
]
_BY_KEY = {key: b for b in BASELINES for key in (b.name, b.repo_id)}


def get_baseline(name_or_repo: str) -> Baseline | None:
    """The registry entry for a short name or repo id, or `None` for a model outside the registry."""
    return _BY_KEY.get(name_or_repo)


def check_servable(baseline: Baseline, trust_remote_code: bool) -> None:
    """Raise `ValueError` when the toolkit cannot serve `baseline` or it needs remote code that was not allowed."""
    if baseline.unsupported_reason:
        raise ValueError(f"model={baseline.repo_id!r} is not supported: {baseline.unsupported_reason}")
    if baseline.needs_remote_code and not trust_remote_code:
        raise ValueError(f"model={baseline.repo_id!r} runs code from its repo: pass --trust_remote_code to allow it")
