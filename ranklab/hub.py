"""Is the Hugging Face hub reachable?  Fail fast with a clear message when it is not."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class HubUnreachableError(ConnectionError, ValueError):
    """The hub cannot be reached.  Also a ValueError so the ``ranklab`` CLI prints it without a traceback."""


def offline_mode() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline."""
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in _OFFLINE_VARS)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick probe (one TCP connect) so we do not sit through minutes of library retries."""
    if offline_mode():
        return False
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True  # behind a proxy a direct connect says nothing; let the libraries try
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_error(what: str, cause: BaseException | None = None) -> HubUnreachableError:
    """The error raised when ``what`` needs the hub and the hub cannot be reached."""
    reason = "offline mode is set (HF_HUB_OFFLINE or similar)" if offline_mode() else "the hub cannot be reached"
    detail = f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})" if cause else ""
    return HubUnreachableError(
        f"{what} needs the Hugging Face hub, but {reason}{detail}. "
        "Offline alternatives: the offline tasks (movie, amazon, tweet, nyt, movie_rating, trec, sms_spam, bbc; "
        "see `ranklab tasks`) and the embedded backbone `minilm-l6` (see `ranklab backbones`)."
    )
