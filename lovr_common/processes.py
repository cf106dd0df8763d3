"""The processes of a run: accelerate's `PartialState`, made so that the ranks of a launch see each other on a
machine without an accelerator too."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import PartialState


def process_state() -> PartialState:
    """accelerate's `PartialState` of this process (the first call makes it; the later ones share it).

    On a machine without an accelerator, accelerate takes each rank of a multi-process launch (torchrun, or
    `accelerate launch --multi_gpu --num_processes N`) for the only process unless it is told that the ranks run
    on the CPU: every rank would then do all the work, and all but one would find the run folder locked. Saying so
    there changes nothing else (the device is the CPU either way). With an accelerator, the ranks use it unless the
    launch asked for the CPU (`accelerate launch --cpu`, which `PartialState` alone does not read).
    """
    # accelerate and torch load only here: the readers of a run folder never need them.
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    available = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return PartialState(cpu=not available or parse_flag_from_env("ACCELERATE_USE_CPU"))
