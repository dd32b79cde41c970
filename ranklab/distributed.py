"""Several processes through Accelerate: how a global batch is shared and how results are gathered.

``TrainConfig.batch_size`` is the global batch: every optimizer step sees the same examples
whether one process or N run it.  Process k takes the k-th contiguous share of the batch and
splits it into ``gradient_accumulation_steps`` micro-batches; each micro-batch's mean loss is
weighted by its share of the global batch times N (DDP averages gradients over processes), so
the summed gradient is the global batch's mean-loss gradient.  With one process and no
accumulation the weight is exactly 1.  Evaluation splits rows the same way, pads the last share
with repeats and keeps only the first n gathered predictions, so no example counts twice.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch


def cpu_processes() -> bool:
    """Launched as several processes on a machine without CUDA (``accelerate launch --multi_gpu``
    or torchrun there): run CPU processes with the gloo backend."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def is_main_process() -> bool:
    """True in the one process that writes files (also when not launched as several)."""
    from accelerate import PartialState

    destroy_process_group_at_exit()
    return PartialState(cpu=cpu_processes()).is_main_process


_exit_hook_registered = False


def destroy_process_group_at_exit() -> None:
    """Launched as several processes: destroy torch.distributed's process group when Python exits.

    A gloo process group left alive at exit is torn down with the interpreter while its worker
    threads still run, and the process aborts with "terminate called without an active exception"
    (24 of 30 two-process runs of a bare all_reduce script here; 0 of 30 once the group is
    destroyed).  Registered once per process, before Accelerate creates the group."""
    global _exit_hook_registered
    if _exit_hook_registered or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import atexit

    atexit.register(_destroy_process_group)
    _exit_hook_registered = True


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(items: Sequence[Any], index: int, count: int) -> list[Any]:
    """The ``index``-th of ``count`` contiguous, near-equal shares of ``items`` (may be empty)."""
    size, extra = divmod(len(items), count)
    start = index * size + min(index, extra)
    return list(items[start:start + size + (1 if index < extra else 0)])


def micro_batches(indices: Sequence[int], global_size: int, world: int, steps: int,
                  sizes: Sequence[int] | None = None) -> list[tuple[list[int], float]]:
    """(rows, loss weight) per micro-batch of one process's share; at least one (a zero-weight
    stand-in when the share is empty, so every process runs the same collective backward).

    A micro-batch's weight is its share of the global batch times the number of processes: by
    rows, or with ``sizes`` (a size per row id, e.g. a causal LM's target tokens) by summed sizes,
    ``global_size`` then being the global batch's summed size."""
    chunks = [c for c in (share(indices, i, steps) for i in range(steps)) if c]
    if not chunks:
        return [([], 0.0)]
    if sizes is None:
        return [(chunk, len(chunk) * world / global_size) for chunk in chunks]
    return [(chunk, float(sum(sizes[i] for i in chunk)) * world / max(global_size, 1)) for chunk in chunks]


def padded_share(n: int, index: int, count: int) -> list[int]:
    """Row ids of this process's evaluation share, padded by repeating its last row (or row 0) so
    that every process holds ceil(n / count) rows and ``gather`` can concatenate them."""
    per = -(-n // count)
    rows = list(range(index * per, min(n, (index + 1) * per)))
    return rows + [rows[-1] if rows else 0] * (per - len(rows))


def wait_for_everyone() -> None:
    """Every process waits here for the others (a no-op in one process): what the main process wrote
    before it is on disk when any process goes on.  Accelerate's barrier, on the same state as
    ``is_main_process``."""
    from accelerate import PartialState

    destroy_process_group_at_exit()
    PartialState(cpu=cpu_processes()).wait_for_everyone()


def broadcast_int(value: int, device: torch.device | None = None) -> int:
    """``value`` of process 0 on every process (unchanged without torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())
