"""The LoVR evaluation harness: any model's embeddings of a LoVR dataset, ranked with the metric maths of
`lovr_metric.lovr_retrieval` (`python -m lovr_metric evaluate | compare | leaderboard`). The encoders, shared with
`generation`'s scorer, live in `lovr_common` (`encoders.py`, `image_processors.py`, `long_text.py`). From the command
line down:

    runner.py            `EvaluateConfig` and `evaluate_model`: plan, embed, rank, write; `PROTOCOLS`
    tasks.py             the LoVR tasks (`Task`, `LOVR_TASKS`), `QUERY_SPLIT`, `LOVR_FRAME_INTERVAL`, incomplete runs
    protocol.py          `Protocol`: the corrected protocol, and the hooks where another one differs
    lovr_original.py     `--protocol lovr-original`: the original code's protocol, and each model's original script
    rows.py              a LoVR dataset's rows and their fingerprint (`load_rows`, `LoVRRows`)
    jobs.py              dataset rows to queries, galleries and decode jobs (`plan`, `EvalData`)
    registry.py          the paper's baselines and their settings (`get_baseline`)
    frames.py            one decode pass per video file, frames batched through an encoder (`embed_job`, `plan_frames`)
    _batches.py          those batches through the model: worker-thread preprocessing, pooling
    cache.py             the on-disk embedding cache, sharded per process (`EmbeddingCache`)
    embed.py             filling the caches, each process its share, and reading them back (`Embedded`)
    ranking.py           each task's metrics and per-query ranks, or why it has none (`rank_tasks`, `NoMetricError`)
    per_query.py         per_query.parquet: every query's relevant ranks and top ids (`DirectionRanks`)
    uncertainty.py       bootstrap intervals over queries, paired comparisons
    outputs.py           results.json and the files written from it
    report.py            results.md, pass_at_k.png and the printed summary of what was left out
    compare.py           two runs query by query: deltas, paired intervals, p-values
    leaderboard.py       several runs: leaderboard.md and leaderboard.png
"""
