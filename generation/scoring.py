"""Caption quality scorers for `generation.refine`: EVQAScore-style on any CLIP-like model, or an LLM/VLM judge.

A scorer takes clips with their frames and captions and returns one result per clip: a `ScoreResult`, or `Failed`
with the reason it could not be scored (one clip's failure never fails the others).

**EVQAScore-style** (`EvqaScorer`), following the LoVR group's EVQAScore. With a CLIP-like dual encoder (anything
with `get_image_features` / `get_text_features`: CLIP, SigLIP, ...), loaded, tokenised and pooled by
`lovr_common.encoders` exactly as the retrieval evaluation does, and L2-normalised features:

- *global*: the mean of the clip's frame features, normalised (one row) against the caption's sentences (one
  row each, every sentence truncated to the text tower's maximum positions, 77 for CLIP);
- *local*: regions against the caption's keywords. The original uses object crops from a detector; we have no
  detector in the stack, so the regions are every whole frame plus its `tiles x tiles` grid of crops, which gives
  small objects a region of their own at no extra dependency;
- `m(S) = harmonic_mean(mean(max(S, dim=0)), mean(max(S, dim=1)))` and
  `score = (m(regions @ keywords^T) + m(global @ sentences^T)) / 2`, roughly in [0, 1].

The harmonic mean is only defined for positive values: like F1 with a zero precision, `m` is 0 when either mean
is not positive (random-weight models give negative cosines).

Keywords come from `extract_keywords` (deterministic, `KEYWORDS_VERSION`): lower-cased words of three or more
letters that are not in `STOPWORDS` (a fixed list of English function words and caption boilerplate such as
"video", "scene"), in order of first appearance, at most `MAX_KEYWORDS`. The original asks an LLM for them;
`LlmKeywords` does that through a chat backend, with the prompt `KEYWORD_PROMPT` (`KEYWORD_PROMPT_VERSION`).

**Judge** (`JudgeScorer`): a VLM (or a text-only LLM, which sees the caption only) rates the caption from 0 to
10 through a chat backend (`JUDGE_PROMPT`, `JUDGE_PROMPT_VERSION`); the first number in the reply, divided by
10, is the score. A reply without a number in range is a failed score with the reply quoted, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from generation.backends import ChatRequest, GenerationParams
from generation.outcome import Failed
from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.image_processors import image_processor_name
from lovr_common.model_source import check_model_source

KEYWORDS_VERSION = "stopwords-v1"
MAX_KEYWORDS = 32
# English function words plus words every clip caption uses, which say nothing about this clip's content.
STOPWORDS = frozenset(
    """
    a about above across after again against all along also although am among an and another any are around as
    at away be became because been before behind being below beneath beside besides between beyond both but by
    can could did do does doing down during each either else even ever every few for from further had has have
    having he her here hers herself him himself his how however i if in into is it its itself just least less
    like many may maybe me might more most much must my myself near neither never next no nor not now of off on
    once one only onto or other others otherwise our ours ourselves out over own per perhaps quite rather same
    several she should since so some such than that the their theirs them themselves then there therefore these
    they this those though through throughout thus to together too toward towards under until up upon us very
    via was we well were what whatever when where whether which while who whom whose why will with within without
    would yet you your yours yourself yourselves
    video clip scene footage frame frames shot shots appears appear seems seem shown shows show showing visible
    overall throughout possibly likely various several also additionally describe description depicts depicted
    """.split()
)
_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

KEYWORD_PROMPT_VERSION = "keywords-v1"
KEYWORD_PROMPT = (
    "List the key objects, people, actions and attributes mentioned in the following video description, as short "
    "phrases of one to three words separated by commas. Output only the list.\n\nDescription:\n{caption}"
)

JUDGE_PROMPT_VERSION = "judge-v1"
JUDGE_SYSTEM_PROMPT = "You are a strict evaluator of video descriptions."
JUDGE_PROMPT = (
    "Rate how accurately and completely the following description matches the video, on a scale from 0 (wrong or "
    "empty) to 10 (accurate, complete and specific). Answer with the number only.\n\nDescription:\n{caption}"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Keywords and ratings are short answers that should not vary from run to run.
GREEDY_SHORT = GenerationParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=128)


@dataclass
class ScoringItem:
    """One clip to score: its id, sampled RGB frames (H x W x 3 uint8) and caption."""

    clip_id: str
    frames: list[np.ndarray]
    caption: str


@dataclass
class ScoreResult:
    """A clip's score and what it was computed from."""

    score: float
    details: dict[str, Any] = field(default_factory=dict)


