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


def load_peft_for_inspection(path_or_model: str | os.PathLike | nn.Module, base_model: nn.Module | None = None,
                             **load_kwargs: Any) -> nn.Module:
    """A PEFT model in eval mode whose adapted modules ``ranklab.inspect`` reads.

    ``path_or_model``: a saved adapter folder, or a model already holding PEFT/ranklab adapters
    (returned as is, in eval mode).  ``base_model``: the model the adapter was trained on;
    default: load it from the config's ``base_model_name_or_path``.  ``load_kwargs`` go to
    ``from_pretrained`` (e.g. ``adapter_name``, ``torch_dtype`` for a large base).
    """
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

    from ..compat import quiet_peft

    config = read_adapter_config(path)
    with warnings.catch_warnings(), quiet_peft():
        warnings.filterwarnings("ignore", message=_SPURIOUS)
        if base_model is not None:
            return peft.PeftModel.from_pretrained(base_model, str(path), **load_kwargs)
        if not config.get("base_model_name_or_path"):
            raise ValueError(f"{path / CONFIG_FILE} names no base model: pass base_model=<the model it was trained on>")
        task_type = config.get("task_type")
        if task_type not in AUTO_CLASSES:
            raise ValueError(f"unknown task_type {task_type!r}; known: {[t for t in AUTO_CLASSES if t]}")
        return getattr(peft, AUTO_CLASSES[task_type]).from_pretrained(str(path), **load_kwargs)
