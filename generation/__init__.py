"""The LoVR data-construction pipeline: one module per stage, each run with `accelerate launch -m generation.<stage>`
(or `python -m generation.<stage>` for one process).

    segment  long videos -> W/segments.jsonl      (scene cuts, clips as time ranges)
    caption  segments    -> W/captions.jsonl      (VLM clip captions)
    refine   captions    -> scored captions, W/review.jsonl (human queue)
    review   human edits -> merged back
    fuse     captions    -> W/videos.jsonl        (full-video captions)
    run      every stage in order, skipping what is done

Every stage has the shape of `generation.stage`: a typed `run(job) -> <Stage>Summary` and a thin `main(argv)`, its
items sharded and resumed by `generation.stage.run_sharded`. The run folder W (names, records, lock, failure log,
review queue) is `lovr_common.run_folder`. A per-item step that cannot give its result returns
`generation.outcome.Failed` in its place.
"""
