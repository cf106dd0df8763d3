"""Command line of `lovr_metric.interop`.

    python -m lovr_metric.interop score-original --text_pt RUN/text.pt --video_pt RUN/video.pt --output OUT \
        [--name MODEL] [--k_values 1 5 10] [--bootstrap_resamples 1000] [--bootstrap_seed 0] [--confidence 0.95] \
        [--random_weights] [--trust_pickle]
    python -m lovr_metric.interop export-uvrb --dataset ./lovr --output ./lovr-uvrb

Exit status: 0 when done, 1 on bad input or a refused option value (a one-line message says what and where), 2 on
a command line argparse cannot parse; 0 for `--help`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from lovr_common.cli import DataclassArgumentParser, command_name

from .original import ScoreOriginalConfig, score_original
from .uvrb import export_uvrb

PROG = "python -m lovr_metric.interop"


@dataclass
class ExportUVRBConfig:
    """Options of `export-uvrb`."""

    dataset: str = field(metadata={"help": "A LoVR export folder (python -m lovr_dataset export)."})
    output: str = field(metadata={"help": "A new folder to write the UVRB-style tasks into."})


def _score_original(config: ScoreOriginalConfig) -> str:
    results = score_original(config)
    return f"wrote {config.output}/results.json, per_query.parquet, results.md, pass_at_k.png ({', '.join(results['metrics'])})"


def _export_uvrb(config: ExportUVRBConfig) -> str:
    manifest = export_uvrb(config.dataset, config.output)
    return f"wrote {', '.join(manifest['tasks'])} under {config.output}"


COMMANDS = {"score-original": (ScoreOriginalConfig, _score_original), "export-uvrb": (ExportUVRBConfig, _export_uvrb)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = f"usage: {PROG} {{{','.join(COMMANDS)}}} ... (`{PROG} COMMAND --help` lists its options)"
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(f"{usage}; got {argv[:1]}", file=sys.stderr)
        return 2
    config_class, run = COMMANDS[argv[0]]
    prog = command_name(f"{PROG} {argv[0]}")
    parser = DataclassArgumentParser(config_class, prog=prog)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv[1:])
        print(run(config))
    except SystemExit as stop:  # argparse has reported --help or a bad option: its status, returned
        return stop.code
    except ValueError as err:  # bad input, a value the config refuses (--k_values 0) included, as lovr_metric
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
