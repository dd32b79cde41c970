"""`python -m ranklab.labsetup`: the JupyterLab server settings ranklab's notebooks need, written
into this environment (``<sys.prefix>/etc/jupyter/jupyter_server_config.json``; `make setup` runs it).

Why: with ipykernel 7, JupyterLab (4.6) opens and closes kernel *subshells* for widgets such as the
progress bars of a training cell.  The kernel answers each subshell request with a busy / idle
status message, and JupyterLab's status bar shows the last status it saw, so it reads "Idle"
while a training cell is still running.  JupyterLab already ignores status messages of the
message types the server lists as ``MappingKernelManager.untracked_message_types`` (debug and
comm-info requests among them); the subshell requests are missing from that list.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .atomic import write_json

SUBSHELL_MESSAGES = tuple(f"{verb}_subshell_{kind}" for verb in ("create", "delete", "list")
                          for kind in ("request", "reply"))


def server_config_path() -> Path:
    return Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"


def default_untracked() -> list[str]:
    from jupyter_server.services.kernels.kernelmanager import MappingKernelManager

    return list(MappingKernelManager.class_traits()["untracked_message_types"].default())


def write_kernel_status_config(path: str | Path | None = None) -> Path:
    """Add the subshell messages to the server's untracked message types, keeping every other
    setting of an existing config file; running it twice changes nothing."""
    path = Path(path) if path is not None else server_config_path()
    config = json.loads(path.read_text()) if path.is_file() else {}
    section = config.setdefault("MappingKernelManager", {})
    current = list(section.get("untracked_message_types", default_untracked()))
    section["untracked_message_types"] = current + [m for m in SUBSHELL_MESSAGES if m not in current]
    return write_json(path, config)


if __name__ == "__main__":
    print(f"ranklab: JupyterLab kernel status settings in {write_kernel_status_config()}")
