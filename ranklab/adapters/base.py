"""What every ranklab adapter shares: a config dataclass and a layer wrapping a frozen linear map.

The frozen map is an ``nn.Linear`` or GPT-2's ``Conv1D`` (``ranklab.adapters.targets``); either
way ΔW, its factors and spectra are (d_out x d_in).  An adapter layer computes ``y = W0 x + delta(x)``.  Subclasses implement ``adapter_output``
(the fast path used in forward) and ``factors`` (matrices whose left-to-right product is the
dense delta, scaling folded into the first one).  Everything else - dense delta, merge/unmerge,
parameter counts - is derived here, so a new method is a config plus two methods.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from ..context import current_task
from .targets import ALL_LINEAR, is_conv1d, is_linear_like, linear_shape


# Analysis capabilities a layer declares (``layer.capabilities``).  Analysis, figures, set_rank and the
# contract tests ask for these instead of testing method names, so a new method only declares them.
# The contract tests (tests/test_contract.py) check each promise for every registered method.
MERGEABLE = "mergeable"                    # a static update: merge(), export_peft(), spectra without a selector
MERGEABLE_PER_TASK = "mergeable_per_task"  # static once a task is chosen: merge(task=t), export_peft(task=t)
RANK_SLICEABLE = "rank_sliceable"          # evaluated at every b in .ranks: set_rank(b), factors(rank=b)
TASK_ROUTED = "task_routed"                # gates from a task embedding: gate_probs(t), .n_tasks; needs use_task
TASK_EMBEDDINGS = "task_embeddings"        # a task-embedding table: task_embeddings() (the paper's t-SNE)
RANK_CHOOSING = "rank_choosing"            # picks ranks per task: chosen_rank(t)
EXPERT_ROUTED = "expert_routed"            # per-token gates over .n_experts: factors(expert=i), factors(gates=g)
# The model attribute that holds a method's model-level state (``AdapterLayer.shared_state``).
SHARED_STATE = "ranklab_shared"
CAPABILITIES = (MERGEABLE, MERGEABLE_PER_TASK, RANK_SLICEABLE, TASK_ROUTED, TASK_EMBEDDINGS, RANK_CHOOSING,
                EXPERT_ROUTED)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass
class AdapterConfig:
    """Options shared by every method.  Subclasses add their ranks."""

    target_modules: list[str] | str = field(
        default_factory=lambda: ["query", "value"],
        metadata={"help": "Module-name suffixes to adapt (list), one regex matched with re.fullmatch, or "
                          "'all-linear' (every Linear/Conv1D but the output head, as in PEFT)."},
    )
    alpha: float = field(default=16.0, metadata={"help": "Scaling numerator: s = alpha / rank."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    modules_to_save: list[str] = field(
        default_factory=list,
        metadata={"help": "Module-name suffixes kept trainable and saved with the adapter (e.g. classifier)."},
    )

    method: ClassVar[str] = "base"
    # Which modules a recipe adapts with this method in a decoder: "all-linear", or "ffn" (the MoR
    # paper's FFN projections, for the expert mixtures).  Recipes read this instead of naming methods.
    recipe_targets: ClassVar[str] = "all-linear"
    # Help text of a shared option (alpha, r, ...) where this method reads it differently (CLI help).
    option_help: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        self.target_modules = _all_linear_shorthand(self.target_modules)
        if self.target_modules == ALL_LINEAR:
            pass
        elif isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as error:
                raise ValueError(f"target_modules {self.target_modules!r} is not a valid regex: {error}") from None
        elif isinstance(self.target_modules, (list, tuple)) and all(isinstance(t, str) for t in self.target_modules):
            self.target_modules = list(self.target_modules)
            if not self.target_modules:
                raise ValueError("target_modules is empty: give module-name suffixes or a regex")
        else:
            raise ValueError(f"target_modules must be a list of module-name suffixes or one regex string, "
                             f"got {self.target_modules!r}")
        self.modules_to_save = _as_list(self.modules_to_save)
        check_real("alpha", self.alpha, low=0.0, low_inclusive=False)
        check_real("dropout", self.dropout, low=0.0, high=1.0)

    @classmethod
    def examples(cls) -> list["AdapterConfig"]:
        """Small valid configs (fit a 32 x 32 module) covering the method's variants; the
        contract tests run every one.  Override where the defaults do not fit or need options."""
        return [cls()]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, Any]:
        """Options that give this method the place of a LoRA of rank ``rank`` in recipes and the
        demo (its rank, or ranks of a matching budget).  Methods without an ``r`` override this."""
        if "r" not in {f.name for f in dataclasses.fields(cls)}:
            raise NotImplementedError(f"method {cls.method!r} has no option 'r': its config must define at_rank()")
        return {"r": rank}

    @classmethod
    def example(cls) -> "AdapterConfig":
        return cls.examples()[0]

    def matches(self, module_name: str) -> bool:
        """Does a module's qualified name select it for adaptation?  ("all-linear" selects by
        module type and model: ``ranklab.attach`` resolves it.)"""
        if self.target_modules == ALL_LINEAR:
            return True
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, module_name) is not None
        return any(module_name == t or module_name.endswith("." + t) for t in self.target_modules)

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        """Raise ValueError if the ranks do not fit a (d_out x d_in) layer.  Override per method."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterConfig":
        data = dict(data)
        method = data.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"config is for method {method!r}, not {cls.method!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.method} config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**data)


