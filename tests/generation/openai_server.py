"""A real OpenAI-compatible chat-completions server on 127.0.0.1, serving a local model, for the endpoint tests.

    python tests/generation/openai_server.py --model .cache/tiny-models/vlm [--port 0] [--fail-num-images 2]

It prints `listening on http://127.0.0.1:PORT/v1` once ready. `POST /v1/chat/completions` takes the OpenAI
request format (text parts and base64 `image_url` data URLs) and vLLM's `video_url` parts (a
`data:video/jpeg;base64,F1,F2,...` URL: the comma-separated JPEG frames, stacked, so all of one size; the frames get
vLLM's default timing, frame k at k / 2 s) and answers with the model's text. Faults for the
reliability tests, chosen per request:

- a user text containing `[fail-500]` is answered with HTTP 500; `[hang]` is answered after `--hang-seconds`;
  `[flaky-N]` is answered with HTTP 500 the first N times that exact request arrives;
- `--fail-num-images K` answers HTTP 500 to every request holding exactly K images, `--hang-num-images K` hangs.

`GET /stats` returns how many chat requests arrived, in total, per number of images, and per number of frames of
their video (`video_frames=K`).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from generation.backends import ChatRequest, ClipVideo, GenerationParams, TransformersBackend

VLLM_JPEG_VIDEO_FPS = 2.0  # what vLLM's media/video.py gave a data:video/jpeg video's frames (frame k at k / fps)

FLAKY = re.compile(r"\[flaky-(\d+)\]")


def parse_request(payload: dict) -> tuple[ChatRequest, GenerationParams]:
    """The OpenAI chat request as one `ChatRequest` and its sampling settings."""
    system, user, images, video = None, "", [], None
    for message in payload["messages"]:
        content = message["content"]
        if message["role"] == "system":
            system = content if isinstance(content, str) else " ".join(p["text"] for p in content)
            continue
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "text":
                user += part["text"]
            elif part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
            elif part["type"] == "video_url":
                video = _jpeg_video(part["video_url"]["url"])
            else:
                raise ValueError(f"unknown content part type {part['type']!r}")
    temperature = float(payload.get("temperature", 1.0))
    params = GenerationParams(
        temperature=temperature or 1.0,
        top_p=float(payload.get("top_p", 1.0)),
        repetition_penalty=float(payload.get("repetition_penalty", 1.0)),
        max_new_tokens=int(payload.get("max_tokens", 16)),
        seed=int(payload.get("seed", 0)),
        do_sample=temperature > 0,
    )
    return ChatRequest(user=user, system=system, images=images, video=video), params


def _jpeg_video(url: str) -> ClipVideo:
    """vLLM's video data URL: split at the first comma, then one base64 JPEG per comma-separated part, stacked."""
    header, data = url.split(",", 1)
    if header != "data:video/jpeg;base64":
        raise ValueError(f"video_url {header!r}: expected data:video/jpeg;base64")
    frames = np.stack(
        [np.asarray(Image.open(io.BytesIO(base64.b64decode(f))).convert("RGB")) for f in data.split(",")]
    )
    n = len(frames)
    return ClipVideo(list(frames), fps=VLLM_JPEG_VIDEO_FPS, frames_indices=list(range(n)), total_num_frames=n)


def make_handler(backend: TransformersBackend, options: argparse.Namespace):
    lock = threading.Lock()  # one generation at a time: the model is not thread-safe
    seen: Counter[str] = Counter()
    stats: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output quiet
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (timeout tests)
                pass

        def do_GET(self):
            if self.path != "/stats":
                return self._reply(404, {"error": {"message": f"no route {self.path}"}})
            self._reply(200, dict(stats))

        def do_POST(self):
            if self.path != "/v1/chat/completions":
                return self._reply(404, {"error": {"message": f"no route {self.path}"}})
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                request, params = parse_request(json.loads(raw))
            except (ValueError, KeyError) as err:  # as vLLM answers a request it cannot read
                return self._reply(400, {"error": {"message": f"{type(err).__name__}: {err}"}})
            n_images = len(request.images)
            with lock:
                stats["total"] += 1
                stats[f"images={n_images}"] += 1
                if request.video is not None:
                    stats[f"video_frames={len(request.video.frames)}"] += 1
                seen[raw] += 1
                times_seen = seen[raw]
            flaky = FLAKY.search(request.user)
            if "[hang]" in request.user or n_images == options.hang_num_images:
                time.sleep(options.hang_seconds)
            if (
                "[fail-500]" in request.user
                or n_images == options.fail_num_images
                or (flaky and times_seen <= int(flaky.group(1)))
            ):
                return self._reply(500, {"error": {"message": "simulated server error"}})
            with lock:
                [result] = backend.generate([request], params)
            if not result.ok:
                return self._reply(400, {"error": {"message": result.error}})
            message = {"role": "assistant", "content": result.text}
            self._reply(200, {"object": "chat.completion", "model": backend.model, "choices": [{"message": message}]})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--fail-num-images", type=int, default=None)
    parser.add_argument("--hang-num-images", type=int, default=None)
    options = parser.parse_args()
    backend = TransformersBackend(options.model)
    server = ThreadingHTTPServer(("127.0.0.1", options.port), make_handler(backend, options))
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
