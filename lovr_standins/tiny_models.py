"""Tiny random-weight models that stand in for real checkpoints offline.

They exercise the real transformers code paths (configs, processors, `from_pretrained`) in well under a second,
but their outputs are meaningless: everything produced with them is labelled `random_weights`.

    python -m lovr_standins.tiny_models --cache-dir .cache/tiny-models

builds every registered model into the cache folder (skipping those already built); code and tests call
`tiny_model_path(name)`, which builds on first use.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from lovr_common.provenance import RANDOM_WEIGHTS_MARKER

DEFAULT_CACHE_DIR = Path(os.environ.get("LOVR_TINY_MODELS", ".cache/tiny-models"))

_BUILDERS: dict[str, Callable[[Path], None]] = {}


def register(name: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    """Register `builder(out_dir)` as the recipe of tiny model `name`."""

    def decorator(builder: Callable[[Path], None]) -> Callable[[Path], None]:
        _BUILDERS[name] = builder
        return builder

    return decorator


def _load_builders() -> None:
    # The recipes live beside this file, one module per family; importing them registers them.
    from lovr_standins import _tiny_qwen2vl, _tiny_vision, _tiny_vlm  # noqa: F401


def available() -> list[str]:
    """Names of the tiny models that can be built."""
    _load_builders()
    return sorted(_BUILDERS)


def _recipe_fingerprint(name: str) -> str:
    """A hash of the source of the module holding `name`'s recipe: a changed recipe invalidates cached builds."""
    module = sys.modules[_BUILDERS[name].__module__]
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]


def _marker_text(name: str) -> str:
    return (
        f"Tiny model '{name}' with random weights, built by lovr_standins.tiny_models: its outputs are meaningless.\n"
        f"recipe: {_recipe_fingerprint(name)}\n"
    )


def tiny_model_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of tiny model `name`, built on first use or when its recipe changed (safe against concurrent
    builders)."""
    _load_builders()
    if name not in _BUILDERS:
        raise ValueError(f"Unknown tiny model name={name!r}: expected one of {sorted(_BUILDERS)}")
    out = Path(cache_dir or DEFAULT_CACHE_DIR).resolve() / name
    marker = out / RANDOM_WEIGHTS_MARKER
    if marker.exists() and marker.read_text() == _marker_text(name):
        return out
    tmp = out.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _BUILDERS[name](tmp)
        (tmp / RANDOM_WEIGHTS_MARKER).write_text(_marker_text(name))
        if marker.exists() and marker.read_text() != _marker_text(name):
            shutil.rmtree(out)  # a build of an older recipe
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            if not marker.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("names", nargs="*", help="models to build (default: all)")
    args = parser.parse_args(argv)
    for name in args.names or available():
        print(f"{name}: {tiny_model_path(name, args.cache_dir)}")


if __name__ == "__main__":
    # Run as `-m`, this file is `__main__`, while the recipes register into `lovr_standins.tiny_models`: use that.
    from lovr_standins import tiny_models

    tiny_models.main()
