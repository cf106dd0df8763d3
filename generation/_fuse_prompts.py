"""The prompts of `generation.fuse` (versioned by `PROMPT_VERSION`) and the parsing of their replies: a reply that
does not have the asked shape raises `ValueError`, which `generation._llm.call_with_retries` retries."""

from __future__ import annotations

import re

from generation._llm import LlmCall

PROMPT_VERSION = "lovr-fuse-v1"
SYSTEM_PROMPT = "You are a helpful video summarizer."
REWRITE_PROMPT = (
    "The two paragraphs below describe two consecutive clips of a video. Rewrite them so that the first one leads "
    "naturally into the second. Preserve facts, add temporal transition words where they help, and remove "
    "repetitive content. Output only the two modified paragraphs separated by a newline.\n\n"
    "Paragraph 1:\n{before}\n\nParagraph 2:\n{after}"
)
LINKAGE_PROMPT = (
    "The first paragraph below ends one part of a video and the second paragraph begins the next part. Write one "
    "short paragraph (one to three sentences) that links them: what changes between the two parts and how the "
    "story moves on. Preserve facts and do not repeat the paragraphs. Output only the linking paragraph.\n\n"
    "End of the first part:\n{before}\n\nStart of the next part:\n{after}"
)
SUMMARY_PROMPT = (
    "Below is the opening sentence of every clip of a video, in order. Write one paragraph that summarizes the "
    "whole video: its setting, main events and overall style. Start with 'Overall, the video'. Output only the "
    "paragraph.\n\n{clips}"
)
# Long videos have ~90 clips: the summary reads each clip's first sentence, capped to stay within a context window.
SUMMARY_INPUT_CHARS = 12_000
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.DOTALL)


def split_paragraphs(caption: str) -> list[str]:
    """A caption's paragraphs (split at blank lines, stripped, non-empty)."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(caption.strip()) if p.strip()]


def parse_two_paragraphs(reply: str) -> tuple[str, str]:
    """The two paragraphs of a rewrite reply (separated by blank lines, or else by single newlines)."""
    for separator in (_PARAGRAPH_BREAK, re.compile(r"\n")):
        parts = [p.strip() for p in separator.split(reply.strip()) if p.strip()]
        if len(parts) == 2:
            return parts[0], parts[1]
    raise ValueError(f"expected two paragraphs separated by a newline, got {reply[:120]!r}")


def parse_paragraph(reply: str) -> str:
    """A linkage or summary reply as one paragraph (inner line breaks folded)."""
    text = " ".join(reply.split())
    if not text:
        raise ValueError("empty reply")
    return text


def first_sentence(paragraphs: list[str]) -> str:
    """The first sentence of a clip's first paragraph (the whole paragraph when it has no sentence end)."""
    match = _FIRST_SENTENCE.match(paragraphs[0])
    return match.group(1) if match else paragraphs[0]


def rewrite_call(clips: list[dict], i: int) -> LlmCall:
    """The call rewriting the paragraphs around the boundary after `clips[i]`."""
    before, after = clips[i]["paragraphs"][-1], clips[i + 1]["paragraphs"][0]
    return LlmCall(SYSTEM_PROMPT, REWRITE_PROMPT.format(before=before, after=after), parse_two_paragraphs)


def summary_call(clips: list[dict]) -> LlmCall:
    """The call summarising a video from the first sentence of each of its clips."""
    lines = [f"Clip {clip['clip_index']}: {first_sentence(clip['paragraphs'])}" for clip in clips]
    budget = SUMMARY_INPUT_CHARS // max(len(lines), 1)
    text = "\n".join(line if len(line) <= budget else line[: budget - 3] + "..." for line in lines)
    return LlmCall(SYSTEM_PROMPT, SUMMARY_PROMPT.format(clips=text), parse_paragraph)


def linkage_call(before: str, after: str) -> LlmCall:
    """The call writing the paragraph that links the paragraph `before` a cluster boundary to the one `after` it."""
    return LlmCall(SYSTEM_PROMPT, LINKAGE_PROMPT.format(before=before, after=after), parse_paragraph)
