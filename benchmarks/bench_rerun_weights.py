"""What a cached re-run no longer spends on a model's weights: building a VLM embedder as a re-run with every
embedding cached builds it (`load_encoder`: configuration, tokenizer, image processor; the weights deferred), against
building it and reading its weights, as every run did before `DeferredWeights`.

    nice -n 5 python benchmarks/bench_rerun_weights.py [--repeats 3] [--workdir /tmp/lovr-bench-weights]

The model: a Qwen2-VL of Qwen2-VL-2B's sizes (GME-2B's and VLM2Vec's backbone: 28 layers of 1536, a 32-block
vision tower of 1280, a 151,936-token vocabulary; 2.2 billion parameters, 4.4 GB of bfloat16 safetensors) with
RANDOM weights (no weights can be downloaded here), built once in the work folder with the tiny Qwen2-VL's
tokenizer and processor files (`lovr_standins`). Load times depend on the sizes, not the values. Each case runs
in a process of its own, on CPU, with the weights in the page cache after the first run (a cold read from disk
takes longer, a GPU adds the copy to it), in two dtypes: the default (`auto`: float32 on CPU, the weights converted
as they are read) and bfloat16 (read as saved). The toolkit's imports are timed apart, while the transformers modules
`load_encoder` imports as it goes (about 1.5 s, on both sides) are in the seconds. Figures only: no target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # lovr_standins, which is not installed
from targets import report

# Qwen2-VL-2B-Instruct's config.json: the text model, then the vision tower.
TEXT = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
            num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768)  # fmt: skip
VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4)
# The dtypes loaded: the default (float32 on CPU: the saved bfloat16 weights are converted as they are read) and
# the one they are saved in (read as they lie).
DTYPES = {"auto": "auto (float32 on CPU)", "bfloat16": "bfloat16"}


def build(folder: Path) -> None:
    """The random-weight Qwen2-VL-2B-sized model in `folder`, unless it is there."""
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    from lovr_common.provenance import RANDOM_WEIGHTS_MARKER
    from lovr_standins.tiny_models import tiny_model_path

    if (folder / "model.safetensors.index.json").exists() or (folder / "model.safetensors").exists():
        return
    tiny = tiny_model_path("qwen2-vl", folder.parent / "tiny")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(tiny, folder, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    config = AutoConfig.from_pretrained(tiny)
    for name, value in TEXT.items():
        setattr(config.text_config, name, value)
    config.text_config.rope_parameters = {**config.text_config.rope_parameters, "mrope_section": [16, 24, 24]}
    config.text_config.layer_types = ["full_attention"] * TEXT["num_hidden_layers"]
    for name, value in VISION.items():
        setattr(config.vision_config, name, value)
    config.tie_word_embeddings = True
    with torch.device("meta"):  # built without memory, then given it in bfloat16 and filled with noise
        model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():  # the buffers (rotary frequencies) are not saved: loading makes them
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.02)
    model.tie_weights()
    model.save_pretrained(folder)
    (folder / RANDOM_WEIGHTS_MARKER).write_text("random weights: every output is meaningless\n")


def run_case(name: str, folder: Path, dtype: str) -> dict:
    """One case in this process: seconds (imports apart) and the parameters of the model read, if any."""
    started = time.perf_counter()
    from lovr_common.encoders import EncoderConfig, load_encoder

    imports = time.perf_counter() - started
    started = time.perf_counter()
    encoder = load_encoder(EncoderConfig(model=str(folder), family="vlm-embedder", dtype=dtype), need="visual")
    parameters = 0
    if name == "read":
        parameters = sum(p.numel() for p in encoder.model.weights().parameters())
    return {"seconds": time.perf_counter() - started, "imports": imports, "parameters": parameters}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each case, taking turns; the fastest counts.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lovr-bench-weights"))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.workdir / "qwen2-vl-2b-random"
    if args.case:
        print(json.dumps(run_case(args.case, folder, args.dtype)))
        return 0
    started = time.perf_counter()
    build(folder)
    print(f"model folder ready in {time.perf_counter() - started:.1f} s: {folder}", flush=True)
    cases = [(case, dtype) for dtype in DTYPES for case in ("read", "deferred")]
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.repeats):
        for case, dtype in cases:
            command = [sys.executable, __file__, "--case", case, "--dtype", dtype, "--workdir", str(args.workdir)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            if (case, dtype) not in best or result["seconds"] < best[case, dtype]["seconds"]:
                best[case, dtype] = result
    parameters = best["read", "bfloat16"]["parameters"]
    print(f"\nQwen2-VL-2B-sized VLM embedder, RANDOM weights ({parameters / 1e9:.2f} B parameters saved in bfloat16), "
          f"CPU, warm page cache, fastest of {args.repeats}\n")  # fmt: skip
    print("| `--dtype` | encoder built | seconds | imports, s | ratio |")
    print("|---|---|---|---|---|")
    for case, dtype in cases:
        label = {"read": "with its weights read (every run before)", "deferred": "weights deferred (a cached re-run)"}
        seconds, read = best[case, dtype]["seconds"], best["read", dtype]["seconds"]
        print(f"| {DTYPES[dtype]} | {label[case]} | {seconds:.2f} | {best[case, dtype]['imports']:.2f} | "
              f"{seconds / read:.2f}x |")  # fmt: skip
    return report([])


if __name__ == "__main__":
    sys.exit(main())
