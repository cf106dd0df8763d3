"""The targets a benchmark checks against its own run: each printed with the value measured and `ok` or `MISSED`,
and the exit status 1 when one is missed, so that `make bench` fails on a regression.

    from targets import Target, report
    raise SystemExit(report([Target("export / floor", 1.32, 1.5), Target("frames/s vs ffmpeg", 0.9, 0.8, at_most=False)]))
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """`value` measured in this run against `limit`: at most (`at_most=True`) or at least."""

    name: str
    value: float
    limit: float
    at_most: bool = True
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        bound = "<=" if self.at_most else ">="
        verdict = "ok" if self.met else "MISSED"
        return f"- {self.name}: {self.value:.2f}{self.unit} (target {bound} {self.limit:g}{self.unit}) {verdict}"


def report(targets: list[Target], note: str = "") -> int:
    """Print `targets` under a heading and return the exit status: 1 if any is missed, else 0."""
    print(f"\nTargets, checked on this run{f' ({note})' if note else ''}:")
    if not targets:
        print("- none: this benchmark reports figures only")
    for target in targets:
        print(target.line())
    missed = [target.name for target in targets if not target.met]
    if missed:
        print(f"MISSED {len(missed)} of {len(targets)} target(s): {', '.join(missed)}")
    return 1 if missed else 0
