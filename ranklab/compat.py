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
