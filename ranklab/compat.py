"""Quiet, at their source, the warnings of our dependencies that a ranklab user can do nothing about."""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT (0.21) asks transformers (5.x) for ``is_gradient_checkpointing``, which transformers
    deprecated: a FutureWarning on every PEFT model built, about code that is not ours or the
    user's.  Other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' per-load progress bar ("Loading weights", a second of work) and its info
    reports (e.g. a new head "newly initialised", which ranklab expects); the user's settings return."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_pruned_adalora_save() -> Iterator[None]:
    """PEFT (0.21) warns, saving an AdaLoRA whose allocator pruned a module to rank 0, that its
    zero-sized tensors look like unsharded ZeRO-3 / FSDP shards.  For AdaLoRA they are the pruned
    ranks, saved and reloaded correctly (tests/test_train_adalora.py); only that message is hidden."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LoRA tensor\(s\) have invalid shape")
        yield
