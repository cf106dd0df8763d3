"""Tiny vision-language and causal LM recipes for `lovr_standins.tiny_models`.

    python -m lovr_standins.tiny_models vlm causal-lm

- "vlm": a 2-layer LLaVA (CLIP vision tower, Llama text model) saved with its `LlavaProcessor`, loadable with
  `AutoProcessor` + `AutoModelForImageTextToText`. LLaVA rather than Qwen2-VL: `Qwen2VLProcessor` cannot be built
  without torchvision (it requires a video processor), LLaVA's processor takes frames as a list of images through
  the PIL image processor, the path every image-input VLM shares.
- "causal-lm": a 2-layer Llama, loadable with `AutoTokenizer` + `AutoModelForCausalLM`.

Both share a real byte-level BPE tokenizer (the algorithm of Llama 3 / Qwen tokenizers) trained with `tokenizers` on
the words of the real CLIP vocabulary, so random outputs decode to word pieces, with chat special tokens and a
chat template. The weights are random: whatever the models generate is meaningless.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lovr_standins._tiny_vision import _clip_vocab_and_merges
from lovr_standins.tiny_models import register

VOCAB_SIZE = 2048
HIDDEN = 32
IMAGE_SIZE = 28
PATCH_SIZE = 14
SEED = 0
# At the usual 0.02 a random text model barely reacts to its input: captions of different clips coincide, and a
# caption moved onto another clip would go unnoticed. Larger weights make outputs depend on every frame.
TEXT_INIT_RANGE = 0.2
PAD, BOS, EOS, IMAGE = "<pad>", "<s>", "</s>", "<image>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
# Zephyr-style roles; image parts render as LLaVA's <image> placeholder, which the processor expands.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '</s>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@cache
def _tokenizer_json() -> str:
    """A byte-level BPE trained on the words of the real CLIP vocabulary, as `tokenizer.json` text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    vocab, _ = _clip_vocab_and_merges()
    words = [token[: -len("</w>")] for token in vocab if token.endswith("</w>") and token[:-4].isalpha()]
    lines = (" ".join(words[i : i + 32]) for i in range(0, len(words), 32))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS, IMAGE, SYSTEM, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer.to_str()


def _tokenizer(**extra):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        **extra,
    )


def _llama_config(tokenizer) -> dict:
    return dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=TEXT_INIT_RANGE,
    )


def _save(model, tokenizer, out_dir: Path) -> None:
    generation = model.generation_config
    generation.bos_token_id, generation.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    model.eval().save_pretrained(out_dir)


@register("vlm")
def build_vlm(out_dir: Path) -> None:
    """A 2-layer LLaVA: each frame is 28x28 pixels, 4 patches, 4 image tokens in the prompt."""
    import torch
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from lovr_standins._tiny_vision import CLIP_MEAN, CLIP_STD

    tokenizer = _tokenizer(extra_special_tokens={"image_token": IMAGE})
    config = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
        ),
        text_config=_llama_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(SEED)
    _save(LlavaForConditionalGeneration(config), tokenizer, out_dir)
    image_processor = CLIPImageProcessorPil(  # the PIL backend: the default one needs torchvision
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    ).save_pretrained(out_dir)


@register("causal-lm")
def build_causal_lm(out_dir: Path) -> None:
    """A 2-layer Llama with the tiny chat tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = _llama_config(tokenizer)
    config.pop("model_type")
    torch.manual_seed(SEED)
    _save(LlamaForCausalLM(LlamaConfig(**config)), tokenizer, out_dir)
    tokenizer.save_pretrained(out_dir)
