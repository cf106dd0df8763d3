"""`evaluate` module for LoVR text <-> video retrieval: validates its inputs and delegates to `retrieval.py` beside it.

    python -c "import evaluate, lovr_metric; print(evaluate.load(lovr_metric.lovr_retrieval_path()))"

`evaluate` writes every declared input feature to an Arrow table before `_compute` sees it, which costs seconds
for a 40,804 x 512 float matrix. Only the gallery ids, a flat list of strings, are declared; the embedding
matrices and the per-text relevant ids travel as keyword arguments, which `EvaluationModule.compute` forwards to
`_compute` untouched. Call `compute` once with every input: `add_batch` would only stream gallery ids.

This folder is the whole metric, as the Space holds it: `evaluate.load("<org>/lovr_retrieval")` downloads this file
and the siblings it imports relatively at the start of a line (`retrieval.py`, and `_retrieval_inputs.py`,
`_tiled_ranks.py` and `_tiled_top.py`, which it imports too so that the loader fetches them for the others: it
reads this file's imports only); `lovr_metric` re-exports the same maths.
"""

import datasets
import evaluate

# The maths runs on torch: imported here, where evaluate's loader sees it, so that a user without torch is told to
# install it before anything runs (the loader reads only this file's imports, and no comment may end the line).
import torch

from ._retrieval_inputs import from_nested_lists

# Imported for the loader only (see the module docstring): retrieval.py and _tiled_ranks.py need these beside them.
from ._tiled_ranks import pair_ranks
from ._tiled_top import RunningTop
from .retrieval import retrieval_metrics

_CITATION = """\
@article{lovr2025,
  title={LoVR: A Benchmark for Long Video Retrieval in Multimodal Contexts},
  journal={arXiv preprint arXiv:2505.13928},
  year={2025}
}
"""

_DESCRIPTION = """\
Text <-> video retrieval metrics of the LoVR benchmark. Every text ranks all videos (text_to_video) and every
video with at least one relevant text ranks all texts (video_to_text) by cosine similarity, with a stable tie
rule (a tie goes to the item earlier in the gallery). Reports pass@k (hit rate), recall@k, MRR, nDCG@10 and the
median and mean rank of the first relevant item, computed in one chunked pass without the full score matrix.
"""

_KWARGS_DESCRIPTION = """
Args:
    text_embeddings (`np.ndarray` or `torch.Tensor` of shape `(T, d)`): text embeddings, finite values of any
        float dtype, no row all zero.
    text_ids (`list`): for each text the id of its relevant video, or a list of ids when several are relevant.
    video_embeddings (`np.ndarray` or `torch.Tensor` of shape `(V, d)`): the gallery, under the same rules; T and V
        may differ.
    video_ids (`list[str]`): V unique ids, one per row of `video_embeddings`.
    k_values (`list[int]`, defaults to `[1, 5, 10]`): cut-offs for pass@k and recall@k.
    chunk_size (`int`, *optional*): texts per score block.
    max_block_bytes (`int`, *optional*): memory budget of one score block.
    skip_missing (`bool`, defaults to `False`): skip texts whose ids are not in `video_ids` instead of raising.
    device (`str`, *optional*): where to rank; by default where `text_embeddings` lives.
Returns:
    For `d` in `text_to_video`, `video_to_text`: `{d}_pass@{k}`, `{d}_recall@{k}`, `{d}_mrr`, `{d}_ndcg@10`,
    `{d}_median_rank`, `{d}_mean_rank`, `{d}_num_queries`; and `num_skipped_texts`.
Examples:
    Text 0 ranks video "a" first; text 1 ranks "b" (1.0) above its video "c" (0.71), so c has rank 2:
    pass@1 = 1/2, MRR = (1 + 1/2) / 2 = 0.75, median rank = 1.5. Video "c" also ranks text 0 (0.77) above
    text 1 (0.71).

    >>> import evaluate
    >>> from lovr_metric import lovr_retrieval_path
    >>> metric = evaluate.load(lovr_retrieval_path())
    >>> results = metric.compute(
    ...     text_embeddings=[[1.0, 0.1], [0.0, 1.0]],
    ...     text_ids=["a", "c"],
    ...     video_embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
    ...     video_ids=["a", "b", "c"],
    ...     k_values=[1, 2],
    ... )
    >>> results["text_to_video_pass@1"], results["text_to_video_mrr"], results["text_to_video_median_rank"]
    (0.5, 0.75, 1.5)
    >>> results["video_to_text_pass@1"], results["video_to_text_num_queries"]
    (0.5, 2)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LovrRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"video_ids": datasets.Value("string")}),
            homepage="https://arxiv.org/abs/2505.13928",
        )

    def _compute(
        self,
        video_ids,
        text_embeddings=None,
        text_ids=None,
        video_embeddings=None,
        k_values=(1, 5, 10),
        chunk_size=None,
        max_block_bytes=None,
        skip_missing=False,
        device=None,
    ):
        missing = [
            name
            for name, value in [
                ("text_embeddings", text_embeddings),
                ("text_ids", text_ids),
                ("video_embeddings", video_embeddings),
            ]
            if value is None
        ]
        if missing:
            raise ValueError(f"lovr_retrieval needs {missing} as keyword arguments of `compute`, but got None.")
        return retrieval_metrics(
            from_nested_lists(text_embeddings),
            text_ids,
            from_nested_lists(video_embeddings),
            video_ids,
            k_values=k_values,
            chunk_size=chunk_size,
            max_block_bytes=max_block_bytes,
            skip_missing=skip_missing,
            device=device,
        )
