"""Load a saved PEFT LoRA / AdaLoRA adapter for inspection with ``ranklab.inspect``.

    model = load_peft_for_inspection("my-adapter")          # base model from adapter_config.json
    model = load_peft_for_inspection("my-adapter", base)    # or a base model you already loaded
    model_report(model)

Without ``base_model`` the base is loaded from the config's ``base_model_name_or_path`` (a hub id
or a local folder) with the class its ``task_type`` names, as PEFT's ``AutoPeftModel*`` do.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from .factors import adapted_modules

CONFIG_FILE = "adapter_config.json"
# PEFT task_type -> the AutoPeftModel class that builds the matching base model.
AUTO_CLASSES = {
    None: "AutoPeftModel", "SEQ_CLS": "AutoPeftModelForSequenceClassification",
    "CAUSAL_LM": "AutoPeftModelForCausalLM", "SEQ_2_SEQ_LM": "AutoPeftModelForSeq2SeqLM",
    "TOKEN_CLS": "AutoPeftModelForTokenClassification", "QUESTION_ANS": "AutoPeftModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoPeftModelForFeatureExtraction",
}
# PEFT checks AdaLoRA's rank_pattern (masks keyed by lora_E) like LoRA's (ranks keyed by module)
# and warns that it ignored them, although it then resizes every module by that pattern correctly.
_SPURIOUS = r"The following rank_pattern keys did not match any targeted module"


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``adapter_config.json`` of a saved PEFT adapter folder, as a dict."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise ValueError(f"{path} is not a saved PEFT adapter: it has no {CONFIG_FILE}")
    return json.loads(file.read_text())


def load_peft_for_inspection(path_or_model: str | os.PathLike | nn.Module,
                             base_model: nn.Module | str | os.PathLike | None = None, **load_kwargs: Any) -> nn.Module:
    """A PEFT model in eval mode whose adapted modules ``ranklab.inspect`` reads.

    ``path_or_model``: a saved adapter folder, or a model already holding PEFT/ranklab adapters
    (returned as is, in eval mode).  ``base_model``: the model the adapter was trained on, or a
    local folder holding it (loaded with the transformers class of the adapter's ``task_type``);
    default: load it from the config's ``base_model_name_or_path``.  ``load_kwargs`` go to
    ``from_pretrained`` (e.g. ``adapter_name``, ``torch_dtype`` for a large base).
    """
    if isinstance(base_model, (str, os.PathLike)):
        base_model = _local_base(Path(path_or_model), Path(base_model))
    if isinstance(path_or_model, nn.Module):
        if base_model is not None:
            raise ValueError("base_model is only used when loading from a folder; the model already has its base")
        model = path_or_model
    else:
        model = _load(Path(path_or_model), base_model, load_kwargs)
    if not adapted_modules(model):
        raise ValueError("model has no adapted modules (ranklab adapters or PEFT LoRA/AdaLoRA layers)")
    return model.eval()


def _load(path: Path, base_model: nn.Module | None, load_kwargs: dict[str, Any]) -> nn.Module:
    import peft

    from ..compat import quiet_loading, quiet_peft

    config = read_adapter_config(path)
    with warnings.catch_warnings(), quiet_peft(), quiet_loading():
        warnings.filterwarnings("ignore", message=_SPURIOUS)
        if base_model is not None:
            return peft.PeftModel.from_pretrained(base_model, str(path), **load_kwargs)
        if not config.get("base_model_name_or_path"):
            raise ValueError(f"{path / CONFIG_FILE} names no base model: pass base_model=<the model it was trained on>")
        task_type = config.get("task_type")
        if task_type not in AUTO_CLASSES:
            raise ValueError(f"unknown task_type {task_type!r}; known: {[t for t in AUTO_CLASSES if t]}")
        base = config["base_model_name_or_path"]
        try:
            return getattr(peft, AUTO_CLASSES[task_type]).from_pretrained(str(path), **load_kwargs)
        except OSError as error:
            if Path(base).is_dir():  # a local base that is broken: not a hub problem
                raise
            raise _base_error(base, path, error) from error


# PEFT task_type -> the transformers Auto class of its base model
BASE_CLASSES = {None: "AutoModel", "SEQ_CLS": "AutoModelForSequenceClassification",
                "CAUSAL_LM": "AutoModelForCausalLM", "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
                "TOKEN_CLS": "AutoModelForTokenClassification", "QUESTION_ANS": "AutoModelForQuestionAnswering",
                "FEATURE_EXTRACTION": "AutoModel"}


def _local_base(adapter: Path, folder: Path) -> nn.Module:
    """The base model from a local folder, with the class (and head size) the adapter expects."""
    import transformers

    if not folder.is_dir():
        raise ValueError(f"base model folder {folder} does not exist")
    task_type = read_adapter_config(adapter).get("task_type")
    options: dict[str, Any] = {"local_files_only": True}
    if task_type == "SEQ_CLS":  # the saved head says how many labels
        labels = _saved_head_outputs(adapter)
        if labels:
            options["num_labels"] = labels
    from ..compat import quiet_loading

    with quiet_loading():
        return getattr(transformers, BASE_CLASSES.get(task_type, "AutoModel")).from_pretrained(str(folder), **options)


def _saved_head_outputs(adapter: Path) -> int | None:
    """Rows of the saved classification head's last weight, if the adapter saved a head."""
    from safetensors import safe_open

    file = adapter / "adapter_model.safetensors"
    if not file.is_file():
        return None
    with safe_open(str(file), "pt") as weights:
        heads = sorted(k for k in weights.keys() if k.endswith(".weight") and ("classifier" in k or ".score." in k))
        return weights.get_slice(heads[-1]).get_shape()[0] if heads else None


def _base_error(base: str, path: Path, cause: OSError) -> ValueError:
    """The base model named by an adapter cannot be fetched: say so, and how to pass one."""
    from ..hub import hub_error, hub_reachable, offline_mode

    if offline_mode() or not hub_reachable():
        reason = str(hub_error(f"the base model {base!r} of {path}", cause)).split(". Offline alternatives")[0]
    else:
        reason = f"the base model {base!r} of {path} could not be loaded ({type(cause).__name__}: {cause})"
    return ValueError(
        f"{reason}. Load the base yourself (a local folder or a cached copy) and pass it: "
        f"load_peft_for_inspection({str(path)!r}, base_model=AutoModelFor...from_pretrained('<local folder>')), "
        "or give the folder: load_peft_for_inspection(adapter, base_model='<local folder>') (notebook 06: "
        "base_model_path).")
