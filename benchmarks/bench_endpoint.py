"""The endpoint encoder against a bare concurrent HTTP loop: embeddings/s by concurrency, the same request bodies
sent to the same local embeddings server.

    nice -n 5 python benchmarks/bench_endpoint.py [--clips 160] [--latency 0.01] [--concurrency 1 4 16]

The server (`tests/metric/embedding_server.py`, in its own process so that it does not share the client's GIL)
validates every request as vLLM's protocol does, decodes each clip's JPEG frames, holds each answer `--latency`
seconds (a model's compute) and answers with a meaningless vector. The clips are `--frames` frames of `bikes.mp4`
at 224x224, sent as one `data:video/jpeg;base64,` URL each; their bodies are made once, before any timing (the
runner times that as preprocessing, in worker threads). The bare loop posts those bodies from `concurrency` threads
over one keep-alive `httpx.Client` and reads each answer, nothing more; the client rows time
`EndpointVideoEncoder.encode_videos` on the same bodies: all clips in one call (target: >= 0.9x the bare loop, the
client must never be the bottleneck), and in the runner's batches (32 clips, `--batch_size`'s default; 256 texts,
`--text_batch_size`'s), shown without a target: a batch waits for its slowest request before the next one starts.
The text rows do the same with `encode_text`, one chat request per text: tiny bodies, so the server's cost is small
and the client's own shows. Each measurement is the best of `--repeats` runs, the bare loop and the client
alternating. On 2 cores the server's decoding of the JPEG frames (one process, one GIL) caps the clip rows at
concurrency 16 for both sides alike.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

import httpx

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.video import decode_frames_at, probe, uniform_times
from lovr_standins.videos import sample_video

SERVER = Path(__file__).resolve().parent.parent / "tests" / "metric" / "embedding_server.py"
TARGET = 0.9
RUNNER_BATCH = {"clips": 32, "texts": 256}  # evaluate's --batch_size and --text_batch_size defaults


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """The embeddings server in a subprocess, and its URL."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"{SERVER} did not start: {line!r}")
    return process, line.split()[-1]


def make_clips(count: int, frames: int) -> list[list]:
    """`count` clips of `frames` uniform frames of bikes.mp4 at 224x224, cycling over its 10 s."""
    info = probe(sample_video("bikes"))
    decoded = list(decode_frames_at(info.path, uniform_times(0.0, info.duration, 4 * frames), size=(224, 224)))
    return [[decoded[(i + k * 4) % len(decoded)] for k in range(frames)] for i in range(count)]


def bare_loop(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to post every body, `concurrency` at a time, reading each answer."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=60, limits=limits, headers={"Content-Type": "application/json"}) as client:

        def post(body: bytes) -> int:
            response = client.post(url, content=body)
            response.raise_for_status()
            return len(response.content)

        with ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            list(pool.map(post, bodies))
            return time.perf_counter() - start


def client_seconds(encode, items: list, batch: int) -> float:
    """Seconds for `encode` (the encoder's `encode_videos` or `encode_text`) on every item, `batch` per call."""
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        vectors = encode(items[i : i + batch])
        if vectors.shape[0] != len(items[i : i + batch]):
            raise RuntimeError(f"{vectors.shape[0]} embeddings for {len(items[i : i + batch])} inputs")
    return time.perf_counter() - start


def measure(url: str, encode, items: list, bodies: list[bytes], concurrency: int, repeats: int, batch: int) -> dict:
    """Embeddings/s of the bare loop on `bodies` and of `encode` on `items` (the same requests), whole and in
    batches of `batch`: the best of `repeats` runs, alternating."""
    client_seconds(encode, items[: 2 * concurrency], len(items))  # warm the connections
    times: dict[str, list[float]] = {"bare": [], "whole": [], "batched": []}
    for _ in range(repeats):
        times["bare"].append(bare_loop(url + "/embeddings", bodies, concurrency))
        times["whole"].append(client_seconds(encode, items, len(items)))
        times["batched"].append(client_seconds(encode, items, batch))
    return {name: len(items) / min(seconds) for name, seconds in times.items()}


HEADER = (
    "| requests | concurrency | bare loop emb/s | client emb/s | ratio | target | client, runner's batches emb/s "
    "| ratio |"
)


def row(kind: str, concurrency: int, rate: dict[str, float]) -> str:
    """One line of the table."""
    ratio = rate["whole"] / rate["bare"]
    status = "ok" if ratio >= TARGET else "MISSED"
    return (
        f"| {kind} | {concurrency} | {rate['bare']:.0f} | {rate['whole']:.0f} | {ratio:.2f}x | >= {TARGET}x {status} "
        f"| {rate['batched']:.0f} | {rate['batched'] / rate['bare']:.2f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--texts", type=int, default=480)
    parser.add_argument("--latency", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    clips = make_clips(args.clips, args.frames)
    process, url = start_server(args.latency)
    missed = False
    try:
        print(
            f"{args.clips} clips of {args.frames} frames at 224x224 (one data:video/jpeg URL each) and {args.texts} "
            f"texts (one chat request each); server latency {args.latency * 1000:.0f} ms; best of {args.repeats}; "
            "the vectors are meaningless, only speed counts"
        )
        print(HEADER)
        print("|---|---|---|---|---|---|---|---|")
        texts = [f"a person rides a bike down hill number {i}" for i in range(args.texts)]
        for kind in ("clips", "texts"):
            for concurrency in args.concurrency:
                config = EncoderConfig(
                    model="bench/embedder",
                    endpoint=url,
                    num_frames=args.frames,
                    concurrency=concurrency,
                    max_retries=0,
                )
                encoder = load_encoder(config, need="visual")
                if kind == "clips":
                    items = bodies = encoder.preprocess_videos(clips)
                    encode = encoder.encode_videos
                else:
                    items, encode = texts, encoder.encode_text
                    bodies = [encoder.chat_body(encoder.query_prompt, [{"type": "text", "text": t}]) for t in texts]
                rate = measure(url, encode, items, bodies, concurrency, args.repeats, RUNNER_BATCH[kind])
                encoder.close()
                missed |= rate["whole"] / rate["bare"] < TARGET
                print(row(kind, concurrency, rate))
    finally:
        process.kill()
        process.wait()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