class Scorer(Protocol):
    """What `generation.refine` needs from a scorer."""

    num_frames: int

    def settings(self) -> dict[str, Any]:
        """Everything that determines the scores, recorded with each of them."""

    def score(self, items: Sequence[ScoringItem]) -> list[ScoreResult | Failed]:
        """One result per item, in order: its score, or why it has none."""


def harmonic_match(similarities: torch.Tensor) -> float:
    """`m(S)`: harmonic mean of the mean best match per column and the mean best match per row (0 if not positive)."""
    per_column = similarities.max(dim=0).values.mean().item()
    per_row = similarities.max(dim=1).values.mean().item()
    if per_column <= 0 or per_row <= 0:
        return 0.0
    return 2 * per_column * per_row / (per_column + per_row)


def extract_keywords(caption: str, max_keywords: int = MAX_KEYWORDS) -> list[str]:
    """Content words of `caption`: not stopwords, three letters or more, first appearance order, deduplicated."""
    keywords: dict[str, None] = {}
    for word in _WORD.findall(caption.lower()):
        word = word.strip("'-")
        if len(word) >= 3 and word not in STOPWORDS:
            keywords.setdefault(word)
    return list(keywords)[:max_keywords]


def split_sentences(caption: str) -> list[str]:
    """The caption's sentences (non-empty, stripped); the whole caption when it has no sentence end."""
    return [s.strip() for s in _SENTENCE_END.split(caption.strip()) if s.strip()]


def frame_regions(frame: np.ndarray, tiles: int) -> list[np.ndarray]:
    """The whole frame followed by its `tiles x tiles` grid of crops (row by row); just the frame when tiles <= 1."""
    regions = [frame]
    if tiles > 1:
        height, width = frame.shape[:2]
        rows = np.linspace(0, height, tiles + 1).astype(int)
        cols = np.linspace(0, width, tiles + 1).astype(int)
        for r in range(tiles):
            for c in range(tiles):
                regions.append(frame[rows[r] : rows[r + 1], cols[c] : cols[c + 1]])
    return regions


class LlmKeywords:
    """Keywords of each caption asked from an LLM through a `generation.backends` chat backend."""

    def __init__(self, backend: Any, max_keywords: int = MAX_KEYWORDS):
        self.backend = backend
        self.max_keywords = max_keywords

    def __call__(self, captions: Sequence[str]) -> list[list[str] | Failed]:
        """Per caption, its keywords or why they could not be extracted."""
        requests = [ChatRequest(user=KEYWORD_PROMPT.format(caption=caption)) for caption in captions]
        out: list[list[str] | Failed] = []
        for result in self.backend.generate(requests, GREEDY_SHORT):
            if not result.ok:
                out.append(Failed(f"keyword extraction failed: {result.error}"))
                continue
            keywords = [k.strip(" .;:\"'").lower() for k in re.split(r"[,\n]", result.text)]
            keywords = list(dict.fromkeys(k for k in keywords if k))[: self.max_keywords]
            if not keywords:
                out.append(
                    Failed(f"keyword extraction returned no keywords: {result.text[:80]!r}", {"reply": result.text})
                )
                continue
            out.append(keywords)
        return out


