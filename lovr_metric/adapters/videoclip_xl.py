"""VideoCLIP-XL (and -v2) of alibaba-pai as a LoVR text and video encoder, around the authors' own code.

    git clone https://huggingface.co/alibaba-pai/VideoCLIP-XL   # modeling.py, utils/ and VideoCLIP-XL.bin

The model ships as a raw PyTorch state dict with the authors' modules, not as a transformers model. The API is their
demo's: `VideoCLIP_XL()` (`modeling.py`), `load_state_dict(torch.load(<.bin>))`, clips of 8 frames resized to
224x224 and normalised with ImageNet's mean and std as (B, 8, 3, 224, 224) into `vision_model.get_vid_features`,
texts through `utils.text_encoder.text_encoder.tokenize(texts, truncate=True)` and `text_model.encode_text`. Their
demo reverses the channels of OpenCV's BGR frames; LoVR's frames are RGB already, so they are not reversed. Frames
are resized bilinearly with PIL where the demo uses `cv2.resize` (bilinear too): pixels can differ slightly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

NUM_FRAMES = 8
SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


class VideoCLIPXLAdapter:
    """`TextEncoder` and `VideoEncoder` of `lovr_common.encoders` around the authors' `VideoCLIP_XL`.

    Args:
        code_dir (`str`): the cloned model repository (holding `modeling.py` and `utils/`).
        weights (`str`): the state dict file, `VideoCLIP-XL.bin` (or v2's) in `code_dir` by default.
    """

    num_frames = NUM_FRAMES

    def __init__(self, code_dir: str, weights: str = "VideoCLIP-XL.bin", device: str = "cpu"):
        folder = Path(code_dir)
        if not (folder / "modeling.py").is_file():
            raise ValueError(
                f"code_dir={code_dir!r} holds no modeling.py: expected a clone of huggingface.co/alibaba-pai/VideoCLIP-XL"
            )
        sys.path.insert(0, str(folder))
        try:
            from modeling import VideoCLIP_XL
            from utils.text_encoder import text_encoder
        except ImportError as err:
            raise ImportError(
                f"VideoCLIPXLAdapter needs the authors' code in {code_dir} and its requirements ({err})"
            ) from err
        self.text_encoder = text_encoder
        self.device = torch.device(device)
        self.model = VideoCLIP_XL()
        self.model.load_state_dict(torch.load(folder / weights, map_location="cpu"))
        self.model.to(self.device).eval()
        self.calls = 0

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.text_encoder.tokenize(texts, truncate=True).to(self.device)
        self.calls += 1
        return self.model.text_model.encode_text(tokens).float().cpu()

    def preprocess_videos(self, videos: list[list[np.ndarray]]) -> torch.Tensor:
        """Each clip's 8 RGB uint8 frames resized to 224x224 and normalised: (n, 8, 3, 224, 224)."""
        clips = []
        for frames in videos:
            resized = [np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.BILINEAR)) for f in frames]
            clip = (np.stack(resized) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # (T, H, W, 3)
            clips.append(torch.from_numpy(clip.transpose(0, 3, 1, 2)).float())
        return torch.stack(clips)

    @torch.inference_mode()
    def encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model.vision_model.get_vid_features(pixels.to(self.device)).float().cpu()
