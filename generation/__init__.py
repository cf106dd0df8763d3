"""The LoVR data-construction pipeline: one module per stage, each run with `accelerate launch -m generation.<stage>`
(or `python -m generation.<stage>` for one process).

    segment  long videos -> W/segments.jsonl      (scene cuts, clips as time ranges)
    caption  segments    -> W/captions.jsonl      (VLM clip captions)
    refine   captions    -> scored captions, W/review.jsonl (human queue)
    review   human edits -> merged back
    fuse     captions    -> W/videos.jsonl        (full-video captions)
    run      every stage in order, skipping what is done
"""
