"""Read a saved adapter folder into per-module factors, without the base model.

Two formats:
- PEFT LoRA / AdaLoRA (``adapter_config.json`` + ``adapter_model.safetensors`` or ``.bin``): the
  factors are PEFT's tensors with PEFT's scaling folded in: LoRA alpha/r (alpha/sqrt(r) with
  rsLoRA; per-module ``rank_pattern``/``alpha_pattern``), AdaLoRA B (A * E) alpha/(init_r + 1e-5)
  (PEFT keeps ``ranknum`` at init_r when it loads a pruned adapter).  ``fan_in_fan_out`` (GPT-2's
  Conv1D) gives the transposed product, as ``ranklab.inspect.module_factors`` does in a model.
- ranklab (``ranklab_config.json`` + ``adapter_model.safetensors``, from ``save_adapters``): each
  layer is rebuilt from its method's class around a base on the meta device (no memory, no base
  weights), its saved tensors loaded; d_in and d_out are read off the saved shapes.

Module names are those of the saved model (PEFT: ``base_model.model.<name>``), as in an
in-model ``model_report``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..adapters import AdapterLayer, config_from_dict, get_method
from ..adapters.base import SHARED_STATE
from ..folders import ADAPTER_DIR
from .factors import default_selectors, module_factors

PEFT_CONFIG = "adapter_config.json"
RANKLAB_CONFIG = "ranklab_config.json"
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PEFT_TYPES = {"LORA": "peft_lora", "ADALORA": "peft_adalora"}
_PROBE_IN, _PROBE_OUT = 7919, 7927  # primes no rank or task count equals: they mark d_in and d_out


@dataclass
class SavedModule:
    """One adapted module of a saved adapter: its factors without the base weight."""

    name: str
    method: str
    params: int
    layer: AdapterLayer | None = None  # ranklab: the rebuilt layer (its base lives on the meta device)
    fixed: list[torch.Tensor] | None = None  # PEFT: [B, A] as stored (their dtype); ΔW = scale * B A
    scale: float = 1.0
    needs_base: str | None = None  # why ΔW needs W0 (DoRA, KaSA): factors() refuses, factors_with_base() computes
    from_base: Callable[[torch.Tensor], list[torch.Tensor]] | None = None  # W0 (d_out x d_in) -> factors of ΔW

    def factors(self, **selector: Any) -> list[torch.Tensor]:
        if self.needs_base:
            raise ValueError(f"{self.name}: {self.needs_base}; pass --base NAME_OR_PATH (base= in Python)")
        if self.layer is not None:
            return module_factors(self.layer, **selector)
        if selector:
            raise ValueError(f"{self.name} is a PEFT module: it takes no selector, got {sorted(selector)}")
        return self.scaled()

    def scaled(self) -> list[torch.Tensor]:
        """PEFT: [scale * B, A] in float32, made on demand (a 7B adapter stays in its stored dtype)."""
        return [self.fixed[0].float() * self.scale, self.fixed[1].float()]

    def factors_with_base(self, w0: torch.Tensor, **selector: Any) -> list[torch.Tensor]:
        """Factors of ΔW = (W0 + update) - W0 given the base weight (d_out x d_in)."""
        return self.from_base(w0) if self.from_base is not None else self.factors(**selector)

    def selectors(self) -> list[dict[str, int]]:
        """One per task for task-routed layers, one per expert for token routers, else ``[{}]``."""
        return default_selectors(self.layer) if self.layer is not None else [{}]


@dataclass
class SavedAdapter:
    path: Path
    format: str  # "peft_lora", "peft_adalora" or "ranklab"
    config: dict[str, Any]
    modules: dict[str, SavedModule]
    base_name: str | None = None  # the base the folder names (PEFT's base_model_name_or_path)
    task_type: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # module -> why it is not in the report
    notes: list[str] = field(default_factory=list)  # what the report of ΔW leaves out


def read_adapter(path: str | Path) -> SavedAdapter:
    """A PEFT LoRA/AdaLoRA or ranklab adapter folder (or a ranklab run folder, whose ``adapter/``
    is read), read without its base model."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; give a saved adapter folder (PEFT: {PEFT_CONFIG}, ranklab: {RANKLAB_CONFIG})")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; give the adapter folder that holds it")
    if (path / RANKLAB_CONFIG).is_file():
        return _read_ranklab(path)
    if (path / PEFT_CONFIG).is_file():
        return _read_peft(path)
    run_adapter = path / ADAPTER_DIR
    if (run_adapter / RANKLAB_CONFIG).is_file() or (run_adapter / PEFT_CONFIG).is_file():
        return read_adapter(run_adapter)  # a run folder of `ranklab train --output`: its adapter
    named = [p for p in sorted(path.iterdir()) if p.is_dir() and (p / PEFT_CONFIG).is_file()]
    if len(named) == 1:  # PEFT's save_pretrained of an adapter not named "default": <folder>/<name>/
        return read_adapter(named[0])
    if named:
        raise ValueError(f"{path} holds several PEFT adapters ({', '.join(p.name for p in named)}); give one of "
                         "their folders")
    raise ValueError(f"{path} is not a saved adapter: it has neither {PEFT_CONFIG} (PEFT save_pretrained, "
                     f"ranklab.export_peft) nor {RANKLAB_CONFIG} (ranklab.save_adapters); it holds "
                     f"{sorted(p.name for p in path.iterdir())[:8]}")


