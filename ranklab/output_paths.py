"""Checks of the paths a command writes to, made before any work so that bad input loses nothing.

A command's output folder (``compress --output``, ``inspect --plots``) or file (``inspect --csv``)
is refused when it is the input (or inside it), when a file stands where a folder should be (or
the reverse), when a parent is a file, when it cannot be written, and when it already holds
something and ``--overwrite`` was not given.  Folders that a command resumes into
(``reproduce --results``) or rewrites by design (``--figures``) pass ``allow_existing=True``.
Every refusal is a ``ValueError`` with one line naming the option and what to do.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _can_write_in(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (tried, then removed), else why not."""
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".ranklab-write-test-"):
            return None
    except OSError as error:
        return error.strerror or str(error)


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write into."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {str(path)!r} is below {str(parent)!r}, which is a file; choose another {option}")
    why = _can_write_in(parent)
    if why:
        raise ValueError(f"{option} {str(path)!r}: cannot write in {str(parent)!r} ({why}); choose another {option}")


def _not_an_input(path: Path, inputs: Iterable[str | os.PathLike], option: str) -> None:
    for source in inputs:
        source = Path(source).resolve()
        if _inside(path, source) or (source.is_file() and path == source):
            raise ValueError(f"{option} {str(path)!r} is the input {str(source)!r} or inside it; it would be "
                             f"overwritten: choose another {option}")


def check_output_folder(folder: str | os.PathLike, option: str = "--output", *, inputs: Iterable[str | os.PathLike] = (),
                        overwrite: bool = False, allow_existing: bool = False) -> Path:
    """``folder`` is fit to be written as a command's output folder (see the module docstring)."""
    path = Path(folder).expanduser().resolve()
    _not_an_input(path, inputs, option)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(folder)!r} is a file, not a folder; choose another {option}")
    if path.is_dir():
        why = _can_write_in(path)
        if why:
            raise ValueError(f"{option} {str(folder)!r}: cannot write in it ({why}); choose another {option}")
        if not allow_existing and not overwrite and any(path.iterdir()):
            raise ValueError(f"{option} {str(folder)!r} exists and is not empty; choose a new folder or pass "
                             "--overwrite to replace its contents")
    else:
        _writable_ancestor(path, option)
    return path


def check_output_file(file: str | os.PathLike, option: str, *, inputs: Iterable[str | os.PathLike] = (),
                      overwrite: bool = False) -> Path:
    """``file`` is fit to be written as a command's output file (see the module docstring)."""
    path = Path(file).expanduser().resolve()
    _not_an_input(path, inputs, option)
    if path.is_dir():
        raise ValueError(f"{option} {str(file)!r} is a folder, not a file; choose a file name")
    if path.exists():
        if not overwrite:
            raise ValueError(f"{option} {str(file)!r} exists; choose a new file or pass --overwrite to replace it")
    _writable_ancestor(path, option)
    return path