def _all_linear_shorthand(target_modules: Any) -> Any:
    """PEFT's "all-linear" (any case; also as the one item of a list, as the CLI gives it)."""
    items = [target_modules] if isinstance(target_modules, str) else target_modules
    if isinstance(items, (list, tuple)) and any(isinstance(t, str) and t.lower() == ALL_LINEAR for t in items):
        if len(items) != 1:
            raise ValueError(f"{ALL_LINEAR!r} stands alone in target_modules, got {list(items)!r}")
        return ALL_LINEAR
    return target_modules


def check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def check_real(name: str, value: object, low: float | None = None, high: float | None = None,
               low_inclusive: bool = True) -> None:
    """A finite real number (not a string or bool) in [low, high) (or (low, high))."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    if too_low or (high is not None and value >= high):
        interval = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(repr(v) for v in valid)}; got {value!r}")


def check_rank(name: str, value: int, d_in: int, d_out: int, module_name: str) -> None:
    """A rank must be a positive int no larger than min(d_in, d_out)."""
    check_positive_int(name, value)
    limit = min(d_in, d_out)
    if value > limit:
        raise ValueError(
            f"{name}={value} is larger than min(d_in, d_out)={limit} of {module_name} "
            f"({d_out} x {d_in}); valid range is 1..{limit}"
        )


def shared_sizes(shared: nn.Module | None) -> tuple[int, int]:
    """(trainable, frozen) elements of a method's shared state (``AdapterLayer.shared_state``)."""
    if shared is None:
        return 0, 0
    trainable = sum(p.numel() for p in shared.parameters() if p.requires_grad)
    frozen = sum(t.numel() for t in shared.buffers()) + sum(p.numel() for p in shared.parameters() if not p.requires_grad)
    return trainable, frozen