# --- PEFT ----------------------------------------------------------------------------------------
def _peft_weights(path: Path) -> dict[str, torch.Tensor]:
    for name in PEFT_WEIGHTS:
        file = path / name
        if file.is_file():
            try:
                if name.endswith(".safetensors"):
                    from safetensors.torch import load_file

                    return load_file(str(file))
                return torch.load(file, map_location="cpu", weights_only=True)
            except Exception as error:  # damaged files raise library-specific errors
                raise ValueError(f"{file} is damaged or not a weights file ({type(error).__name__}: {error})") from None
    raise ValueError(f"{path} has {PEFT_CONFIG} but no weights ({' or '.join(PEFT_WEIGHTS)})")


def _pattern_value(pattern: dict[str, Any] | None, name: str, default: Any) -> Any:
    """A per-module value of PEFT's rank/alpha patterns, matched as PEFT does (key = a name suffix)."""
    for key in pattern or {}:
        if re.match(rf"(.*\.)?({key})$", name):
            return pattern[key]
    return default


def _group_lora_tensors(weights: dict[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """{module name: {"A": .., "B": .., "E": ..}} and {module: why skipped}."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    skipped: dict[str, str] = {}
    for key, tensor in weights.items():
        match = re.match(r"(.+)\.lora_(A|B|E|embedding_A|embedding_B|magnitude_vector|diag)(\..+)?$", key)
        if match is None:
            continue  # modules_to_save heads and other trainable tensors: not low-rank updates
        name, part = match.group(1), match.group(2)
        if part == "B" and match.group(3) == ".bias":  # PEFT lora_bias=True: a bias update beside ΔW
            modules.setdefault(name, {})["bias"] = tensor
            continue
        if part.startswith("embedding"):
            skipped[name] = "embedding LoRA (not an update of a linear layer)"
        elif part in ("magnitude_vector", "diag"):  # DoRA's m, KaSA's ΔΣ: vectors beside the factors
            modules.setdefault(name, {})[part] = tensor
        else:
            modules.setdefault(name, {})[part] = tensor
    for name in list(modules):
        if name in skipped:
            del modules[name]
        elif any(t.ndim != 2 for p, t in modules[name].items() if p in ("A", "B")) and "E" not in modules[name]:
            skipped[name] = "convolution LoRA (its factors are not matrices)"
            del modules[name]
    return modules, skipped


def _peft_module(name: str, parts: dict[str, torch.Tensor], config: dict[str, Any], adalora: bool) -> SavedModule:
    if "A" not in parts or "B" not in parts:
        raise ValueError(f"{name}: the saved adapter has {sorted(parts)} but needs both lora_A and lora_B")
    a, b = parts["A"], parts["B"]
    relative = name.removeprefix("base_model.model.")
    if adalora:
        init_r = int(config.get("init_r") or a.shape[0])
        alpha = config.get("lora_alpha") or init_r
        scale = alpha / (init_r + 1e-5)  # PEFT: scaling / (ranknum + 1e-5), ranknum = init_r
        a = a.float() * parts["E"].float().reshape(-1, 1)
    else:
        r = a.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern"), relative, config.get("lora_alpha", 8))
        scale = alpha / (r ** 0.5 if config.get("use_rslora") else r) if r else 0.0
    a, b = _block_diagonal(relative, a, b, config.get("use_bdlora"))
    # (d_out x d_in) also for GPT-2's Conv1D (fan_in_fan_out): PEFT stores lora_A / lora_B in
    # nn.Linear's layout there too; only W0's storage (and get_delta_weight) is d_in x d_out
    params = sum(t.numel() for t in parts.values())
    module = SavedModule(name=name, method=PEFT_TYPES["ADALORA" if adalora else "LORA"], params=params,
                         fixed=[b, a], scale=float(scale))
    if "diag" in parts:  # KaSA: s B diag(ΔΣ) A on a base whose r smallest singular components PEFT dropped
        module.fixed = [b.float() * parts["diag"].float(), a]
        module.needs_base = ("a KaSA adapter: PEFT drops W0's r smallest singular components at init, so ΔW relative "
                             "to the base needs W0's SVD")
        module.from_base = lambda w0, m=module: _kasa_factors(w0, m.scaled())
    if "magnitude_vector" in parts:  # DoRA: W' = diag(m / ||W0 + s B A||_rows) (W0 + s B A)
        module.needs_base = "a DoRA adapter: its update rescales each row of W0 + s B A, so ΔW needs W0"
        module.from_base = lambda w0, m=module, g=parts["magnitude_vector"].float(): _dora_factors(w0, m.scaled(), g)
    return module


def _block_diagonal(name: str, a: torch.Tensor, b: torch.Tensor, bdlora: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """BD-LoRA stores a block-diagonal A (or B) as its nblocks diagonal blocks, stacked; PEFT's own
    reconstruction: block_diag(*chunk(weight, nblocks, dim=0)), matched by ``pattern in name``."""
    if not isinstance(bdlora, dict):
        return a, b
    blocks = int(bdlora.get("nblocks") or 1)
    if any(pattern in name for pattern in bdlora.get("target_modules_bd_a") or []):
        a = torch.block_diag(*torch.chunk(a, blocks, dim=0))
    elif any(pattern in name for pattern in bdlora.get("target_modules_bd_b") or []):
        b = torch.block_diag(*torch.chunk(b, blocks, dim=0))
    return a, b


def _kasa_factors(w0: torch.Tensor, update: list[torch.Tensor]) -> list[torch.Tensor]:
    """KaSA's ΔW exactly, as a product of rank <= 2r: s B diag(ΔΣ) A minus W0's r smallest components."""
    first, second = (f.double() for f in update)
    r = second.shape[0]
    u, sigma, vh = torch.linalg.svd(w0.double(), full_matrices=False)  # dense per module, as PEFT does at init
    kept = min(w0.shape) - r
    return [torch.cat([first, -u[:, kept:] * sigma[kept:]], dim=1), torch.cat([second, vh[kept:]], dim=0)]


def _dora_factors(w0: torch.Tensor, update: list[torch.Tensor], magnitude: torch.Tensor) -> list[torch.Tensor]:
    """DoRA's ΔW exactly, dense (d_out x d_in): diag(m / ||W0 + s B A||_rows) (W0 + s B A) - W0, the row
    norm as PEFT's ``get_weight_norm`` (over the input dimension of each output row)."""
    first, second = (f.double() for f in update)
    merged = w0.double() + first @ second
    scale = magnitude.double() / torch.linalg.norm(merged, dim=1)
    return [scale[:, None] * merged - w0.double()]


def _read_peft(path: Path) -> SavedAdapter:
    try:
        config = json.loads((path / PEFT_CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path / PEFT_CONFIG} is damaged ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path / PEFT_CONFIG} holds a JSON {type(config).__name__}, not the object PEFT's "
                         "save_pretrained writes (keys such as peft_type, r, target_modules)")
    peft_type = config.get("peft_type")
    if peft_type not in PEFT_TYPES:
        raise ValueError(f"{path} holds a PEFT {peft_type!r} adapter; ranklab reads {', '.join(PEFT_TYPES)} "
                         "(low-rank updates of linear layers)")
    _refuse_unknown_variants(path, config)
    grouped, skipped = _group_lora_tensors(_peft_weights(path))
    if not grouped:
        raise ValueError(f"{path} holds no LoRA tensors of linear layers" + (f" (skipped: {skipped})" if skipped else ""))
    modules = {name: _peft_module(name, parts, config, peft_type == "ADALORA") for name, parts in grouped.items()}
    return SavedAdapter(path=path, format=PEFT_TYPES[peft_type], config=config, modules=modules,
                        base_name=config.get("base_model_name_or_path") or None, task_type=config.get("task_type"),
                        skipped=skipped, notes=_notes(config, grouped))


# PEFT's LoRA variants (LoraConfig fields tagged is_lora_variant, and init_lora_weights="mica") and
# what the audit of a saved folder does with each; the README's table lists the same.
VARIANTS: dict[str, str] = {
    "use_dora": "exact with --base (dense ΔW per module)",
    "kasa_config": "exact with --base (W0's SVD per module)",
    "use_bdlora": "exact (block-diagonal factors rebuilt)",
    "alora_invocation_tokens": "exact ΔW; applied only from the invocation tokens on",
    "velora_config": "exact (VeLoRA compresses activations for backward only)",
    "monteclora_config": "exact: the mean update PEFT merges (training samples noise around A)",
    "mica": "exact (MiCA freezes B; the update is s B A)",
}
REFUSED_VARIANTS = {"arrow_config": "Arrow routes each token among several LoRA experts: there is no single ΔW "
                                    "per module; audit each expert's adapter folder on its own"}


# LoraConfig options of PEFT 0.21 that leave ΔW = s B A (or are read above: patterns, rsLoRA, fan_in_fan_out,
# lora_bias) or only set up the initial factors; any other truthy "use_*" / "*_config" option of a saved
# config is a variant this ranklab does not know (tests/test_inspect_variants.py keeps both lists in step with PEFT)
_NOT_VARIANTS = {"use_rslora", "eva_config", "lora_ga_config", "runtime_config", "megatron_config", "loftq_config",
                 "corda_config"}
# Initialisations that change W0 itself (PEFT subtracts the initial update from the base): a folder saved without
# PEFT's conversion holds an update relative to a base no one has.
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def active_variants(config: dict[str, Any]) -> list[str]:
    """The LoRA variants a saved PEFT config turns on (known ones and any unknown ``use_*`` /
    ``*_config`` option), without importing PEFT (it pulls in transformers: seconds)."""
    found = set()
    for key, value in config.items():
        if value in (None, False, [], {}, ""):
            continue
        if key in VARIANTS or key in REFUSED_VARIANTS or (
                (key.startswith("use_") or key.endswith("_config")) and key not in _NOT_VARIANTS):
            found.add(key)
    if config.get("init_lora_weights") == "mica":
        found.add("mica")
    return sorted(found)


def _base_changing_init(config: dict[str, Any]) -> str | None:
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):
        return init
    if config.get("loftq_config") and init == "loftq":
        return "loftq"
    return None


