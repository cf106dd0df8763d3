"""The metric Space's gradio app, running as on a Space: driven through `gradio_client`, and looked at by a headless
Chromium (Debian's `chromium`, installed by `make system-deps`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.numpy import save_file

from lovr_metric import lovr_retrieval_path, retrieval_metrics

APP = os.path.join(lovr_retrieval_path(), "app.py")
# The card's example: text 1 ranks video "b" above its own video "c", so text_to_video pass@1 is 1/2.
EXAMPLE = {
    "text_embeddings": [[1.0, 0.1], [0.0, 1.0]],
    "text_ids": ["a", "c"],
    "video_embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
    "video_ids": ["a", "b", "c"],
    "k_values": [1, 2],
}
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app started by `python app.py` from a scratch folder, as a Space starts it; stopped afterwards."""
    work = tmp_path_factory.mktemp("space")
    port = _free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_MODULES_CACHE": str(work / "modules"),
    }
    log = open(work / "app.log", "w+")
    process = subprocess.Popen([sys.executable, APP], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"the Space app did not start:\n{log.read()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _table(results: dict) -> dict:
    """The local core's results keyed as the app's cells: (metric, direction)."""
    directions = ("text_to_video", "video_to_text")
    return {
        (key.split("_", 3)[-1], direction): value
        for key, value in results.items()
        for direction in directions
        if key.startswith(direction)
    }


def _expected(k_values=(1, 2)) -> dict:
    arrays = {key: np.asarray(EXAMPLE[key], dtype=np.float32) for key in ("text_embeddings", "video_embeddings")}
    return _table(
        retrieval_metrics(
            arrays["text_embeddings"], EXAMPLE["text_ids"], arrays["video_embeddings"], EXAMPLE["video_ids"], k_values
        )
    )


def _rows(table: dict) -> dict:
    """The app's table keyed by (metric, direction)."""
    directions = table["headers"][1:]
    return {
        (row[0], direction): value
        for row in table["data"]
        for direction, value in zip(directions, row[1:], strict=True)
    }


def test_pasted_json_gives_the_local_core_numbers(client):
    table, summary = client.predict(json.dumps(EXAMPLE), None, None, api_name="/compute")
    assert _rows(table) == pytest.approx(_expected())
    assert _rows(table)["pass@1", "text_to_video"] == 0.5
    assert summary == "2 texts, 3 videos, 0 skipped"


@pytest.mark.parametrize("suffix", [".npy", ".safetensors", ".pt"])
def test_uploaded_embedding_files_replace_the_json_ones(client, tmp_path, suffix):
    ids_only = {key: EXAMPLE[key] for key in ("text_ids", "video_ids", "k_values")}
    paths = []
    for name in ("text_embeddings", "video_embeddings"):
        array = np.asarray(EXAMPLE[name], dtype=np.float32)
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(path, array)
        elif suffix == ".safetensors":
            save_file({"embeddings": array}, path)
        else:
            torch.save(torch.from_numpy(array), path)
        paths.append(handle_file(str(path)))
    table, _ = client.predict(json.dumps(ids_only), *paths, api_name="/compute")
    assert _rows(table) == pytest.approx(_expected())


@pytest.mark.parametrize(
    "inputs, message",
    [
        ("{not json", "inputs: not valid JSON"),
        (json.dumps({"text_ids": ["a"]}), "missing ['text_embeddings', 'video_embeddings', 'video_ids']"),
        (json.dumps({**EXAMPLE, "text_ids": ["a", "zzz"]}), "zzz"),
    ],
)
def test_bad_input_is_shown_as_an_error_naming_it(client, inputs, message):
    with pytest.raises(AppError, match=message.replace("[", r"\[").replace("]", r"\]")):
        client.predict(inputs, None, None, api_name="/compute")


def test_the_page_renders_in_a_headless_browser(app_url, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make system-deps` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (make system-deps installs it)")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    flags += ["--window-size=1280,1400", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", app_url], capture_output=True, text=True, timeout=120).stdout
    screenshot = tmp_path / "space.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", app_url], capture_output=True, timeout=120, check=True)
    # Rendered by gradio's frontend (not the bare HTML shell): the card text, the inputs and the button are there.
    assert "Metric Description" in dom and "Compute" in dom and "text embeddings" in dom
    assert "Connection errored out" not in dom and "Error" not in dom.split("Metric Description")[0]
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1400, 1280)
    assert pixels.std() > 10  # text and widgets, not a blank or single-colour error page
