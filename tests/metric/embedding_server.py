"""A real OpenAI-compatible embeddings server on 127.0.0.1 that checks every request as vLLM's protocol would, for the
endpoint encoder's tests and benchmark.

    python tests/metric/embedding_server.py [--port 0] [--dimension 16] [--latency 0.02] [--token-env VAR]

It prints `listening on http://127.0.0.1:PORT/v1` once ready; in a test, `EmbeddingServer()` runs it in a thread.
`POST /v1/embeddings` takes vLLM's `EmbeddingChatRequest` (one conversation: `messages`) or
`EmbeddingCompletionRequest` (`input`), validated from vLLM's source (github.com/vllm-project/vllm):
`vllm/entrypoints/pooling/embed/protocol.py` at ff8d577a972bbcd9bc37b196343f5f9a86609ccb (the two requests, the
response), `vllm/entrypoints/pooling/base/protocol.py` at 65772ef154279995591c119792c8043508be329a and
020638a6b026e4d96f34e6e7ed12c3390fbf7416 (the mixins' fields and the generation-prompt check),
`vllm/entrypoints/chat_utils.py` at bd5ec6d50b83652c21a570b81c1fb5219a6ebf76 (messages and content parts),
`vllm/multimodal/media/connector.py` at 959009b402c3 and `media/video.py` at c30af8668c06 (data URLs;
`data:video/jpeg;base64,` holds comma-separated base64 JPEG frames, stacked, so of one size), `media/image.py` at
24cfad521746 (strict base64, PIL). It is stricter than vLLM in two ways, both to catch client bugs: a field vLLM
does not know is refused (vLLM ignores it with a warning: a misspelt option would silently do nothing), and types
are exact (pydantic's lax mode would coerce "true" into true).

The answer is vLLM's `EmbeddingResponse`, each embedding a MEANINGLESS deterministic vector: a hash of what the
request asks to embed (texts, the system prompt, the decoded frames' pixels) seeding a normal draw of `dimension`
floats (`embedding_of`), so that a test can compute what any input must get.

Faults, injected per test (`EmbeddingServer.inject`): `500` (HTTP 500), `hang` (no answer until the client gives
up), `malformed` (a body cut short), `wrong_dim` (one float fewer), `short_batch` (one embedding fewer), each for
the next `times` requests. Every request is recorded (`requests`: body, headers, arrival time), and the requests in
flight counted (`max_in_flight`); `--latency` holds each answer, as a model's compute would.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

# vLLM's request fields (the mixins' and the two requests' own), with the JSON types each takes; None allowed
# where vLLM's type is optional.
_POOLING_BASIC = {
    "model": (str, None),
    "user": (str, None),
    "truncate_prompt_tokens": (int, None),
    "request_id": (str,),
    "priority": (int,),
}
_EMBED = {
    "encoding_format": (str,),
    "dimensions": (int, None),
    "normalize": (bool, None),
    "embed_dtype": (str,),
    "endianness": (str,),
}
CHAT_FIELDS = {
    **_POOLING_BASIC,
    **_EMBED,
    "messages": (list,),
    "add_generation_prompt": (bool,),
    "continue_final_message": (bool,),
    "add_special_tokens": (bool,),
    "chat_template": (str, None),
    "chat_template_kwargs": (dict, None),
    "mm_processor_kwargs": (dict, None),
}
COMPLETION_FIELDS = {**_POOLING_BASIC, **_EMBED, "input": (str, list), "add_special_tokens": (bool,)}
ENCODING_FORMATS = ("float", "base64")  # vllm.utils.serial_utils.EncodingFormat; this server answers float only
# The content parts each role takes (OpenAI's message params; video_url is vLLM's own part for user messages).
ROLE_PARTS = {"system": {"text"}, "user": {"text", "image_url", "video_url"}, "assistant": {"text"}}
FAULTS = ("500", "hang", "malformed", "wrong_dim", "short_batch")


class SchemaError(ValueError):
    """A request vLLM would refuse (HTTP 400), or that this server refuses as stricter."""


def _check_type(where: str, value, types: tuple) -> None:
    allowed = tuple(bool if t is bool else t for t in types if t is not None)
    ok = (value is None and None in types) or (
        isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    )
    if not ok:
        names = [getattr(t, "__name__", "null") for t in types]
        raise SchemaError(f"{where}: expected {' or '.join(names)}, got {type(value).__name__} {value!r:.60}")


def _check_fields(body: dict, fields: dict, where: str) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise SchemaError(f"{where}: fields vLLM does not know (it would ignore them): {unknown}")
    for name, value in body.items():
        _check_type(f"{where}.{name}", value, fields[name])


def _decode_base64(where: str, data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)  # media/image.py: pybase64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SchemaError(f"{where}: not base64 ({err})") from None


def _image(where: str, data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as err:
        raise SchemaError(f"{where}: not an image ({err})") from None


def load_data_url(where: str, url: str, modality: str) -> list[np.ndarray]:
    """The frames of an image or video data URL, decoded as vLLM's MediaConnector does: split at the first comma,
    `<media type>;base64`, a `video/jpeg` payload split at every further comma into JPEG frames, stacked."""
    if not url.startswith("data:"):
        raise SchemaError(f"{where}: this server takes data URLs only, got {url[:40]!r}")
    spec, sep, data = url[len("data:") :].partition(",")
    media_type, _, data_type = spec.partition(";")
    if not sep or data_type != "base64":
        raise SchemaError(f"{where}: expected data:<media type>;base64,<data>, got {url[:40]!r}")
    if modality == "video":
        if media_type.lower() != "video/jpeg":
            raise SchemaError(f"{where}: expected a data:video/jpeg URL (JPEG frames), got {media_type!r}")
        frames = [
            _image(f"{where} frame {i}", _decode_base64(f"{where} frame {i}", f))
            for i, f in enumerate(data.split(","))
        ]
        if len({frame.shape for frame in frames}) != 1:  # np.stack in media/video.py
            raise SchemaError(f"{where}: frames of different sizes {sorted({f.shape for f in frames})} cannot stack")
        return frames
    if not media_type.startswith("image/"):
        raise SchemaError(f"{where}: expected an image media type, got {media_type!r}")
    return [_image(where, _decode_base64(where, data))]


def _check_part(where: str, part, role: str) -> tuple[str, object]:
    """One content part as `(kind, value)`: `("text", str)`, `("image", frames)` or `("video", frames)`."""
    if isinstance(part, str):  # vLLM takes a bare string as a text part
        return "text", part
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise SchemaError(f"{where}: expected a content part with a string 'type', got {part!r:.80}")
    kind = part["type"]
    if kind not in ROLE_PARTS[role]:
        raise SchemaError(f"{where}: a {role} message takes parts of type {sorted(ROLE_PARTS[role])}, got {kind!r}")
    if kind == "text":
        _check_fields(part, {"type": (str,), "text": (str,)}, where)
        if "text" not in part:
            raise SchemaError(f"{where}: a text part needs 'text'")
        return "text", part["text"]
    key = kind  # image_url / video_url: {"type": kind, kind: {"url": str}}
    _check_fields(part, {"type": (str,), key: (dict,)}, where)
    url_spec = part.get(key)
    if url_spec is None:
        raise SchemaError(f"{where}: a {kind} part needs {key!r}: {{'url': ...}}")
    url_fields = {"url": (str,), "detail": (str,)} if kind == "image_url" else {"url": (str,)}
    _check_fields(url_spec, url_fields, f"{where}.{key}")
    if "url" not in url_spec:
        raise SchemaError(f"{where}.{key}: needs 'url'")
    modality = "video" if kind == "video_url" else "image"
    return modality, load_data_url(f"{where}.{key}.url", url_spec["url"], modality)


def parse_request(body) -> tuple[str, list[list[tuple[str, object]]]]:
    """`("chat", [one conversation's parts])` or `("completion", [[("text", input)] per input])`; raises
    `SchemaError` for what vLLM would refuse."""
    if not isinstance(body, dict):
        raise SchemaError(f"the body: expected a JSON object, got {type(body).__name__}")
    if "input" in body and "messages" in body:
        raise SchemaError("the body holds both 'input' and 'messages': expected one request kind")
    if "input" in body:
        _check_fields(body, COMPLETION_FIELDS, "EmbeddingCompletionRequest")
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not inputs or not all(isinstance(text, str) for text in inputs):
            raise SchemaError(f"input: expected a string or a non-empty list of strings, got {body['input']!r:.80}")
        _check_encoding(body)
        return "completion", [[("text", text)] for text in inputs]
    if "messages" not in body:
        raise SchemaError("the body holds neither 'input' nor 'messages'")
    _check_fields(body, CHAT_FIELDS, "EmbeddingChatRequest")
    _check_encoding(body)
    if body.get("continue_final_message") and body.get("add_generation_prompt"):
        raise SchemaError("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    if not body["messages"]:
        raise SchemaError("messages: expected at least one message")
    parts = []
    for m, message in enumerate(body["messages"]):
        where = f"messages[{m}]"
        if not isinstance(message, dict):
            raise SchemaError(f"{where}: expected an object, got {message!r:.60}")
        _check_fields(message, {"role": (str,), "content": (str, list), "name": (str,)}, where)
        role = message.get("role")
        if role not in ROLE_PARTS:
            raise SchemaError(f"{where}.role: expected one of {sorted(ROLE_PARTS)}, got {role!r}")
        content = message.get("content")
        if content is None:
            raise SchemaError(f"{where}: needs 'content'")
        items = [content] if isinstance(content, str) else content
        checked = [_check_part(f"{where}.content[{p}]", part, role) for p, part in enumerate(items)]
        parts += [(f"{role}:{kind}", value) for kind, value in checked]
    return "chat", [parts]


def _check_encoding(body: dict) -> None:
    fmt = body.get("encoding_format", "float")
    if fmt not in ENCODING_FORMATS:
        raise SchemaError(f"encoding_format: expected one of {ENCODING_FORMATS}, got {fmt!r}")
    if fmt != "float":
        raise SchemaError(f"encoding_format={fmt!r}: this test server answers 'float' only")
    if body.get("dimensions") is not None and body["dimensions"] < 1:
        raise SchemaError(f"dimensions: expected >= 1, got {body['dimensions']}")


def embedding_of(parts: list[tuple[str, object]], dimension: int) -> list[float]:
    """The MEANINGLESS deterministic embedding of one input: a hash of its parts (texts, and the frames' decoded
    pixels) seeding `dimension` normal floats."""
    digest = hashlib.sha256()
    for kind, value in parts:
        digest.update(kind.encode() + b"\0")
        if isinstance(value, str):
            digest.update(value.encode() + b"\0")
        else:
            for frame in value:
                digest.update(str(frame.shape).encode() + frame.tobytes())
    seed = int.from_bytes(digest.digest()[:8], "little")
    return [round(float(x), 6) for x in np.random.default_rng(seed).standard_normal(dimension)]


@dataclass
class Recorded:
    """One request as it arrived."""

    body: dict | None
    headers: dict[str, str]
    arrived: float


@dataclass
class ServerState:
    dimension: int = 16
    latency: float = 0.0
    token: str | None = None
    hang_seconds: float = 30.0
    requests: list[Recorded] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)


def make_handler(state: ServerState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn (vLLM's server)
        disable_nagle_algorithm = True  # TCP_NODELAY, as uvicorn: else each answer waits for a delayed ACK (40 ms)

        def log_message(self, *args):  # keep the test output quiet
            pass

        def _reply(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (timeout tests)
                pass

        def _error(self, status: int, message: str) -> None:
            body = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status}
            self._reply(status, json.dumps(body).encode())

        def do_GET(self):
            if self.path != "/stats":
                return self._error(404, f"no route {self.path}")
            with state.lock:
                stats = {"requests": len(state.requests), "max_in_flight": state.max_in_flight}
            self._reply(200, json.dumps(stats).encode())

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                fault = state.faults.pop(0) if state.faults else None
            try:
                self._answer(raw, fault)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, raw: bytes, fault: str | None) -> None:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            with state.lock:
                state.requests.append(Recorded(body, dict(self.headers), time.monotonic()))
            if self.path != "/v1/embeddings":
                return self._error(404, f"no route {self.path}")
            if state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._error(401, "Unauthorized")
            if body is None:
                return self._error(400, "the body is not JSON")
            try:
                kind, inputs = parse_request(body)
            except SchemaError as err:
                return self._error(400, str(err))
            if state.latency:
                time.sleep(state.latency)
            if fault == "hang":
                state.closing.wait(state.hang_seconds)
                return None
            if fault == "500":
                return self._error(500, "simulated server error")
            dimension = body.get("dimensions") or state.dimension
            data = [
                {"index": i, "object": "embedding", "embedding": embedding_of(parts, dimension)}
                for i, parts in enumerate(inputs)
            ]
            if fault == "wrong_dim":
                data[0]["embedding"] = data[0]["embedding"][:-1]
            if fault == "short_batch":
                data = data[:-1]
            response = {
                "id": "embd-test",
                "object": "list",
                "created": int(time.time()),
                "model": body.get("model"),
                "data": data,
                "usage": {
                    "prompt_tokens": 0,
                    "total_tokens": 0,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
            payload = json.dumps(response).encode()
            if fault == "malformed":
                payload = payload[: len(payload) // 2]
            self._reply(200, payload)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's 5 resets bursts of connections; uvicorn's: 2048)


class EmbeddingServer:
    """The server in a thread of this process: `with EmbeddingServer(dimension=16) as server: server.url`."""

    def __init__(self, *, dimension: int = 16, latency: float = 0.0, token: str | None = None, port: int = 0):
        self.state = ServerState(dimension=dimension, latency=latency, token=token)
        self.httpd = _Server(("127.0.0.1", port), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EmbeddingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.state.closing.set()  # a hanging handler returns at once
        self.httpd.shutdown()
        self.httpd.server_close()

    def inject(self, fault: str, times: int = 1) -> None:
        """Answer the next `times` requests with `fault`, one of `FAULTS`."""
        if fault not in FAULTS:
            raise ValueError(f"fault={fault!r}: expected one of {FAULTS}")
        with self.state.lock:
            self.state.faults += [fault] * times

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def bodies(self) -> list[dict]:
        return [request.body for request in self.requests]

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--dimension", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer is held, as a model's compute")
    parser.add_argument("--token-env", default=None, help="require the token held in this environment variable")
    options = parser.parse_args()
    token = os.environ[options.token_env] if options.token_env else None
    server = EmbeddingServer(dimension=options.dimension, latency=options.latency, token=token, port=options.port)
    print(f"listening on {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
