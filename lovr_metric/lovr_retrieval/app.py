"""The LoVR Retrieval Space: paste ids and embeddings as JSON, or upload embedding files, and read the metrics.

    python app.py    # then open http://127.0.0.1:7860

The module is loaded by its file path: on a Space the folder is not named after the module, and
`evaluate.load("lovr_retrieval")` would look for a Hub repo of that name instead.
"""

import json
from pathlib import Path

import evaluate
import gradio as gr
import numpy as np

HERE = Path(__file__).resolve().parent
DIRECTIONS = ("text_to_video", "video_to_text")
# The example of the card: text 1 ranks video "b" above its own video "c", so text_to_video pass@1 is 1/2.
EXAMPLE = {
    "text_embeddings": [[1.0, 0.1], [0.0, 1.0]],
    "text_ids": ["a", "c"],
    "video_embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
    "video_ids": ["a", "b", "c"],
    "k_values": [1, 2],
}
EMBEDDING_SUFFIXES = (".npy", ".safetensors", ".pt")

metric = evaluate.load(str(HERE / "lovr_retrieval.py"))


def load_embeddings(path: str, name: str) -> np.ndarray:
    """A 2-D float matrix from a `.npy`, `.safetensors` or `.pt` file holding one tensor (or one named `name`)."""
    suffix = Path(path).suffix
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(path)
    elif suffix == ".pt":
        import torch

        loaded = torch.load(path, map_location="cpu", weights_only=True)
        tensors = loaded if isinstance(loaded, dict) else {name: loaded}
        tensors = {key: value.float().numpy() for key, value in tensors.items() if isinstance(value, torch.Tensor)}
    else:
        raise gr.Error(f"{Path(path).name}: expected one of {', '.join(EMBEDDING_SUFFIXES)}, got {suffix!r}")
    if name in tensors:
        return tensors[name]
    if len(tensors) != 1:
        raise gr.Error(f"{Path(path).name} holds tensors {sorted(tensors)}: expected one, or one named {name!r}")
    return next(iter(tensors.values()))


def metrics_table(results: dict) -> list[list]:
    """One row per metric, one column per direction."""
    names = sorted({key.split("_", 3)[-1] for key in results if key.startswith(DIRECTIONS)}, key=_metric_order)
    return [[name, *(results.get(f"{d}_{name}") for d in DIRECTIONS)] for name in names]


def _metric_order(name: str) -> tuple:
    family, _, k = name.partition("@")
    order = ["pass", "recall", "ndcg", "mrr", "median_rank", "mean_rank", "num_queries"]
    return (order.index(family) if family in order else len(order), int(k) if k.isdigit() else 0)


def compute(inputs_json: str, text_file: str | None, video_file: str | None) -> tuple[list[list], str]:
    try:
        inputs = json.loads(inputs_json or "{}")
    except json.JSONDecodeError as err:
        raise gr.Error(f"inputs: not valid JSON ({err})") from err
    if not isinstance(inputs, dict):
        raise gr.Error(f"inputs: expected a JSON object with {sorted(EXAMPLE)}, got {type(inputs).__name__}")
    if text_file:
        inputs["text_embeddings"] = load_embeddings(text_file, "text_embeddings")
    if video_file:
        inputs["video_embeddings"] = load_embeddings(video_file, "video_embeddings")
    missing = [key for key in ("text_embeddings", "text_ids", "video_embeddings", "video_ids") if key not in inputs]
    if missing:
        raise gr.Error(f"inputs: missing {missing} (paste them in the JSON or upload the embedding files)")
    try:
        results = metric.compute(**{key: value for key, value in inputs.items() if key in EXAMPLE})
    except (ValueError, TypeError) as err:
        raise gr.Error(str(err)) from err
    skipped = results.get("num_skipped_texts", 0)
    return metrics_table(
        results
    ), f"{len(inputs['text_ids'])} texts, {len(inputs['video_ids'])} videos, {skipped} skipped"


with gr.Blocks(title="LoVR Retrieval") as demo:
    gr.Markdown((HERE / "README.md").read_text(encoding="utf-8").split("---", 2)[-1].split("## How to Use")[0])
    example = "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in EXAMPLE.items()) + "\n}"
    inputs_box = gr.Code(example, language="json", label="inputs (JSON)")
    with gr.Row():
        text_file = gr.File(label="text embeddings (.npy, .safetensors, .pt)", file_types=list(EMBEDDING_SUFFIXES))
        video_file = gr.File(label="video embeddings (.npy, .safetensors, .pt)", file_types=list(EMBEDDING_SUFFIXES))
    button = gr.Button("Compute", variant="primary")
    table = gr.Dataframe(headers=["metric", *DIRECTIONS], label="metrics")
    summary = gr.Markdown()
    button.click(compute, [inputs_box, text_file, video_file], [table, summary], api_name="compute")

if __name__ == "__main__":
    demo.launch()