def kaiming_(weight: torch.Tensor) -> torch.Tensor:
    """nn.Linear's default init, the one LoRA (and PEFT) uses for A."""
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def chain(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Left-to-right matrix product, cheapest order for tall-skinny-tall chains."""
    product = factors[-1]
    for matrix in reversed(factors[:-1]):
        product = matrix @ product
    return product


class HookPoint(nn.Identity):
    """Names a tensor inside a layer so that forward hooks can read it (TransformerLens style).

    Routers pass their gates through ``self.hook_gates``; ``RouterProbe`` hooks these modules, so it
    sees exactly the gates of each forward pass (a merged layer skips its router, and no hook fires).
    """


class AdapterLayer(nn.Module):
    """A frozen ``nn.Linear`` (or GPT-2 ``Conv1D``) plus a trainable low-rank update."""

    mergeable: ClassVar[bool] = True
    # Parameter name (first component) -> accounting part; names not listed count under their own name.
    param_parts: ClassVar[dict[str, str]] = {}

    @property
    def capabilities(self) -> frozenset[str]:
        """What analysis can ask of this layer (names from ``CAPABILITIES``); override per method."""
        return frozenset({MERGEABLE})

    def __init__(self, base: nn.Module, config: AdapterConfig, module_name: str = "module") -> None:
        super().__init__()
        if not is_linear_like(base):
            raise ValueError(f"{module_name} is {type(base).__name__}; ranklab adapts nn.Linear and "
                             "transformers' Conv1D (GPT-2) only")
        self._d_in, self._d_out = linear_shape(base)
        # Conv1D stores W0 as (d_in x d_out): merging adds ΔW transposed (PEFT's fan_in_fan_out)
        self.fan_in_fan_out = is_conv1d(base)
        config.check_shape(self._d_in, self._d_out, module_name)
        self.base = base
        self.config = config
        self.module_name = module_name
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.merged_with: dict[str, Any] | None = None  # the selector used by merge(), if merged
        for p in self.base.parameters():
            p.requires_grad_(False)

    # --- what a method implements -------------------------------------------------------------
    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        """delta(x) for a batch of inputs (..., d_in) -> (..., d_out)."""
        raise NotImplementedError

    def factors(self, **selector: Any) -> list[torch.Tensor]:
        """Matrices [F1, ..., Fk] with F1 @ ... @ Fk == delta_weight(**selector), scaling in F1."""
        raise NotImplementedError

    # --- derived ------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self._d_in

    @property
    def d_out(self) -> int:
        return self._d_out

    def base_weight(self) -> torch.Tensor:
        """W0 as a (d_out x d_in) matrix (a transposed view for Conv1D)."""
        return self.base.weight.T if self.fan_in_fan_out else self.base.weight

    def _stored(self, delta: torch.Tensor) -> torch.Tensor:
        """A (d_out x d_in) update in the base weight's storage layout and dtype."""
        return (delta.T if self.fan_in_fan_out else delta).to(self.base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged_with is not None:
            self._check_merged_task()
            return out
        x = self.dropout(x)
        own = next(iter(self._parameters.values()), None)  # O(1): the adapter's first own parameter
        if own is not None and x.dtype != own.dtype:
            x = x.to(own.dtype)
        return out + self.adapter_output(x).to(out.dtype)

    def delta_weight(self, **selector: Any) -> torch.Tensor:
        """Dense (d_out x d_in) update; for tests, merging and small-model inspection."""
        return chain(self.factors(**selector))

    def lora_factors(self, **selector: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) of a plain LoRA with scaling 1 equal to this update (for export)."""
        mats = self.factors(**selector)
        if len(mats) == 2:
            return mats[0], mats[1]
        inner = min(range(len(mats) - 1), key=lambda i: mats[i].shape[1])  # narrowest bond
        return chain(mats[: inner + 1]), chain(mats[inner + 1 :])

    def resolve_selector(self, **selector: Any) -> dict[str, Any]:
        """The selector with its defaults filled in (e.g. the current task), as merge() records it."""
        return dict(selector)

    def _check_merged_task(self) -> None:
        """A layer merged for one task must not silently serve another."""
        merged, current = self.merged_with.get("task"), current_task()
        if merged is not None and current is not None and current != merged:
            raise ValueError(f"{self.module_name} is merged for task {merged}; unmerge() before running task {current}")

    @torch.no_grad()
    def merge(self, **selector: Any) -> None:
        if not self.mergeable:
            raise ValueError(f"{self.config.method} adapters depend on the input and cannot merge")
        if self.merged_with is not None:
            raise ValueError(f"{self.module_name} is already merged; unmerge() first")
        selector = self.resolve_selector(**selector)
        self.base.weight += self._stored(self.delta_weight(**selector))
        self.merged_with = selector

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged_with is None:
            raise ValueError(f"{self.module_name} is not merged")
        self.base.weight -= self._stored(self.delta_weight(**self.merged_with))
        self.merged_with = None

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("base.")]

    def num_adapter_params(self) -> int:
        return sum(p.numel() for p in self.adapter_parameters())

    def param_counts(self) -> dict[str, int]:
        """Trainable adapter parameters grouped by part (A, B, T, router, ...), from the layer itself."""
        parts: dict[str, int] = {}
        for name, p in self.named_parameters():
            if name.startswith("base."):
                continue
            head = name.split(".", 1)[0]
            part = self.param_parts.get(head, head)
            parts[part] = parts.get(part, 0) + p.numel()
        return parts

    @classmethod
    def count_for_shape(cls, config: AdapterConfig, d_in: int, d_out: int) -> dict[str, int]:
        """``param_counts`` of a layer on a (d_out x d_in) module, built on the meta device (no memory)."""
        with torch.device("meta"):
            layer = cls(nn.Linear(d_in, d_out, bias=False), config)
        return layer.param_counts()

    # --- model-level state shared by every layer (VeRA's frozen projections) ------------------------
    @classmethod
    def shared_state(cls, config: AdapterConfig, shapes: Mapping[str, tuple[int, int]]) -> nn.Module | None:
        """State every layer of this method shares, built once from the config and the adapted
        modules' (d_in, d_out) shapes by name; None (the default): the method has none.

        ``attach`` puts it on the model as ``model.ranklab_shared`` and gives each layer a reference
        (``self.shared``), so ``.to()``, ``.double()`` and ``state_dict`` see it once and ties hold.
        Saved once: its parameters and persistent buffers; non-persistent buffers are rebuilt from
        the config (e.g. a seed) when loading.  Trainable parameters here are counted once."""
        return None

    def use_shared(self, shared: nn.Module) -> None:
        self.__dict__["_shared"] = shared  # a reference, not a submodule: the model owns it, once

    @property
    def shared(self) -> nn.Module:
        """The model's shared state; a layer used on its own builds a private one for its shape."""
        shared = self.__dict__.get("_shared")
        if shared is None:
            shared = type(self).shared_state(self.config, {self.module_name: (self.d_in, self.d_out)})
            if shared is None:
                raise ValueError(f"method {self.config.method!r} has no shared state")
            self.use_shared(shared)
        return shared

    @classmethod
    def peft_export(cls, config: AdapterConfig, layers: Mapping[str, "AdapterLayer"],
                    shared: nn.Module | None) -> tuple[Any, dict[str, torch.Tensor]] | None:
        """(PEFT config, tensors by PEFT key) where PEFT has this method itself; None (the default):
        ``export_peft`` writes the static update as a plain PEFT LoRA."""
        return None

    @classmethod
    def on_detach(cls, model: nn.Module, layers: dict[str, "AdapterLayer"]) -> None:
        """Called once when the adapters leave the model (undo what ``on_attach`` installed)."""

    @classmethod
    def on_attach(cls, model: nn.Module, layers: dict[str, "AdapterLayer"]) -> None:
        """Called once by ``attach`` with all new layers (e.g. to install a model-level hook)."""

    def after_optimizer_step(self, step: int) -> None:
        """Called by the trainer after every optimizer step (``step`` counts from 1); default none."""

    def extra_loss(self) -> torch.Tensor | None:
        """An auxiliary loss the trainer adds (e.g. a router's contrastive loss); None if none."""
        return None

    def extra_repr(self) -> str:
        fields = {k: v for k, v in self.config.to_dict().items() if k not in ("target_modules", "modules_to_save")}
        return ", ".join(f"{k}={v}" for k, v in fields.items())
