"""LanguageBind's video model (github.com/PKU-YuanGroup/LanguageBind) as a LoVR text and video encoder.

    pip install git+https://github.com/PKU-YuanGroup/LanguageBind   # the authors' package `languagebind`

The API is the authors' README ("Video": `LanguageBindVideo`, `LanguageBindVideoTokenizer`,
`LanguageBindVideoProcessor`) and code (`languagebind/video/processing_video.py`: a clip is a (C, T, H, W) uint8
tensor of `config.vision_config.num_frames` frames through the processor's `transform`; `modeling_video.py`:
`get_text_features`, `get_image_features` of (B, C, T, 224, 224) pixels). Their transform crops and flips at random
(`RandomCropVideo`, `RandomHorizontalFlipVideo(p=0.5)`) even at inference; it is used as shipped, so seed torch for
repeatable embeddings. Texts are padded to 77 tokens as their processor does.
"""

from __future__ import annotations

import numpy as np
import torch

PACKAGE_HINT = "pip install git+https://github.com/PKU-YuanGroup/LanguageBind"


class LanguageBindAdapter:
    """`TextEncoder` and `VideoEncoder` of `lovr_common.encoders` around `languagebind.LanguageBindVideo`."""

    def __init__(self, checkpoint: str = "LanguageBind/LanguageBind_Video_FT", device: str = "cpu"):
        try:
            from languagebind import LanguageBindVideo, LanguageBindVideoProcessor, LanguageBindVideoTokenizer
        except ImportError as err:
            raise ImportError(
                f"LanguageBindAdapter needs the authors' package `languagebind`: {PACKAGE_HINT}"
            ) from err
        self.device = torch.device(device)
        self.model = LanguageBindVideo.from_pretrained(checkpoint).to(self.device).eval()
        self.tokenizer = LanguageBindVideoTokenizer.from_pretrained(checkpoint)
        self.processor = LanguageBindVideoProcessor(self.model.config, self.tokenizer)
        self.num_frames = self.model.config.vision_config.num_frames
        self.calls = 0

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(texts, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
        self.calls += 1
        return self.model.get_text_features(**inputs.to(self.device)).float().cpu()

    def preprocess_videos(self, videos: list[list[np.ndarray]]) -> torch.Tensor:
        """Each clip's RGB uint8 frames (H, W, 3) as the authors' transform makes them: (n, C, T, 224, 224)."""
        clips = [torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2) for frames in videos]  # (C, T, H, W)
        return torch.stack([self.processor.transform(clip) for clip in clips])

    @torch.inference_mode()
    def encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model.get_image_features(pixel_values=pixels.to(self.device)).float().cpu()