class EvqaScorer:
    """EVQAScore-style caption score with any CLIP-like transformers model (see the module docstring)."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        num_frames: int = 8,
        tiles: int = 2,
        keywords: LlmKeywords | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        random_weights: bool = False,
    ):
        check_model_source(model_name_or_path, argument="scorer model")
        self.model_name_or_path = model_name_or_path
        # float32 whatever the device: scores are compared with a threshold, and must not move with the dtype.
        config = EncoderConfig(model=model_name_or_path, dtype="float32", device=str(device))
        self.encoder = load_encoder(config, need="visual")
        if getattr(self.encoder, "family", None) != "dual":  # a video tower (X-CLIP) or a sentence-transformers model
            model = getattr(self.encoder, "model", self.encoder)
            model_class = getattr(model, "model_class", None) or type(model)  # its weights not read for this
            raise ValueError(
                f"scorer model {model_name_or_path!r} ({model_class.__name__}) has no get_image_features: expected a "
                "CLIP-like dual encoder (CLIP, SigLIP, ...)"
            )
        self.num_frames = num_frames
        self.tiles = tiles
        self.keywords = keywords
        self.batch_size = batch_size
        self.random_weights = random_weights

    def settings(self) -> dict[str, Any]:
        return {
            "name": "evqa",
            "model": self.model_name_or_path,
            "num_frames": self.num_frames,
            "tiles": self.tiles,
            "max_text_length": self.encoder.text_max_length,
            "image_processor": image_processor_name(self.encoder),
            "keywords": (
                {"source": "llm", "prompt_version": KEYWORD_PROMPT_VERSION}
                if self.keywords
                else {"source": KEYWORDS_VERSION}
            ),
            "random_weights": self.random_weights,
        }

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        chunks = [
            self.encoder.encode_text(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    def _embed_images(self, images: list[np.ndarray]) -> torch.Tensor:
        chunks = [
            self.encoder.encode_frames(self.encoder.preprocess_frames(images[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    def score(self, items: Sequence[ScoringItem]) -> list[ScoreResult | Failed]:
        keywords = (
            self.keywords([item.caption for item in items])
            if self.keywords
            else [extract_keywords(item.caption) for item in items]
        )
        results: list[ScoreResult | Failed] = [Failed("not scored")] * len(items)
        todo = []
        for i, (item, item_keywords) in enumerate(zip(items, keywords, strict=True)):
            sentences = split_sentences(item.caption)
            if isinstance(item_keywords, Failed):
                results[i] = item_keywords
            elif not item.frames:
                results[i] = Failed("no frames to score against")
            elif not sentences or not item_keywords:
                results[i] = Failed(f"caption has no content words to score: {item.caption[:80]!r}")
            else:
                todo.append((i, item, sentences, item_keywords))

        # Embed every region and text of the batch in a few large forward passes, then slice per clip.
        regions = [[r for frame in item.frames for r in frame_regions(frame, self.tiles)] for _, item, _, _ in todo]
        texts = [sentences + item_keywords for _, _, sentences, item_keywords in todo]
        region_features = self._embed_images([r for rs in regions for r in rs]) if todo else None
        text_features = self._embed_texts([t for ts in texts for t in ts]) if todo else None
        region_start = text_start = 0
        for (i, _, sentences, item_keywords), item_regions, item_texts in zip(todo, regions, texts, strict=True):
            regions_i = region_features[region_start : region_start + len(item_regions)]
            texts_i = text_features[text_start : text_start + len(item_texts)]
            region_start += len(item_regions)
            text_start += len(item_texts)
            frames_i = regions_i[:: self.tiles**2 + 1] if self.tiles > 1 else regions_i
            global_feature = torch.nn.functional.normalize(frames_i.mean(dim=0, keepdim=True), dim=-1)
            global_match = harmonic_match(global_feature @ texts_i[: len(sentences)].T)
            local_match = harmonic_match(regions_i @ texts_i[len(sentences) :].T)
            results[i] = ScoreResult(
                (global_match + local_match) / 2,
                details={"global": global_match, "local": local_match, "keywords": item_keywords},
            )
        return results


class JudgeScorer:
    """A VLM/LLM rates each caption 0-10 through a chat backend; the score is the rating / 10."""

    def __init__(self, backend: Any, *, model: str, num_frames: int = 8, with_frames: bool = True):
        self.backend = backend
        self.model = model
        self.num_frames = num_frames if with_frames else 0
        self.with_frames = with_frames

    def settings(self) -> dict[str, Any]:
        return {
            "name": "judge",
            "model": self.model,
            "num_frames": self.num_frames,
            "prompt_version": JUDGE_PROMPT_VERSION,
            "with_frames": self.with_frames,
            "image_processor": getattr(self.backend, "image_processor", None),
        }

    def score(self, items: Sequence[ScoringItem]) -> list[ScoreResult | Failed]:
        requests = [
            ChatRequest(
                user=JUDGE_PROMPT.format(caption=item.caption),
                system=JUDGE_SYSTEM_PROMPT,
                images=item.frames if self.with_frames else (),
            )
            for item in items
        ]
        return [self._parse(result) for result in self.backend.generate(requests, GREEDY_SHORT)]

    @staticmethod
    def _parse(result: Any) -> ScoreResult | Failed:
        if not result.ok:
            return Failed(f"judge call failed: {result.error}")
        match = _NUMBER.search(result.text)
        rating = float(match.group()) if match else None
        if rating is None or not 0 <= rating <= 10:
            return Failed(f"no rating 0-10 in {result.text[:80]!r}", {"reply": result.text})
        return ScoreResult(rating / 10, details={"rating": rating, "reply": result.text})
