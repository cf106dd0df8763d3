"""The LoVR paper's baselines and today's leading video retrievers: how each one runs, with its settings.

    python -m lovr_metric models                                                              # the table below
    python -m lovr_metric evaluate --dataset ./lovr --model clip-vit-b-32 --output runs/clip  # a registry name

Every entry has a `Route` (the encoder family of `lovr_common.encoders`, its prompts, its frames and the form a clip
reaches it in) or, only where none exists, an `unsupported_reason`. Models that ship as their authors' own
packages have an adapter file under `lovr_metric/adapters/` to copy (`Route.adapter`). `get_baseline(name_or_repo)`
finds an entry by its short name or repo id; the runner applies its settings (text length, frame sampling) unless
the command line overrides them, and refuses entries it cannot load itself with their reason.

Each entry's `source` says where its route was checked (a model card, the authors' code, the library's code), and
says so where something could not be checked. No real weights are run here: every route is exercised in the tests
by a tiny random-weight model of the same architecture through the same code (`Route.standin`, a name of
`lovr_standins.tiny_models`), or not at all where `standin` is None. This module imports neither torch nor
transformers: `python -m lovr_metric models` prints the table without them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lovr_metric.evaluation.tasks import LOVR_FRAME_INTERVAL

CLIP_TEXT_LENGTH = 77
SIGLIP_TEXT_LENGTH = 64
# The original LoVR scripts that evaluated them (lovr_metric.evaluation.lovr_original).
CLIP_SCRIPT = "CLIP_test.py"
SIGLIP_SCRIPT = "siglip-base-patch16-224_test.py"
SIGLIP2_SCRIPT = "siglip2-base-patch16-224_test.py"
METACLIP_SCRIPT = "MetaCLIP-ViT-H-14_test.py"
GME_SCRIPT = "gme-Qwen2-VL-7B-Instruct_test.py"
# The families a route may name: lovr_common.encoders.FAMILIES (without importing it: it imports torch), the
# "vlm-embedder" family (GME, VLM2Vec, Qwen3-VL-Embedding through transformers, lovr_common/vlm_encoder.py), an
# OpenAI-compatible server ("endpoint", `--endpoint`), and an adapter file of `lovr_metric/adapters/`.
ROUTE_FAMILIES = ("dual", "video", "text", "sentence-transformers", "vlm-embedder", "endpoint", "adapter")
# How a clip reaches the model: frame by frame, pooled by the runner; its frames as several images of one input; one
# video (a processor's video input); or as the server takes it.
VISUAL_INPUTS = ("frames", "multi_image", "video", "endpoint")
EVERY_10TH = f"every {LOVR_FRAME_INTERVAL}th frame, each embedded, L2-normalised and mean-pooled"
QWEN3_VL_EMBEDDING_PROMPT = "Represent the user's input."


@dataclass(frozen=True)
class Route:
    """How the toolkit runs a model.

    Args:
        family (`str`): one of `ROUTE_FAMILIES`.
        visual_input (`str`): one of `VISUAL_INPUTS`.
        frames (`str`): which frames of a clip it sees and how they are pooled.
        query_prompt (`str`, *optional*): the instruction put before query texts (None: none, or the model's own).
        document_prompt (`str`, *optional*): the instruction of clips and videos.
        needs_torchvision (`bool`): the route builds a transformers video processor (torchvision required).
        needs_remote_code (`bool`): loading runs code from the repo (`--trust_remote_code`).
        adapter (`str`, *optional*): the adapter file under `lovr_metric/adapters/` (family "adapter").
        package (`str`, *optional*): the authors' package the adapter imports, to install.
        standin (`str`, *optional*): the tiny random-weight model of `lovr_standins.tiny_models` that exercises the
            same code in the tests.
        source (`str`): where the route was checked.
    """

    family: str
    visual_input: str
    frames: str
    query_prompt: str | None = None
    document_prompt: str | None = None
    needs_torchvision: bool = False
    needs_remote_code: bool = False
    adapter: str | None = None
    package: str | None = None
    standin: str | None = None
    source: str = ""

    def describe(self) -> str:
        """The route in one cell: family, visual input, frames."""
        return f"{self.family} / {self.visual_input} / {self.frames}"


@dataclass(frozen=True)
class Baseline:
    """One model of the paper's tables or of today's video-retrieval leaders.

    Args:
        name (`str`): short name used on the command line.
        repo_id (`str`): the Hub repository.
        route (`Route`, *optional*): how it runs; None only with `unsupported_reason`.
        text_max_length (`int`, *optional*): the token limit of the model's text tower (None: its tokenizer's).
        frame_interval (`int`, *optional*): embed every `frame_interval`-th frame (dual encoders).
        num_frames (`int`, *optional*): frames per clip for models with a fixed-length video tower.
        unsupported_reason (`str`, *optional*): why no route exists.
        original_script (`str`, *optional*): the original LoVR script that evaluated it, a key of
            `lovr_original.ORIGINAL_SCRIPTS` (`--protocol lovr-original` pools and cleans texts as it did).
        in_paper (`bool`): a baseline of the LoVR paper (else one of today's leaders).
    """

    name: str
    repo_id: str
    route: Route | None = None
    text_max_length: int | None = CLIP_TEXT_LENGTH
    frame_interval: int | None = LOVR_FRAME_INTERVAL
    num_frames: int | None = None
    unsupported_reason: str | None = None
    original_script: str | None = None
    in_paper: bool = True

    def __post_init__(self):
        if (self.route is None) == (self.unsupported_reason is None):
            raise ValueError(f"{self.name}: expected a route or an unsupported_reason, exactly one of them")

    @property
    def family(self) -> str:
        """The route's family, or "unsupported"."""
        return self.route.family if self.route else "unsupported"

    @property
    def needs_remote_code(self) -> bool:
        return bool(self.route and self.route.needs_remote_code)

    def status(self) -> str:
        """supported / needs weights / needs torchvision / adapter / unsupported, with what is missing."""
        if self.route is None:
            return f"unsupported: {self.unsupported_reason}"
        if self.route.adapter:
            return f"adapter: copy lovr_metric/adapters/{self.route.adapter} (pip install {self.route.package})"
        if self.route.family == "endpoint":
            return "supported through --endpoint (a vLLM server)"
        if self.route.needs_torchvision and importlib.util.find_spec("torchvision") is None:
            return "needs torchvision (its video processor)"
        if not _weights_cached(self.repo_id):
            return "needs weights (not in the local Hub cache: downloaded on first use)"
        return "supported"


def _weights_cached(repo_id: str) -> bool:
    """Whether the repo's config is in the local Hub cache (huggingface_hub only: no torch, no transformers)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _dual(frames: str = EVERY_10TH, standin: str = "clip", source: str = "") -> Route:
    return Route("dual", "frames", frames, standin=standin, source=source or "transformers get_*_features")


_CLIP_SOURCE = "transformers CLIPModel.get_text_features / get_image_features (tests/metric/test_encoders.py)"
_SIGLIP_SOURCE = "transformers SiglipModel / Siglip2Model get_*_features; text padded to 64 (PAD_TO_MAX_LENGTH)"
_GME_SOURCE = (
    "model card Alibaba-NLP/gme-Qwen2-VL-*-Instruct: tags sentence-transformers and transformers, custom code "
    "gme_inference.py (GmeQwen2VL.get_text_embeddings / get_image_embeddings(is_query=False), default instruction "
    "'You are a helpful assistant.'); its modeling_gme_qwen2vl.py requires transformers<4.52 (require_version)"
)
_QWEN3_VL_EMB_SOURCE = (
    "model card Qwen/Qwen3-VL-Embedding-*: SentenceTransformer(repo) usage, the Sentence Transformers v5.4 "
    "integration (text, image, video, lasttoken pooling, Normalize); vLLM --runner pooling; prompts from vLLM's "
    "examples/pooling/embed/vision_embedding_online.py (lovr_common.endpoint_encoder.SERVED_MODELS)"
)
# Both sizes of Qwen3-VL-Embedding load the same way through sentence-transformers.
_QWEN3_VL_EMBEDDING_ST = Route(
    "sentence-transformers",
    "video",
    "8 uniform frames as one video (video_metadata)",
    query_prompt=QWEN3_VL_EMBEDDING_PROMPT,
    document_prompt=QWEN3_VL_EMBEDDING_PROMPT,
    needs_torchvision=True,
    standin="qwen2-vl-st",
    source=_QWEN3_VL_EMB_SOURCE,
)

BASELINES = [
    Baseline("clip-vit-b-32", "openai/clip-vit-base-patch32", _dual(source=_CLIP_SOURCE), original_script=CLIP_SCRIPT),
    Baseline("clip-vit-b-16", "openai/clip-vit-base-patch16", _dual(source=_CLIP_SOURCE), original_script=CLIP_SCRIPT),
    Baseline(
        "clip-vit-l-14", "openai/clip-vit-large-patch14", _dual(source=_CLIP_SOURCE), original_script=CLIP_SCRIPT
    ),
    Baseline(
        "siglip-base-p16-224",
        "google/siglip-base-patch16-224",
        _dual(standin="siglip", source=_SIGLIP_SOURCE),
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP_SCRIPT,
    ),
    Baseline(
        "siglip-so400m-p14-384",
        "google/siglip-so400m-patch14-384",
        _dual(standin="siglip", source=_SIGLIP_SOURCE),
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP_SCRIPT,
    ),
    Baseline(
        "siglip2-base-p16-224",
        "google/siglip2-base-patch16-224",
        _dual(standin="siglip", source=_SIGLIP_SOURCE),
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP2_SCRIPT,
    ),
    Baseline(
        "siglip2-so400m-p14-384",
        "google/siglip2-so400m-patch14-384",
        _dual(standin="siglip", source=_SIGLIP_SOURCE),
        SIGLIP_TEXT_LENGTH,
        original_script=SIGLIP2_SCRIPT,
    ),
    Baseline(
        "metaclip-b32-400m",
        "facebook/metaclip-b32-400m",
        _dual(source=_CLIP_SOURCE + "; MetaCLIP is a CLIPModel"),
        original_script=METACLIP_SCRIPT,
    ),
    Baseline(
        "metaclip-h14-fullcc2.5b",
        "facebook/metaclip-h14-fullcc2.5b",
        _dual(source=_CLIP_SOURCE + "; MetaCLIP is a CLIPModel"),
        original_script=METACLIP_SCRIPT,
    ),
    Baseline(
        "xclip-base-p32",
        "microsoft/xclip-base-patch32",
        Route(
            "video",
            "video",
            "8 uniform frames into get_video_features",
            standin="xclip",
            source="transformers XCLIPModel.get_video_features / get_text_features",
        ),
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
    Baseline(
        "xclip-base-p16",
        "microsoft/xclip-base-patch16",
        Route(
            "video",
            "video",
            "8 uniform frames into get_video_features",
            standin="xclip",
            source="transformers XCLIPModel.get_video_features / get_text_features",
        ),
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
    Baseline(
        "eva02-clip-b16",
        "QuanSun/EVA-CLIP",
        unsupported_reason="an open_clip / timm checkpoint: transformers has no EVA02-CLIP architecture, and open_clip "
        "needs torchvision (DESIGN.md); no adapter written",
    ),
    Baseline(
        "pe-core-b16-224",
        "facebook/PE-Core-B16-224",
        unsupported_reason="a perception_models (open_clip style) checkpoint, not a transformers model; no adapter "
        "written",
    ),
    Baseline(
        "blip",
        "Salesforce/blip-itm-base-coco",
        unsupported_reason="the original has only a run script for BLIP and names no checkpoint (LOVR_REFERENCE.md): "
        "which BLIP was evaluated is unknown, so none is registered as the paper's",
    ),
    Baseline(
        "jina-clip-v2",
        "jinaai/jina-clip-v2",
        Route(
            "sentence-transformers",
            "frames",
            EVERY_10TH,
            needs_remote_code=True,
            source="model repo jinaai/jina-clip-v2: custom_st.py (a sentence-transformers Transformer module taking "
            "texts and images) and modules.json; AutoModel remote code exposes encode_text / encode_image "
            "(README), not get_*_features. Not run here: its remote code is not in this environment",
        ),
    ),
    Baseline(
        "languagebind-video",
        "LanguageBind/LanguageBind_Video_FT",
        Route(
            "adapter",
            "video",
            "8 frames of the clip (the authors' num_frames) into get_image_features",
            adapter="languagebind.py",
            package="languagebind (github.com/PKU-YuanGroup/LanguageBind)",
            source="PKU-YuanGroup/LanguageBind README (LanguageBindVideo, LanguageBindVideoTokenizer, "
            "LanguageBindVideoProcessor), languagebind/video/processing_video.py (transform of a (C, T, H, W) "
            "uint8 tensor) and modeling_video.py (get_text_features, get_image_features)",
        ),
        frame_interval=None,
        num_frames=8,
    ),
    Baseline(
        "videoclip-xl",
        "alibaba-pai/VideoCLIP-XL",
        Route(
            "adapter",
            "video",
            "8 frames resized to 224x224 into vision_model.get_vid_features",
            adapter="videoclip_xl.py",
            package="the authors' code (modeling.py, utils/) beside VideoCLIP-XL.bin",
            source="VideoCLIP-XL demo as copied in public repositories: VideoCLIP_XL(), load_state_dict, "
            "vision_model.get_vid_features((B, 8, 3, 224, 224), ImageNet mean/std), text_encoder.tokenize("
            "truncate=True), text_model.encode_text; the LoVR original's evaluate/ keeps this model",
        ),
        frame_interval=None,
        num_frames=8,
    ),
    Baseline(
        "videoclip-xl-v2",
        "alibaba-pai/VideoCLIP-XL-v2",
        Route(
            "adapter",
            "video",
            "8 frames resized to 224x224 into vision_model.get_vid_features",
            adapter="videoclip_xl.py",
            package="the authors' code (modeling.py, utils/) beside VideoCLIP-XL-v2.bin",
            source="as videoclip-xl; that v2 loads with the same code is not verified here",
        ),
        frame_interval=None,
        num_frames=8,
    ),
    Baseline(
        "gme-qwen2-vl-7b",
        "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct",
        Route(
            "vlm-embedder",
            "frames",
            EVERY_10TH + " (the original averaged them raw: lovr-original)",
            document_prompt="You are a helpful assistant.",
            needs_torchvision=True,
            standin="qwen2-vl",
            source=_GME_SOURCE,
        ),
        text_max_length=1800,
        original_script=GME_SCRIPT,
    ),
    Baseline(
        "gme-qwen2-vl-2b",
        "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct",
        Route(
            "vlm-embedder",
            "frames",
            EVERY_10TH,
            document_prompt="You are a helpful assistant.",
            needs_torchvision=True,
            standin="qwen2-vl",
            source=_GME_SOURCE,
        ),
        text_max_length=1800,
        in_paper=False,
    ),
    Baseline(
        "mm-embed",
        "nvidia/MM-Embed",
        unsupported_reason="remote code built on LLaVA-Next with its own instruction format; its code was not read "
        "here, so no route or adapter is given",
    ),
    Baseline(
        "qwen3-vl-embedding-2b",
        "Qwen/Qwen3-VL-Embedding-2B",
        _QWEN3_VL_EMBEDDING_ST,
        text_max_length=None,
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
    Baseline(
        "qwen3-vl-embedding-8b",
        "Qwen/Qwen3-VL-Embedding-8B",
        _QWEN3_VL_EMBEDDING_ST,
        text_max_length=None,
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
    Baseline(
        "qwen3-vl-embedding-8b-vllm",
        "Qwen/Qwen3-VL-Embedding-8B",
        Route(
            "endpoint",
            "endpoint",
            "8 uniform frames as one video_url part",
            query_prompt=QWEN3_VL_EMBEDDING_PROMPT,
            document_prompt=QWEN3_VL_EMBEDDING_PROMPT,
            source="lovr_common.endpoint_encoder (vLLM's pooling protocol, its files and commits cited there)",
        ),
        text_max_length=None,
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
    Baseline(
        "vlm2vec-v2",
        "VLM2Vec/VLM2Vec-V2.0",
        Route(
            "vlm-embedder",
            "video",
            "8 uniform frames (MMEB-V2's video protocol)",
            needs_torchvision=True,
            standin="qwen2-vl",
            source="VLM2Vec-V2 paper (MMEB-V2's authors; Qwen2-VL backbone, 8 frames per video in MMEB-V2). The "
            "repo id and whether it loads without the authors' code are NOT verified here",
        ),
        frame_interval=None,
        num_frames=8,
        in_paper=False,
    ),
]
# A repo id served two ways (Qwen3-VL-Embedding-8B locally and at an endpoint) finds its first entry.
_BY_KEY = {key: b for b in reversed(BASELINES) for key in (b.name, b.repo_id)}


def get_baseline(name_or_repo: str) -> Baseline | None:
    """The registry entry for a short name or repo id, or `None` for a model outside the registry."""
    return _BY_KEY.get(name_or_repo)


def check_servable(baseline: Baseline, trust_remote_code: bool) -> None:
    """Raise `ValueError` when the toolkit cannot load `baseline` itself (no route, or an adapter's: pass the adapter
    as the encoder) or it needs remote code that was not allowed."""
    if baseline.unsupported_reason:
        raise ValueError(f"model={baseline.repo_id!r} is not supported: {baseline.unsupported_reason}")
    if baseline.route.adapter:
        raise ValueError(
            f"model={baseline.repo_id!r} is not supported: ships as a custom package ({baseline.route.package}); "
            f"copy lovr_metric/adapters/{baseline.route.adapter} and pass its encoder to evaluate_model(encoder=...)"
        )
    if baseline.needs_remote_code and not trust_remote_code:
        raise ValueError(f"model={baseline.repo_id!r} runs code from its repo: pass --trust_remote_code to allow it")


def models_table() -> str:
    """The registry as a Markdown table: name, repo, route, status, and where the route was checked."""
    rows = [
        "| model | repo | route (family / visual input / frames) | status | stand-in | checked in |",
        "|---|---|---|---|---|---|",
    ]
    for baseline in BASELINES:
        route = baseline.route
        rows.append(
            f"| {baseline.name}{'' if baseline.in_paper else ' *'} | {baseline.repo_id} "
            f"| {route.describe() if route else '-'} | {baseline.status()} "
            f"| {(route.standin if route else None) or '-'} | {route.source if route else '-'} |"
        )
    return "\n".join(rows) + (
        "\n\nNo real weights are run by the tests: each route is exercised by a tiny random-weight model of the same "
        "architecture through the same code (the stand-in column, lovr_standins.tiny_models; '-': none). "
        "*: not in the LoVR paper's table (today's video-retrieval leaders and other registered models)."
    )
