"""Tiny CLIP-like recipes (CLIP, SigLIP, X-CLIP) for `lovr_standins.tiny_models`.

    python -m lovr_standins.tiny_models clip siglip xclip

Each folder loads with `AutoModel.from_pretrained(dir)` and `AutoProcessor.from_pretrained(dir)` (X-CLIP: its image
processor and tokenizer separately, see `build_xclip`). The weights are random, the tokenizers are real or honestly
labelled stand-ins:

- CLIP and X-CLIP use the real CLIP byte-level BPE (49,408 tokens), rebuilt from the vocabulary that ships in the
  `open_clip_torch` wheel (`bpe_simple_vocab_16e6.txt.gz`, MIT), exactly as OpenAI's `SimpleTokenizer` builds it.
- SigLIP's real tokenizer is a SentencePiece model (`spiece.model`) that cannot be downloaded here and needs the
  `sentencepiece` package. The stand-in is a Unigram tokenizer (SentencePiece's algorithm, Metaspace
  pre-tokenisation, lower-casing, `</s>` appended, padded to 64 like SigLIP) trained with `tokenizers` on the word
  list of the CLIP vocabulary. It exercises the same code paths, not the same token ids.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import string
from functools import cache
from pathlib import Path

import torch

from lovr_metric.evaluation.registry import CLIP_TEXT_LENGTH, SIGLIP_TEXT_LENGTH
from lovr_standins.tiny_models import register

SEED = 0

IMAGE_SIZE = 32
PATCH_SIZE = 8
HIDDEN = 32
PROJECTION = 16
SIGLIP_VOCAB_SIZE = 2000
# The CLIP vocabulary lists words by merge rank (frequent first): the first few thousand train in a fraction of a
# second.
SIGLIP_TRAINING_WORDS = 5000
XCLIP_NUM_FRAMES = 8
# OpenAI's SimpleTokenizer keeps the first 49152 - 256 - 2 merges of the file (after its header line).
CLIP_NUM_MERGES = 49152 - 256 - 2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _tiny_encoder(**extra) -> dict:
    return dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2, num_attention_heads=2, **extra)


def _clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ValueError(
            "The tiny CLIP tokenizer needs the real CLIP BPE vocabulary from the open_clip_torch wheel: "
            "pip install --no-deps open_clip_torch (it is never imported)"
        )
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


@cache
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merges, built the way OpenAI's `SimpleTokenizer` builds them."""
    lines = gzip.open(_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : CLIP_NUM_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def _save_clip_tokenizer(out_dir: Path):
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(out_dir, model_max_length=CLIP_TEXT_LENGTH)
    return tokenizer


def _clip_image_processor():
    # The PIL backend: the default one needs torchvision.
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


@register("clip")
def build_clip(out_dir: Path) -> None:
    """A 2-layer CLIP with the real CLIP tokenizer, saved with its `CLIPProcessor`."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    tokenizer = _save_clip_tokenizer(out_dir)
    config = CLIPConfig(
        text_config=_tiny_encoder(vocab_size=len(tokenizer), max_position_embeddings=CLIP_TEXT_LENGTH),
        vision_config=_tiny_encoder(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
        projection_dim=PROJECTION,
    )
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(SEED)  # the same weights on every machine: cached embeddings and test outputs agree
    CLIPModel(config).eval().save_pretrained(out_dir)
    CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tokenizer).save_pretrained(out_dir)


@register("xclip")
def build_xclip(out_dir: Path) -> None:
    """A 2-layer X-CLIP taking 8 frames, with the real CLIP tokenizer and a CLIP image processor.

    transformers' `XCLIPProcessor` routes frames through its image processor, so no video processor (and no
    torchvision) is needed: `AutoProcessor.from_pretrained(dir)` loads it.
    """
    from transformers import XCLIPConfig, XCLIPModel, XCLIPProcessor

    tokenizer = _save_clip_tokenizer(out_dir)
    text_config = _tiny_encoder(vocab_size=len(tokenizer), max_position_embeddings=CLIP_TEXT_LENGTH)
    text_config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = XCLIPConfig(
        text_config=text_config,
        vision_config=_tiny_encoder(
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            num_frames=XCLIP_NUM_FRAMES,
            # The multi-frame integration transformer runs on projected frame features.
            mit_hidden_size=PROJECTION,
            mit_intermediate_size=2 * PROJECTION,
            mit_num_attention_heads=2,
        ),
        projection_dim=PROJECTION,
        prompt_num_attention_heads=2,
    )
    torch.manual_seed(SEED)  # the same weights on every machine: cached embeddings and test outputs agree
    XCLIPModel(config).eval().save_pretrained(out_dir)
    XCLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tokenizer).save_pretrained(out_dir)


def _train_siglip_tokenizer():
    """A Unigram stand-in for SigLIP's SentencePiece tokenizer, trained on the CLIP vocabulary's word list."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    vocab, _ = _clip_vocab_and_merges()
    words = [token[: -len("</w>")] for token in vocab if token.endswith("</w>") and token[:-4].isalpha()]
    # Single characters too, so that digits and punctuation get pieces of their own instead of <unk>.
    words = words[:SIGLIP_TRAINING_WORDS] + list(string.ascii_lowercase + string.digits + string.punctuation)
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=SIGLIP_VOCAB_SIZE,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    backend.train_from_iterator(words, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", backend.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="</s>",
        pad_token="</s>",  # SigLIP pads with its end-of-sequence token
        model_max_length=SIGLIP_TEXT_LENGTH,
        # Like SiglipTokenizer: SigLIP's text tower was trained without an attention mask.
        model_input_names=["input_ids"],
    )


@register("siglip")
def build_siglip(out_dir: Path) -> None:
    """A 2-layer SigLIP with a trained Unigram stand-in tokenizer (see the module docstring)."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor, SiglipTextConfig

    tokenizer = _train_siglip_tokenizer()
    config = SiglipConfig(
        text_config=SiglipTextConfig(
            **_tiny_encoder(
                vocab_size=len(tokenizer),
                max_position_embeddings=SIGLIP_TEXT_LENGTH,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.eos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                projection_size=HIDDEN,
            )
        ),
        vision_config=_tiny_encoder(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
    )
    torch.manual_seed(SEED)  # the same weights on every machine: cached embeddings and test outputs agree
    SiglipModel(config).eval().save_pretrained(out_dir)
    image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
