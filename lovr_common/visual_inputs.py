"""How a clip's frames are handed to a multimodal model (a sentence-transformers model, the `vlm-embedder` family,
an endpoint): the forms (`VISUAL_INPUTS`, chosen by `choose_visual_input`), the frames' `video_metadata`, the check
that only decoded frames are handed over, and the error that names the fix when a processor needs torchvision."""

from __future__ import annotations

import numpy as np

# How a clip's frames reach a multimodal model (a sentence-transformers model, or the `vlm-embedder` family of
# `lovr_common.vlm_encoder`): recorded as `visual_input` and part of the cache key. `EncoderOptions.video_input`,
# the endpoint's option, asks the same of a local model: `video` (the default: a clip as one video where the model
# takes video, else frame by frame), `images` (multi_image) or `frame` (frames).
VISUAL_INPUTS = {
    "frames": "each frame as an image, one embedding per frame, pooled by the toolkit",
    "multi_image": "a clip's frames as the images of one input (one chat message), one embedding per clip",
    "video": "a clip's frames as one video (frames, video_metadata, not resampled), one embedding per clip",
}
DEFAULT_CLIP_FRAMES = 8  # frames of a clip embedded as one input, unless num_frames (the endpoint's default too)
# What a clip's `video_metadata` holds when the evaluation hands it (its `frames` module does): each frame's index in
# its file and the file's fps. Without it (a caller with frames alone), their positions among themselves, no fps.
VIDEO_METADATA = "each frame's index in its file, and the file's fps"
TORCHVISION_FIX = (
    "install the toolkit's gpu extra (pip install 'lovr-toolkit[gpu]', torchvision matching your torch build) on a "
    "GPU machine, or serve the model elsewhere and pass --endpoint"
)


def torchvision_error(model: str, err: BaseException, alternative: str = "") -> ImportError | None:
    """The error to raise for `err` when it says a processor needs torchvision (transformers' video processors do,
    and every video-capable VLM processor builds one, even for text); None for any other error."""
    if "torchvision" not in str(err).lower():
        return None
    return ImportError(
        f"model={model!r}: its processor cannot be built without torchvision ({type(err).__name__}: "
        f"{str(err).strip().splitlines()[0]}); {TORCHVISION_FIX}{alternative}"
    )


def check_frames(frames, argument: str) -> None:
    """Raise `ValueError` unless `frames` are RGB uint8 arrays (H, W, 3). A path string reaching a model without the
    video modality is embedded by sentence-transformers as TEXT, silently: only decoded frames are handed over."""
    for position, frame in enumerate(frames):
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            seen = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}".strip()
            shown = f" {frame!r}" if isinstance(frame, str) else ""
            raise ValueError(
                f"{argument}[{position}] is a {seen}{shown}, expected a decoded RGB uint8 frame (an array of shape "
                "(H, W, 3)): the toolkit decodes videos itself"
            )


def video_metadata(
    num_frames: int,
    fps: float | None = None,
    frames_indices: list[int] | None = None,
    total_num_frames: int | None = None,
) -> dict:
    """A video's `video_metadata` as transformers' video processors read it (and sentence-transformers passes it):
    `frames_indices` of the frames in their source, its `fps` and its `total_num_frames` (default: up to the last
    frame taken); by default the frames' positions among themselves."""
    indices = list(range(num_frames)) if frames_indices is None else [int(i) for i in frames_indices]
    if len(indices) != num_frames:
        raise ValueError(f"frames_indices={indices}: expected one index per frame ({num_frames})")
    total = total_num_frames or (num_frames if frames_indices is None else max(indices) + 1)
    return {"fps": fps, "total_num_frames": total, "frames_indices": indices}


def choose_visual_input(model: str, video_input: str, takes: set[str]) -> str | None:
    """The `VISUAL_INPUTS` key of a model taking the modalities `takes` ("image", "video", "message") for
    `video_input` (`EncoderOptions.video_input`); None for a text-only model. Raises `ValueError` for a choice the
    model cannot honour."""
    if not takes & {"image", "video"}:
        return None
    if video_input == "video":
        return "video" if "video" in takes else "frames"
    if video_input == "frame" and "image" in takes:
        return "frames"
    if video_input == "images" and {"image", "message"} <= takes:
        return "multi_image"
    why = {
        "frame": "it takes no images",
        # sentence-transformers embeds {"image": [frames]} of a model without the message format as the first frame
        # alone, silently
        "images": "several images make one input only through a chat message (the message modality), which it lacks",
    }.get(video_input, f"expected one of video, images or frame, got video_input={video_input!r}")
    raise ValueError(f"video_input={video_input!r} for model={model!r} (modalities {sorted(takes)}): {why}")
