"""The LoVR evaluation harness: any model's embeddings of a LoVR dataset, ranked with the metric maths of
`lovr_metric.lovr_retrieval` (`python -m lovr_metric evaluate | compare | leaderboard`).

`runner.py` holds `EvaluateConfig` and `evaluate_model`, which go through five steps, each a module or two:

    data in          data.py          the dataset's rows, their queries and galleries, and the decode jobs
                                      (`load_rows`, `plan`, `EvalData`)
    encoders         lovr_common.encoders (shared with `generation`'s scorer), registry.py (the paper's baselines
                                      and their settings)
    embedding        frames.py        one decode pass per video file, frames batched through an encoder
                     _batches.py      those batches through the model: worker-thread preprocessing, pooling
                     embedding.py     each process's share embedded into the on-disk cache, read back (`Embedded`)
    ranking          ranking.py       each task's metrics and per-query ranks, or why it has none (`rank_tasks`)
                     rank_cache.py    each task's ranks kept for re-runs on the same embeddings
                     uncertainty.py   bootstrap intervals over queries, paired comparisons
    outputs          outputs.py       results.json, per_query.parquet, results.md, pass_at_k.png, the summary

What is ranked and how embeddings are made frame the whole path: `tasks.py` (the LoVR tasks, the frame rule,
incomplete runs), `protocol.py` (`Protocol`: the corrected protocol and the hooks where another one differs) and
`lovr_original.py` (`--protocol lovr-original`). Two commands read finished runs: `compare.py` (two runs query by
query) and `leaderboard.py` (several runs).
"""
