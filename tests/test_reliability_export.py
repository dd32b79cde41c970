"""Exports are plain PEFT LoRAs: per task after multi-task training, on exactly the adapted modules."""
import pytest
import torch
from peft import PeftModel

import ranklab
from ranklab.train.heads import add_task_heads

from .conftest import randomize_adapters

MULTI_TASK = [("rank_router", dict(r=4, n_tasks=2)), ("rank_router", dict(r=4, n_tasks=2, selection="soft")),
              ("mor", dict(r=4, n_experts=3, router="task", n_tasks=2))]
LABELS = [2, 3]


def multi_task_model(tiny_roberta, method, options):
    model = tiny_roberta(seed=0)
    add_task_heads(model, LABELS)
    ranklab.attach(model, ranklab.make_config(method, modules_to_save=["classifier"], **options))
    randomize_adapters(model, seed=1)
    model.ranklab_task_names = ["movie", "trec"]
    return model.eval()


@pytest.mark.parametrize("method, options", MULTI_TASK)
def test_per_task_export_loads_into_a_plain_backbone(method, options, tiny_roberta, token_batch, tmp_path):
    model = multi_task_model(tiny_roberta, method, options)
    saved = ranklab.save_adapters(model, tmp_path / "adapter", extra={"tasks": ["movie", "trec"]})
    for task, num_labels in enumerate(LABELS):
        with torch.no_grad(), ranklab.use_task(task):
            expected = model(**token_batch).logits
        name = ["movie", "trec"][task]
        path = ranklab.export_peft(model, tmp_path / f"peft{task}", task=name)  # a name the model knows
        plain = PeftModel.from_pretrained(tiny_roberta(num_labels=num_labels, seed=0), str(path)).eval()
        with torch.no_grad():
            torch.testing.assert_close(plain(**token_batch).logits, expected, rtol=1e-5, atol=1e-5)
        # the run's own adapter folder loads into a plain backbone too, one task at a time
        loaded = ranklab.load_adapters(tiny_roberta(num_labels=num_labels, seed=0), saved, task=name).eval()
        with torch.no_grad(), ranklab.use_task(task):
            torch.testing.assert_close(loaded(**token_batch).logits, expected, rtol=1e-5, atol=1e-5)


def test_multi_task_heads_need_a_task_to_export(tiny_roberta, tmp_path):
    model = multi_task_model(tiny_roberta, *MULTI_TASK[0])
    with pytest.raises(ValueError, match="needs a task id"):  # the rank router's own update needs one
        ranklab.export_peft(model, tmp_path / "peft")
    plain = tiny_roberta(seed=0)
    with pytest.raises(ValueError, match="one head per task .*pass task= to load one into a plain model"):
        ranklab.load_adapters(plain, ranklab.save_adapters(model, tmp_path / "set", extra={"tasks": ["a", "b"]}))


def test_export_wraps_exactly_the_adapted_modules(tiny_roberta, token_batch, tmp_path):
    model = tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=["output.dense"]))
    randomize_adapters(model, seed=1)
    adapted = set(ranklab.adapter_layers(model))
    assert len(adapted) == 4  # (attention.)output.dense of 2 layers; not intermediate.dense nor classifier.dense
    path = ranklab.export_peft(model, tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(tiny_roberta(seed=0), str(path)).eval()
    wrapped = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")
               and "default" in getattr(m, "lora_A", {})}
    assert wrapped == adapted
    with torch.no_grad():
        torch.testing.assert_close(peft_model(**token_batch).logits, model.eval()(**token_batch).logits,
                                   rtol=1e-5, atol=1e-5)


def test_a_wrong_selector_names_the_valid_ones(tiny_roberta, tmp_path):
    model = tiny_roberta(seed=0)
    ranklab.attach(model, ranklab.make_config("dylora", r_max=4))
    with pytest.raises(ValueError, match="unknown selector \\['task'\\] for method 'dylora'; valid selectors: rank"):
        ranklab.export_peft(model, tmp_path / "peft", task=1)
    with pytest.raises(ValueError, match="unknown task 'movie'; this model has no task names"):
        ranklab.export_peft(model, tmp_path / "peft", task="movie")
