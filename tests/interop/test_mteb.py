"""The LoVR tasks run by mteb's own runner (`mteb.evaluate`) on the tiny release, with the tiny random-weight CLIP
behind mteb's encoder protocol: its scores are MEANINGLESS; what is checked is that they are mteb's numbers for
the tasks' queries and corpus, equal to ours on the same embeddings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lovr_metric import retrieval_metrics
from lovr_metric.interop import load_rows, lovr_tasks

from .conftest import FRAMES

mteb = pytest.importorskip("mteb", reason="mteb is not installed: pip install 'lovr-toolkit[mteb]'")

from mteb.models.abs_encoder import AbsEncoder  # noqa: E402
from mteb.models.model_meta import ModelMeta  # noqa: E402

from lovr_metric.interop.mteb_tasks import TASK_NAMES, lovr_mteb_tasks  # noqa: E402


class TinyClipForMteb(AbsEncoder):
    """mteb's encoder protocol around the tiny CLIP: texts as text embeddings, a video (a torchcodec decoder) as the
    normalised mean of `FRAMES` evenly spread frames. Random weights: meaningless."""

    def __init__(self, tiny_clip):
        self.clip = tiny_clip
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name="lovr-standins/tiny-clip-RANDOM-WEIGHTS",
            revision="0",
            release_date=None,
            languages=None,
            n_parameters=None,
            memory_usage_mb=None,
            max_tokens=77,
            embed_dim=None,
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name="cosine",
            use_instructions=False,
            training_datasets=None,
            modalities=["text", "video"],
        )

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        out = []
        for batch in inputs:
            if "video" in batch:
                out += [self.video(decoder) for decoder in batch["video"]]
            else:
                out += list(self.clip.texts(batch["text"]))
        return torch.stack(out).numpy()

    def video(self, decoder) -> torch.Tensor:
        count = decoder.metadata.num_frames
        indices = sorted({min(count - 1, int((i + 0.5) * count / FRAMES)) for i in range(FRAMES)})
        frames = decoder.get_frames_at(indices).data.permute(0, 2, 3, 1).numpy()  # (T, C, H, W) -> (T, H, W, C)
        return self.clip.frames(list(frames))


@pytest.fixture(scope="module")
def mteb_results(release_export, release, tiny_clip):
    tasks = lovr_mteb_tasks(release_export, video_root=release)
    model = TinyClipForMteb(tiny_clip)
    result = mteb.evaluate(model, tasks, cache=None, encode_kwargs={"batch_size": 4}, show_progress_bar=False)
    assert [r.dataset_revision for r in result.task_results] == [t.metadata.revision for t in tasks]
    return {r.task_name: r.scores["test"][0] for r in result.task_results}, tasks, model


def test_every_task_runs_in_mteb(mteb_results):
    scores, tasks, _ = mteb_results
    assert (
        list(scores)
        == [task.metadata.name for task in tasks]
        == ["LoVRText2ClipRetrieval", "LoVRText2VideoRetrieval", "LoVRTheme2ClipRetrieval", "LoVRClip2VideoRetrieval"]
    )
    assert all(0 <= s["ndcg_at_10"] <= 1 and s["main_score"] == s["ndcg_at_10"] for s in scores.values())
    assert [task.metadata.category for task in tasks] == ["t2v", "t2v", "t2v", "v2v"]
    assert len({task.metadata.dataset["revision"] for task in tasks}) == 4


def test_missing_files_are_left_out(mteb_results):
    _, tasks, _ = mteb_results
    tasks[0].load_data()  # mteb unloads each task once evaluated
    text_to_clip = tasks[0].dataset["default"]["test"]
    # -dash-Scene-002's file is missing: out of the corpus, and its caption out of the queries
    assert sorted(text_to_clip["corpus"]["id"]) == [
        "-dash-Scene-001",
        "bikes-Scene-001",
        "bikes-Scene-002",
        "bikes-Scene-003",
    ]
    assert sorted(text_to_clip["queries"]["id"]) == ["-dash-Scene-001", "bikes-Scene-001", "bikes-Scene-002"]


def test_mteb_hit_rate_is_our_pass_at_k_on_the_same_embeddings(mteb_results, release_export, release, tiny_clip):
    scores, _, model = mteb_results
    task = next(t for t in lovr_tasks(load_rows(release_export)) if t.name == "LoVR-T2C")
    corpus = [row for row in task.corpus if (release / row["video"]).is_file()]
    queries = [q for q in task.queries if task.relevant[q["id"]][0] in {row["id"] for row in corpus}]
    from torchcodec.decoders import VideoDecoder

    videos = torch.stack([model.video(VideoDecoder(str(release / row["video"]))) for row in corpus])
    texts = tiny_clip.texts([q["text"] for q in queries])
    ours = retrieval_metrics(texts, [q["id"] for q in queries], videos, [row["id"] for row in corpus], k_values=(1, 3))
    mteb_scores = scores["LoVRText2ClipRetrieval"]
    assert [mteb_scores["hit_rate_at_1"], mteb_scores["hit_rate_at_3"]] == pytest.approx(
        [ours["text_to_video_pass@1"], ours["text_to_video_pass@3"]],
        abs=1e-5,  # mteb rounds to 5 decimals
    )
    assert mteb_scores["mrr_at_10"] == pytest.approx(ours["text_to_video_mrr"], abs=1e-5)


def test_names_and_bad_input(release_export, release, tmp_path):
    (task,) = lovr_mteb_tasks(release_export, video_root=release, names=["LoVR-TH"])
    assert task.metadata.name == "LoVRTheme2ClipRetrieval" and set(TASK_NAMES) >= {"LoVR-TH"}
    with pytest.raises(ValueError, match="unknown"):
        lovr_mteb_tasks(release_export, video_root=release, names=["LoVR-X"])
    with pytest.raises(ValueError, match="video_root"):
        lovr_mteb_tasks(release_export, video_root=tmp_path / "absent")


def test_the_toolkit_works_without_mteb(release_export, release):
    """In a fresh interpreter where `import mteb` fails: the interop package imports, the mteb tasks say what to
    install."""
    code = (
        "import sys; sys.modules['mteb'] = None\n"
        "import lovr_metric.interop\n"
        "from lovr_metric.interop.mteb_tasks import lovr_mteb_tasks\n"
        "try:\n"
        f"    lovr_mteb_tasks({str(release_export)!r}, {str(release)!r})\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'lovr-toolkit[mteb]'" in done.stdout
