"""ranklab: study how LoRA-family adapters use their rank."""
from .version import __version__

from .adapters import (  # noqa: E402
    AdapterConfig,
    available_methods,
    config_from_dict,
    get_method,
    make_config,
    register,
)
from .attach import (  # noqa: E402
    AttachSummary,
    adapter_layers,
    attach,
    merge_adapters,
    merge_and_unload,
    remove_adapters,
    set_rank,
    summarize,
    unmerge_adapters,
)
from .context import current_task, use_task  # noqa: E402
from .saving import export_peft, load_adapters, save_adapters  # noqa: E402

__all__ = [
    "__version__", "AdapterConfig", "available_methods", "config_from_dict", "get_method",
    "make_config", "register", "AttachSummary", "adapter_layers", "attach", "merge_adapters",
    "merge_and_unload", "remove_adapters", "set_rank", "summarize", "unmerge_adapters",
    "current_task", "use_task", "export_peft", "load_adapters", "save_adapters",
]
