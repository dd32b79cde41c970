"""Mixture of Ranks (Tang et al., arXiv 2410.13408): shared A, B and per-expert scaling vectors.

``D_i = s * diag(lambda_B,i) B diag(lambda_A,i) A`` and ``delta(x) = sum_i g_i(x) D_i x`` with
``g = softmax(W_r x)`` per token (router="token": dense softmax, no top-k, no balance loss) or
``g = softmax(W_r E[t])`` per task (router="task": static per task, so it merges and exports).
Lambdas start at 1 (DECISION), A kaiming-uniform, B zeros, s = alpha / r.

Vector stack, one batched pass.  Writing Omega_A (N x r), Omega_B (N x d_out), h = A x:
    delta_o = s * sum_{i,j} (g_i Omega_A[i,j] h_j) * (Omega_B[i,o] B[o,j])
The second bracket K[(i,j), o] does not depend on the input, so the token router is one GEMM
``(g x Omega_A x h).flatten(N*r) @ K``: the same multiply-adds as DESIGN's ``(H B^T) * Omega_B``
without materialising the (batch, seq, N, d_out) tensor.  With one gate vector g for the whole
batch the update collapses to ``s * (B * (Omega_B^T diag(g) Omega_A)) A``, a rank-r LoRA.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import Any

import torch
from torch import nn

from ..context import resolve_task
from .base import EXPERT_ROUTED, MERGEABLE_PER_TASK, TASK_EMBEDDINGS, TASK_ROUTED
from .base import AdapterConfig, AdapterLayer, HookPoint, check_choice, check_positive_int, check_rank, kaiming_

ROUTERS = ("token", "task")


@dataclass
class MorConfig(AdapterConfig):
    r: int = field(default=32, metadata={"help": "Rank of the shared A and B."})
    n_experts: int = field(default=8, metadata={"help": "Number of experts (scaling-vector pairs)."})
    router: str = field(default="token", metadata={"help": "token: softmax(W_r x) per token; task: per task, mergeable."})
    n_tasks: int | None = field(default=None, metadata={"help": "Number of tasks; needed by router='task'."})
    method = "mor"
    recipe_targets = "ffn"  # the MoR paper adapts a decoder's FFN

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("r", self.r)
        check_positive_int("n_experts", self.n_experts)
        check_choice("router", self.router, ROUTERS)
        if self.router == "task" and self.n_tasks is None:
            raise ValueError("mor with router='task' needs n_tasks (the number of tasks, an int >= 1)")
        if self.n_tasks is not None:  # accepted (and ignored) by router='token'
            check_positive_int("n_tasks", self.n_tasks)

    @classmethod
    def examples(cls) -> list["MorConfig"]:
        return [cls(r=4, n_experts=3), cls(r=4, n_experts=3, router="task", n_tasks=2)]

    @classmethod
    def at_rank(cls, rank: int) -> dict[str, int]:
        return {"r": rank, "n_experts": 8}  # the MoR paper: 8 experts sharing one rank-r pair

    def check_shape(self, d_in: int, d_out: int, module_name: str = "module") -> None:
        check_rank("r", self.r, d_in, d_out, module_name)


class MorLayer(AdapterLayer):
    param_parts = {"mor_A": "A", "mor_B": "B", "lambda_A": "lambdas", "lambda_B": "lambdas", "router": "router", "task_embedding": "task_embeddings"}

    def __init__(self, base: nn.Linear, config: MorConfig, module_name: str = "module") -> None:
        super().__init__(base, config, module_name)
        r, n = config.r, config.n_experts
        self.scaling = config.alpha / r
        self.mor_A = nn.Parameter(kaiming_(torch.empty(r, self.d_in)))
        self.mor_B = nn.Parameter(torch.zeros(self.d_out, r))
        self.lambda_A = nn.Parameter(torch.ones(n, r))  # Omega_A: row i is lambda_A,i
        self.lambda_B = nn.Parameter(torch.ones(n, self.d_out))  # Omega_B
        if config.router == "task":
            self.task_embedding = nn.Parameter(torch.randn(config.n_tasks, self.d_in) * self.d_in ** -0.5)
        self.router = nn.Linear(self.d_in, n, bias=False)
        self.hook_gates = HookPoint()  # sees the gates of every forward: (..., N) per token, (N,) per task

    @property
    def mergeable(self) -> bool:  # type: ignore[override]
        return self.config.router == "task"

    @property
    def capabilities(self) -> frozenset[str]:
        if self.config.router == "task":
            return frozenset({TASK_ROUTED, TASK_EMBEDDINGS, MERGEABLE_PER_TASK})
        return frozenset({EXPERT_ROUTED})

    @property
    def n_tasks(self) -> int | None:
        return self.config.n_tasks

    @property
    def n_experts(self) -> int:
        return self.config.n_experts

    # --- routing ----------------------------------------------------------------------------
    def resolve_selector(self, **selector: Any) -> dict[str, Any]:
        if self.config.router == "task" and not {"expert", "gates"} & set(selector):
            return {"task": self._task(selector.get("task"))}
        return dict(selector)

    def _task(self, task: int | None) -> int:
        if self.config.router != "task":
            raise ValueError("mor with router='token' has no tasks; use router='task' for per-task gates")
        return resolve_task(task, self.config.n_tasks, required_by="mor with router='task'")

    def _task_gates(self, task: int) -> torch.Tensor:
        return torch.softmax(self.router(self.task_embedding[task]), dim=-1)

    def gate_probs(self, task: int) -> torch.Tensor:
        """Expert gates (N,) of a task (router='task'), detached."""
        with torch.no_grad():
            return self._task_gates(self._task(task))

    def task_embeddings(self) -> torch.Tensor:
        """The task-embedding table E (n_tasks, d_in) of router='task', detached."""
        self._task(0)  # raises for the token router
        return self.task_embedding.detach()

    def mixed_B(self, gates: torch.Tensor) -> torch.Tensor:
        """sum_i g_i diag(lambda_B,i) B diag(lambda_A,i) (d_out x r) for one gate vector (N,)."""
        n = self.config.n_experts
        if gates.shape != (n,):
            raise ValueError(f"gates must have shape ({n},) (one weight per expert), got {tuple(gates.shape)}")
        return self.mor_B * ((self.lambda_B * gates[:, None]).T @ self.lambda_A)

    # --- adapter ----------------------------------------------------------------------------
    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.mor_A.T  # (..., r)
        if self.config.router == "task":
            task = self._task(None)
            gates = self.hook_gates(self._task_gates(task))
            return h @ self.mixed_B(gates).T * self.scaling
        gates = self.hook_gates(torch.softmax(self.router(x), dim=-1))  # (..., N)
        coef = (gates[..., :, None] * self.lambda_A) * h[..., None, :]  # (..., N, r)
        kernel = (self.lambda_B[:, None, :] * self.mor_B.T).reshape(-1, self.d_out)  # (N*r, d_out)
        return coef.flatten(-2) @ kernel * self.scaling

    def factors(
        self, expert: int | None = None, task: int | None = None, gates: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Two factors [s * mixed B, A]: ``expert=i`` (D_i), ``gates=g`` (N,), or ``task=t``.

        With no selector the task router uses the current ``use_task``; the token router is
        input-dependent and raises.
        """
        given = [name for name, v in (("expert", expert), ("task", task), ("gates", gates)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one selector of expert=, task=, gates=; got {given}")
        if expert is not None:
            n = self.config.n_experts
            if not isinstance(expert, int) or not 0 <= expert < n:
                raise ValueError(f"expert must be an int in 0..{n - 1}, got {expert!r}")
            gates = torch.zeros(n, dtype=self.mor_B.dtype, device=self.mor_B.device)
            gates[expert] = 1.0
        elif gates is None:
            if self.config.router == "token":
                raise ValueError(
                    "mor with router='token' is input-dependent (gates per token): its update has "
                    "no single factorisation; use factors(expert=i) or factors(gates=g) with g of shape "
                    f"({self.config.n_experts},)"
                )
            gates = self._task_gates(self._task(task))
        return [self.mixed_B(gates.to(self.mor_B)) * self.scaling, self.mor_A]


def mor_loop_reference(layer: MorLayer, x: torch.Tensor, gates: torch.Tensor | None = None,
                       dense: bool = True) -> torch.Tensor:
    """DESIGN's ``sum_i G_i(x) D_i x`` with a Python loop over experts: the vector stack's reference
    in the tests, the benchmark and notebook 05 (never used in forward).

    ``gates`` (..., N) default to the token router's softmax(W_r x).  ``dense=True`` builds each
    D_i = s diag(lambda_B,i) B diag(lambda_A,i) A as a (d_out x d_in) matrix; ``dense=False``
    applies each expert in factored form, the fastest loop (h = A x computed once).
    """
    gates = torch.softmax(layer.router(x), dim=-1) if gates is None else gates
    out = torch.zeros(*x.shape[:-1], layer.d_out, dtype=x.dtype, device=x.device)
    h = None if dense else x @ layer.mor_A.T
    for i in range(layer.n_experts):
        if dense:
            d_i = layer.lambda_B[i][:, None] * layer.mor_B * layer.lambda_A[i][None, :] @ layer.mor_A
            expert = x @ d_i.T
        else:
            expert = ((h * layer.lambda_A[i]) @ layer.mor_B.T) * layer.lambda_B[i]
        out = out + gates[..., i : i + 1] * expert
    return out * layer.scaling
