"""The ranklab user cache folder and file checksums (atomic writes: ranklab.atomic)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


CACHE_ENV = "RANKLAB_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else $RANKLAB_CACHE, else ~/.cache/ranklab."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path("~") / ".cache" / "ranklab"
    return Path(chosen).expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

