"""Per-task heads over one shared (adapted) encoder.

The backbone's own head module (``classifier`` for BERT and RoBERTa) is replaced by
``TaskHeads``, which holds one copy per task and dispatches on ``ranklab.current_task()``.
The model's forward is untouched, so whatever the family feeds its head (RoBERTa: token
states; BERT: the dropped-out pooled state) reaches the right task's head.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from torch import nn

from ..context import current_task


class TaskHeads(nn.Module):
    def __init__(self, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        task = current_task(required_by="a multi-task model's heads")
        if not 0 <= task < len(self.heads):
            raise ValueError(f"task id {task} out of range: this model has {len(self.heads)} task heads")
        return self.heads[task](*args, **kwargs)


def _with_outputs(head: nn.Module, num_labels: int, init_std: float) -> nn.Module:
    """A copy of ``head`` whose last Linear is new, with ``num_labels`` outputs."""
    head = copy.deepcopy(head)
    linears = [(name, m) for name, m in head.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head {type(head).__name__} has no nn.Linear output layer")
    name, last = linears[-1]
    new = nn.Linear(last.in_features, num_labels, bias=last.bias is not None)
    nn.init.normal_(new.weight, std=init_std)  # transformers' init for classifier weights
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    if name == "":
        return new
    head.set_submodule(name, new)
    return head


def add_task_heads(model: nn.Module, num_labels: Sequence[int], head_module: str = "classifier") -> TaskHeads:
    """Replace ``model.<head_module>`` by one head per task; task 0 keeps the original head."""
    try:
        original = model.get_submodule(head_module)
    except AttributeError:
        raise ValueError(f"model has no head module {head_module!r}; set TrainConfig.head_module") from None
    init_std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    heads = [original if i == 0 else _with_outputs(original, n, init_std) for i, n in enumerate(num_labels)]
    first_out = [m for m in original.modules() if isinstance(m, nn.Linear)][-1].out_features
    if first_out != num_labels[0]:
        heads[0] = _with_outputs(original, num_labels[0], init_std)
    task_heads = TaskHeads(heads)
    model.set_submodule(head_module, task_heads)
    return task_heads
