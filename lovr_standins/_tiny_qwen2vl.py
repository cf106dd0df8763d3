"""Tiny Qwen2-VL recipes for `lovr_standins.tiny_models`: the architecture of GME, VLM2Vec (Qwen2-VL backbone) and,
through Qwen2.5-VL / Qwen3-VL, of Qwen3-VL-Embedding.

    python -m lovr_standins.tiny_models qwen2-vl qwen2-vl-st

- "qwen2-vl": a 2-layer `Qwen2VLForConditionalGeneration` (a 2-block vision tower of 14 px patches merged 2x2)
  with a Qwen-style byte-level BPE tokenizer (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, `<|vision_start|>`,
  `<|vision_end|>`, `<|image_pad|>`, `<|video_pad|>`), Qwen2-VL's chat template, the PIL image processor
  (`Qwen2VLImageProcessorPil`, 28x28 to 56x56 pixels: 1 to 4 merged image tokens) and the configuration files of
  `Qwen2VLVideoProcessor` and `Qwen2VLProcessor`, written as JSON: transformers' video processors cannot be built
  without torchvision, so on a CPU machine `AutoProcessor` fails on this folder exactly as on the real
  checkpoints, while the model, the tokenizer and the image processor load.
- "qwen2-vl-st": the same folder saved for sentence-transformers (>= 5.4) as a multimodal embedder the way
  Qwen3-VL-Embedding ships (`modules.json`: a feature-extraction `Transformer` over the chat-template message
  format, `lasttoken` pooling, `Normalize`; its prompts in `config_sentence_transformers.json`). sentence-transformers
  builds the processor with `AutoProcessor`, so it loads only where torchvision is installed.

The weights are random: every embedding made with them is meaningless.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from lovr_standins._tiny_vision import _clip_vocab_and_merges
from lovr_standins.tiny_models import register

VOCAB_SIZE = 2048
HIDDEN = 32
HEADS = 4
PATCH = 14
MERGE = 2
TEMPORAL_PATCH = 2
MIN_PIXELS = (PATCH * MERGE) ** 2  # 28x28: one merged token
MAX_PIXELS = 4 * MIN_PIXELS  # 56x56: four
SEED = 0
TEXT_INIT_RANGE = 0.2  # as _tiny_vlm: at 0.02 a random model barely reacts to its input
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]
# Qwen2-VL-Instruct's chat template (its chat_template.json), image and video parts as vision pads.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What the Qwen3-VL-Embedding sentence-transformers integration ships (README usage): retrieval prompts.
ST_PROMPTS = {"query": "Represent the user's input.", "document": "Represent the user's input."}


@cache
def _tokenizer_json() -> str:
    """A byte-level BPE (Qwen's algorithm) trained on the words of the real CLIP vocabulary, with Qwen2-VL's special
    tokens, as `tokenizer.json` text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    vocab, _ = _clip_vocab_and_merges()
    words = [token[: -len("</w>")] for token in vocab if token.endswith("</w>") and token[:-4].isalpha()]
    lines = (" ".join(words[i : i + 32]) for i in range(0, len(words), 32))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer.to_str()


def _tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": IMAGE_PAD, "video_token": VIDEO_PAD},
    )


def _processor_configs(tokenizer) -> dict[str, dict]:
    """The JSON files of Qwen2-VL's image processor (PIL backend), video processor and processor."""
    shared = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 1 / 255,
        "patch_size": PATCH,
        "merge_size": MERGE,
        "temporal_patch_size": TEMPORAL_PATCH,
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }
    return {
        "preprocessor_config.json": {**shared, "image_processor_type": "Qwen2VLImageProcessorPil"},
        "video_preprocessor_config.json": {
            **shared,
            "video_processor_type": "Qwen2VLVideoProcessor",
            "do_sample_frames": False,
            "fps": 2.0,
            "min_frames": 4,
            "max_frames": 768,
        },
        "processor_config.json": {"processor_class": "Qwen2VLProcessor"},
        "chat_template.json": {"chat_template": CHAT_TEMPLATE},
    }


@register("qwen2-vl")
def build_qwen2_vl(out_dir: Path) -> None:
    """A 2-layer Qwen2-VL (hidden size 32) saved with its tokenizer and processor files."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = _tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    head_half = HIDDEN // HEADS // 2
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            initializer_range=TEXT_INIT_RANGE,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [head_half - 2, 1, 1]},
            bos_token_id=ids[ENDOFTEXT],
            eos_token_id=ids[IM_END],
            pad_token_id=ids[ENDOFTEXT],
        ),
        vision_config=dict(
            depth=2,
            embed_dim=HIDDEN,
            hidden_size=HIDDEN,
            num_heads=2,
            mlp_ratio=2,
            patch_size=PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL_PATCH,
        ),
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
    )
    torch.manual_seed(SEED)
    model = Qwen2VLForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.eos_token_id, generation.pad_token_id = ids[IM_END], ids[ENDOFTEXT]
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    for name, content in _processor_configs(tokenizer).items():
        (out_dir / name).write_text(json.dumps(content, indent=2) + "\n")


@register("qwen2-vl-st")
def build_qwen2_vl_st(out_dir: Path) -> None:
    """The tiny Qwen2-VL as a sentence-transformers multimodal model (Qwen3-VL-Embedding's layout)."""
    import sentence_transformers

    build_qwen2_vl(out_dir)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"},
    ]  # a table: one module per row, as modules.json lists them # fmt: skip
    forward = {"method": "forward", "method_output_name": "last_hidden_state"}
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "modality_config": {
                "text": forward,
                "image": forward,
                "video": forward,
                "message": {**forward, "format": "structured"},
            },
            "module_output_name": "token_embeddings",
            "processing_kwargs": {"chat_template": {"add_generation_prompt": True}},
            "max_seq_length": 4096,
        },
        "config_sentence_transformers.json": {
            "__version__": {"sentence_transformers": sentence_transformers.__version__},
            "prompts": ST_PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": {"embedding_dimension": HIDDEN, "pooling_mode": "lasttoken", "include_prompt": True},
        "2_Normalize/config.json": {},
    }
    for name, content in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(json.dumps(content, indent=2) + "\n")
