"""ranklab: study how LoRA-family adapters use their rank."""
from .adapters import (
    AdapterConfig,
    available_methods,
    config_from_dict,
    get_method,
    make_config,
    register,
)
from .attach import (
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
from .compression import compress_adapter
from .context import current_task, use_task
from .saving import export_peft, load_adapters, save_adapters
from .version import __version__

__all__ = [
    "__version__", "AdapterConfig", "available_methods", "config_from_dict", "get_method",
    "make_config", "register", "AttachSummary", "adapter_layers", "attach", "merge_adapters",
    "merge_and_unload", "remove_adapters", "set_rank", "summarize", "unmerge_adapters",
    "current_task", "use_task", "export_peft", "load_adapters", "save_adapters", "compress_adapter",
]
