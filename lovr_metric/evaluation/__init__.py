"""The LoVR evaluation harness: any model's embeddings of a LoVR dataset, ranked with the metric maths of
`lovr_metric.lovr_retrieval` (`python -m lovr_metric evaluate`). From the command line down:

    runner.py    `EvaluateConfig` and `evaluate_model`: plan, embed, rank, write
    protocol.py  the LoVR tasks (`Task`, `LOVR_TASKS`), `QUERY_SPLIT`, `LOVR_FRAME_INTERVAL`
    jobs.py      dataset rows to queries, galleries and decode jobs (`plan`, `EvalData`)
    registry.py  the paper's baselines and their settings (`get_baseline`)
    encoders.py  transformers / sentence-transformers models, or adapters, as text, frame and video encoders
    frames.py    one decode pass per video file, frames batched through an encoder (`embed_job`)
    cache.py     the on-disk embedding cache, sharded per process (`EmbeddingCache`)
    embed.py     filling the caches, each process its share, and reading them back (`Embedded`)
    ranking.py   each task's metrics, or why it has none (`rank_tasks`, `NoMetricError`)
    outputs.py   results.json and the files written from it
    report.py    results.md, pass_at_k.png and the printed summary of what was left out
"""
