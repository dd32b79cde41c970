"""Task-specific rank allocation (seed paper 1, multi-task; its long version is MoRE, arXiv 2505.22694).

Each rank of a LoRA update is an expert.  Per adapted module: A (r x d_in), B (d_out x r), a
task-embedding table E (n_tasks x d_in) and a gate ``p = softmax(Linear(d_in -> r)(E[t]))``.
The task id comes from ``with ranklab.use_task(t):`` (one task per batch).

- ``selection="prefix"`` (MoRE): k = argmax p; z = p - p.detach() + onehot(k); the update uses
  ranks 0..k.  DECISION: we write it as ``s * B diag(c) A x`` with c_i = sum_{j >= i} z_j (the
  prefix mask in value).  Its forward value equals DESIGN's ``s * z[k] * B[:, :k+1] A[:k+1] x``
  and the gradient reaching p_k is the same; in addition every p_j receives <dL/dy, prefix_j(x)>
  (the usual straight-through gradient of the mixture sum_j z_j prefix_j), so the gate sees
  which *other* rank would lower the loss.  ``straight_through="chosen"`` keeps the literal form.
- ``selection="soft"``: c = p.  ``selection="topk"``: c = p on the top_k ranks, renormalised.
- DECISION (``gate_init="full"``, default): gate weight 0 and bias rising with the rank, so every
  task starts at the full rank and every rank gets trained; tasks then learn to shrink.  A random
  start (``gate_init="random"``, MoRE's) leaves ranks above every task's choice untrained.
- Contrastive loss (MoRE): q = normalize(x[:, 0]) (this layer's input at the first token, before
  the adapter dropout, kept from the last forward), L_cl = CE(q . normalize(E)^T / temperature, t).
  ``contrastive_detach=True`` (ranklab's default) detaches q: the loss shapes E, not the hidden
  states; ``False`` is MoRE's code, where the loss also trains the layers below.  ``extra_loss()``
  returns ``contrastive_weight * L_cl / n_modules`` (n_modules = number of rank-router layers, set
  by attach), so the trainer's sum of ``extra_loss()`` over layers is weight * mean over modules.

MoRE's released code (NLPfreshman0/MoRE, peft/tuners/lora/layer.py, class ``Linear``;
transformers/models/t5/modeling_t5.py adds ``0.1 * mean cl_loss`` of the encoder's modules) is
``MORE_OPTIONS``: ``gate_init="more"`` (gate weight ``kaiming_uniform_(mode="fan_in",
nonlinearity="relu")``, nn.Linear's default bias, E ~ N(0, 0.01)), ``rank_scaling="linear"``
(fixed factors (i+1)/r on row i of A and column i of B, so rank i's term is scaled by
((i+1)/r)^2; the code hard-codes the eight values 0.125..1.0 for r = 8), the contrastive loss
through the hidden states, ``straight_through="chosen"`` (the chosen rank's z_k = p_k - sg(p_k) + 1
multiplies the whole prefix update), adapter dropout 0.1 on the update's input, weight 0.1 and
temperature 0.05.  Not copied: the released code builds a task -> rank map on the first forward
and never leaves it (``self.init`` is set before the gated branch is reached), so its choice stays
at initialisation; ours learns.

Per task the update is static: ``factors(task=t)`` is a plain LoRA of the chosen rank, so it
merges (``merge(task=t)``) and exports (``export_peft(model, path, task=t)``) per task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..context import resolve_task
from .base import MERGEABLE_PER_TASK, RANK_CHOOSING, TASK_EMBEDDINGS, TASK_ROUTED
from .base import AdapterConfig, AdapterLayer, HookPoint, check_choice, check_positive_int, check_rank, kaiming_

SELECTIONS = ("prefix", "soft", "topk")
STRAIGHT_THROUGH = ("all", "chosen")
GATE_INITS = ("full", "random", "more")
RANK_SCALINGS = ("none", "linear")
# MoRE's released code (see the module docstring), as rank_router options.
MORE_OPTIONS = {"selection": "prefix", "straight_through": "chosen", "gate_init": "more", "rank_scaling": "linear",
                "contrastive_detach": False, "contrastive_weight": 0.1, "contrastive_temperature": 0.05,
                "dropout": 0.1}


@dataclass
class RankRouterConfig(AdapterConfig):
    r: int = field(default=16, metadata={"help": "Largest rank (size of A and B); each rank is an expert."})
    n_tasks: int | None = field(default=None, metadata={"help": "Number of tasks (rows of the task-embedding table)."})
    selection: str = field(default="prefix", metadata={"help": "prefix (MoRE), soft or topk."})
    top_k: int = field(default=2, metadata={"help": "Ranks kept by selection='topk'."})
    contrastive_weight: float = field(default=0.0, metadata={"help": "Weight of the contrastive loss on E (MoRE: 0.1)."})
    contrastive_temperature: float = field(default=0.05, metadata={"help": "Temperature of the contrastive loss."})
    straight_through: str = field(default="all", metadata={"help": "prefix gradient: all ranks (mixture) or the chosen one."})
    gate_init: str = field(default="full", metadata={
        "help": "full: every task starts at rank r; random: nn.Linear's default; more: MoRE's code."})
    rank_scaling: str = field(default="none", metadata={
        "help": "none, or linear: MoRE's fixed (i+1)/r on row i of A and column i of B."})
    contrastive_detach: bool = field(default=True, metadata={
        "help": "Detach the hidden states in the contrastive loss (False: MoRE's code, the loss reaches them)."})
    method = "rank_router"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)
        if self.n_tasks is None:
            raise ValueError("rank_router needs n_tasks (the number of tasks, an int >= 1)")
        check_positive_int("n_tasks", self.n_tasks)
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("straight_through", self.straight_through, STRAIGHT_THROUGH)
        check_choice("gate_init", self.gate_init, GATE_INITS)
        check_choice("rank_scaling", self.rank_scaling, RANK_SCALINGS)
        if not isinstance(self.contrastive_detach, bool):
            raise ValueError(f"contrastive_detach must be True or False, got {self.contrastive_detach!r}")
        check_positive_int("top_k", self.top_k)
        if self.selection == "topk" and self.top_k > self.r:  # only top-k selection uses it
            raise ValueError(f"top_k={self.top_k} must be in 1..r={self.r}")
        if self.contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0, got {self.contrastive_weight}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")

    @classmethod
    def examples(cls) -> list["RankRouterConfig"]:
        return [cls(r=4, n_tasks=2), cls(r=4, n_tasks=2, selection="soft"),
                cls(r=4, n_tasks=2, selection="topk", top_k=2, contrastive_weight=0.1),
                cls(r=4, n_tasks=2, **MORE_OPTIONS)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"r": 2 * rank}  # seed paper 1 compares its router at r=16 with LoRA r=8 and r=16

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("r", self.r, d_in, d_out, module_name)


class RankRouterLayer(AdapterLayer):
    param_parts = {"lora_A": "A", "lora_B": "B", "task_embedding": "task_embeddings", "gate": "router"}
    capabilities = frozenset({TASK_ROUTED, TASK_EMBEDDINGS, RANK_CHOOSING, MERGEABLE_PER_TASK})

    def __init__(self, base: nn.Linear, config: RankRouterConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        r = config.r
        self.scaling = config.alpha / r
        self.lora_A = nn.Parameter(kaiming_(torch.empty(r, self.d_in)))
        self.lora_B = nn.Parameter(torch.zeros(self.d_out, r))
        self.task_embedding = nn.Parameter(torch.randn(config.n_tasks, self.d_in) * self.d_in ** -0.5)
        self.gate = nn.Linear(self.d_in, r)
        with torch.no_grad():
            if config.gate_init == "full":
                self.gate.weight.zero_()
                self.gate.bias.copy_(torch.linspace(0.0, 1.0, r))
            elif config.gate_init == "more":
                nn.init.kaiming_uniform_(self.gate.weight, mode="fan_in", nonlinearity="relu")
                nn.init.normal_(self.task_embedding, mean=0.0, std=0.01)
        self.n_modules = 1  # rank-router layers in the model; set by on_attach, divides extra_loss
        self.hook_gates = HookPoint()  # sees the gate probabilities p (r,) of every forward
        self._query: torch.Tensor | None = None  # normalize(x[:, 0]) of the last forward
        self._query_task: int | None = None  # its task, the contrastive loss's target

    @classmethod
    def on_attach(cls, model: nn.Module, layers: dict[str, "RankRouterLayer"]) -> None:
        for layer in layers.values():
            layer.n_modules = len(layers)

    @property
    def n_tasks(self) -> int:
        return self.config.n_tasks

    # --- gate -------------------------------------------------------------------------------
    def resolve_selector(self, task: int | None = None) -> dict[str, int]:
        return {"task": self._task(task)}

    def _task(self, task: int | None) -> int:
        return resolve_task(task, self.config.n_tasks, required_by="rank_router")

    def _probs(self, task: int) -> torch.Tensor:
        return torch.softmax(self.gate(self.task_embedding[task]), dim=-1)

    def _rank_weights(self, p: torch.Tensor) -> torch.Tensor:
        """Per-rank weights c (r,) used in forward: B diag(c) A."""
        config = self.config
        if config.selection == "soft":
            return p
        if config.selection == "topk":
            mask = torch.zeros_like(p).scatter(0, p.topk(config.top_k).indices, 1.0)
            kept = p * mask
            return kept / kept.sum()
        k = int(p.argmax())
        z = p - p.detach() + F.one_hot(torch.tensor(k, device=p.device), p.numel()).to(p.dtype)
        if config.straight_through == "chosen":
            return z[k] * (torch.arange(p.numel(), device=p.device) <= k).to(p.dtype)
        return z.flip(0).cumsum(0).flip(0)  # c_i = sum_{j >= i} z_j

    def rank_scale(self) -> torch.Tensor:
        """The fixed factors g (r,) on row i of A and column i of B: (i+1)/r (MoRE) or 1; from the
        config, so never trained, saved or checkpointed."""
        r = self.config.r
        g = torch.ones(r) if self.config.rank_scaling == "none" else torch.arange(1, r + 1) / r
        return g.to(device=self.lora_A.device, dtype=self.lora_A.dtype)

    def gate_probs(self, task: int) -> torch.Tensor:
        """Gate probabilities p (r,) of a task (softmax of the gate), detached."""
        with torch.no_grad():
            return self._probs(self._task(task))

    def chosen_rank(self, task: int) -> int:
        """Ranks the task uses: k + 1 for prefix, top_k for topk, nonzero gates for soft."""
        with torch.no_grad():
            return int((self._rank_weights(self._probs(self._task(task))) != 0).sum())

    def task_embeddings(self) -> torch.Tensor:
        """The task-embedding table E (n_tasks, d_in), detached."""
        return self.task_embedding.detach()

    # --- adapter ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged_with is None:  # the contrastive query: this layer's input before the dropout
            first = x[..., 0, :] if x.dim() >= 3 else x  # (batch, seq, d) -> first token
            first = first.reshape(-1, self.d_in)
            self._query = F.normalize(first.detach() if self.config.contrastive_detach else first, dim=-1)
        return super().forward(x)

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        task = self._task(None)
        p = self.hook_gates(self._probs(task))
        c = self._rank_weights(p) * self.rank_scale().square()  # g_i on A's row and B's column: g_i^2
        self._query_task = task
        return ((x @ self.lora_A.T) * c) @ self.lora_B.T * self.scaling

    def factors(self, task: int | None = None) -> list[torch.Tensor]:
        """[s B[:, used] diag(c g^2), A[used]] for task t (default: the current ``use_task``)."""
        task = self._task(task)
        c = self._rank_weights(self._probs(task))
        used = (c.detach() != 0).nonzero().flatten()
        weights = c[used] * self.rank_scale()[used].square() * self.scaling
        return [self.lora_B[:, used] * weights, self.lora_A[used]]

    # --- contrastive loss -------------------------------------------------------------------
    def contrastive_loss(self) -> torch.Tensor | None:
        """Unweighted L_cl of the last forward (None before any forward)."""
        if self._query is None:
            return None
        q = self._query.to(self.task_embedding.dtype)
        logits = q @ F.normalize(self.task_embedding, dim=-1).T / self.config.contrastive_temperature
        target = torch.full((q.shape[0],), self._query_task, dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)

    def extra_loss(self) -> torch.Tensor | None:
        if self.config.contrastive_weight == 0:
            return None
        loss = self.contrastive_loss()
        return None if loss is None else loss * (self.config.contrastive_weight / self.n_modules)


def rank_router_layers(model: nn.Module) -> dict[str, RankRouterLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, RankRouterLayer)}


def contrastive_loss(model: nn.Module) -> torch.Tensor:
    """Mean unweighted L_cl over the model's rank-router layers, for logging.

    The trainer's loss already gets weight * this mean through ``extra_loss()``; do not add both.
    """
    losses = [loss for layer in rank_router_layers(model).values() if (loss := layer.contrastive_loss()) is not None]
    if not losses:
        raise ValueError("no rank_router layer has run a forward pass yet (or the model has none)")
    return torch.stack(losses).mean()


def chosen_ranks(model: nn.Module, task: int) -> dict[str, int]:
    """Rank used by each module for a task."""
    return {name: layer.chosen_rank(task) for name, layer in rank_router_layers(model).items()}