def _refuse_unknown_variants(path: Path, config: dict[str, Any]) -> None:
    init = _base_changing_init(config)
    if init:
        raise ValueError(f"{path} was initialised with init_lora_weights={init!r}, which changes W0 itself: its update "
                         "is relative to that changed base; save it with PEFT's conversion "
                         "(save_pretrained(..., path_initial_model_for_weight_conversion=...)) to audit it")
    for variant in active_variants(config):
        if variant in REFUSED_VARIANTS:
            raise ValueError(f"{path}: {REFUSED_VARIANTS[variant]} ({variant})")
        if variant not in VARIANTS:
            raise ValueError(f"{path} uses PEFT's LoRA variant {variant!r}, whose update ranklab does not know; it "
                             f"would need that variant's ΔW formula (known: {', '.join(sorted(VARIANTS))})")
    if config.get("target_parameters"):
        raise ValueError(f"{path} puts LoRA on parameters ({config['target_parameters']}), not on linear layers; "
                         "ranklab audits updates of linear layers")


def _notes(config: dict[str, Any], grouped: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    notes = []
    if any("bias" in parts for parts in grouped.values()):
        notes.append("lora_bias: every module's update also adds a bias (scaling x lora_B.bias); the report is of "
                     "ΔW, the weight update, which that bias leaves unchanged")
    for variant in active_variants(config):
        notes.append(f"{variant}: {VARIANTS[variant]}")
    if config.get("bias") in ("all", "lora_only"):
        notes.append(f"bias={config['bias']!r}: the base's biases were trained too; they are not part of ΔW")
    return notes


# --- ranklab -------------------------------------------------------------------------------------
def _dims(layer_class: type, config: Any, state: dict[str, torch.Tensor], name: str) -> tuple[int, int]:
    """(d_in, d_out) of a saved layer: build it on the meta device with marker sizes and look up
    which saved dimensions sit where the markers are."""
    with torch.device("meta"):
        probe = layer_class(nn.Linear(_PROBE_IN, _PROBE_OUT, bias=False), config, name)
    found: dict[int, int] = {}
    for key, value in probe.state_dict().items():
        if key.startswith("base.") or key not in state:
            continue
        for axis, size in enumerate(value.shape):
            if size in (_PROBE_IN, _PROBE_OUT) and axis < state[key].ndim:
                found.setdefault(size, int(state[key].shape[axis]))
    if set(found) != {_PROBE_IN, _PROBE_OUT}:
        raise ValueError(f"{name}: cannot read its input and output sizes from the saved tensors {sorted(state)}")
    return found[_PROBE_IN], found[_PROBE_OUT]


def _ranklab_module(name: str, config: Any, state: dict[str, torch.Tensor], dims: tuple[int, int] | None,
                    shared: nn.Module | None) -> SavedModule:
    _, layer_class = get_method(config.method)
    d_in, d_out = dims or _dims(layer_class, config, state, name)
    with torch.device("meta"):
        base = nn.Linear(d_in, d_out, bias=False)
    layer = layer_class(base, config, name)
    expected = {k for k in layer.state_dict() if not k.startswith("base.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{name}: saved tensors do not fit a {config.method} layer (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    layer.load_state_dict(state, strict=False, assign=True)  # base.weight stays on the meta device
    if shared is not None:
        layer.use_shared(shared)
    return SavedModule(name=name, method=config.method, params=layer.num_adapter_params(), layer=layer.eval())


def _saved_shapes(meta: dict[str, Any], path: Path) -> dict[str, tuple[int, int]]:
    """[d_in, d_out] by module, as ``save_adapters`` records them (folders before it: none)."""
    shapes = meta.get("module_shapes") or {}
    try:
        return {name: (int(shape[0]), int(shape[1])) for name, shape in shapes.items()}
    except (TypeError, ValueError, IndexError, AttributeError):
        raise ValueError(f"{path / RANKLAB_CONFIG}: module_shapes is damaged ({shapes!r:.80}); save the adapters again") from None


def _shared_state(config: Any, shapes: dict[str, tuple[int, int]], weights: dict[str, torch.Tensor],
                  path: Path) -> nn.Module | None:
    """The method's model-level state (VeRA's projections): rebuilt from the config and the saved
    shapes, then the saved tensors loaded over it."""
    _, layer_class = get_method(config.method)
    saved = {k[len(SHARED_STATE) + 1:]: v for k, v in weights.items() if k.startswith(SHARED_STATE + ".")}
    if not shapes:
        if saved:
            raise ValueError(f"{path / RANKLAB_CONFIG} records no module_shapes; save the adapters again")
        return None
    shared = layer_class.shared_state(config, shapes)
    if shared is None:
        return None
    try:
        shared.load_state_dict(saved, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: the saved shared state does not fit a {config.method} set ({error})") from None
    return shared.eval()


def _read_ranklab(path: Path) -> SavedAdapter:
    from ..saving import _read_weights, read_adapter_config

    meta = read_adapter_config(path)
    config = config_from_dict(meta["config"])
    weights = _read_weights(path)
    shapes = _saved_shapes(meta, path)
    shared = _shared_state(config, shapes, weights, path)
    modules = {}
    for name in meta.get("modules") or []:
        state = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
        modules[name] = _ranklab_module(name, config, state, shapes.get(name), shared)
    if not modules:
        raise ValueError(f"{path / RANKLAB_CONFIG} lists no adapted modules")
    return SavedAdapter(path=path, format="ranklab", config=meta["config"], modules=modules,
                        base_name=_run_backbone(path))


def _run_backbone(path: Path) -> str | None:
    """The backbone of the training run an ``adapter/`` folder belongs to (its ``record.json``), if any."""
    record = path.parent / "record.json"
    try:
        return json.loads(record.read_text()).get("backbone") if record.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
