"""Model-level report on a BERT-shaped classifier, for ranklab and PEFT adapters."""
import pandas as pd
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

import ranklab
from ranklab.inspect import model_report, rank_table
from ranklab.inspect.factors import layer_index, short_module_name


def _bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config)


def _randomise(model):
    torch.manual_seed(1)
    for layer in ranklab.adapter_layers(model).values():
        for p in layer.adapter_parameters():
            nn.init.normal_(p, std=0.1)


def test_report_on_bert_classifier_with_ranklab_lora():
    model = _bert()
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=["query", "value"],
                                              modules_to_save=["classifier"]))
    _randomise(model)
    report = model_report(model, top_k=5)
    assert len(report) == 6  # 3 layers x (query, value)
    assert list(report["layer"]) == [0, 0, 1, 1, 2, 2]
    assert list(report["module"]) == ["attention.self.query", "attention.self.value"] * 3
    assert set(report["method"]) == {"lora"}
    assert list(report["ranks"]) == ["4"] * 6 and list(report["max_rank"]) == [4] * 6
    assert list(report["params"]) == [4 * 24 + 24 * 4] * 6
    assert report["sigma_5"].isna().all() and report["sigma_4"].notna().all()
    for _, row in report.iterrows():
        layer = model.get_submodule(row["name"])
        dense = layer.delta_weight().detach().double()
        sigma = torch.linalg.svdvals(dense)
        assert row["sigma_1"] == pytest.approx(sigma[0].item(), rel=1e-5)
        assert row["delta_fro"] == pytest.approx(torch.linalg.matrix_norm(dense).item(), rel=1e-5)
        base = torch.linalg.matrix_norm(layer.base.weight.double()).item()
        assert row["base_fro"] == pytest.approx(base, rel=1e-5)
        assert row["relative_delta"] == pytest.approx(row["delta_fro"] / row["base_fro"], rel=1e-12)
        assert 1.0 <= row["effective_rank"] <= 4.0
        assert row["numerical_rank"] == 4


def test_report_selectors_and_emd_ranks():
    model = _bert()
    ranklab.attach(model, ranklab.make_config("dylora", r_min=1, r_max=6, target_modules=["value"]))
    _randomise(model)
    at_two = model_report(model, rank=2)
    assert list(at_two["max_rank"]) == [2, 2, 2] and list(at_two["numerical_rank"]) == [2, 2, 2]
    assert at_two.attrs["selector"] == "{'rank': 2}"
    both = pd.concat([at_two.assign(rank=2), model_report(model, rank=6).assign(rank=6)])
    assert len(both) == 6
    emd = _bert()
    ranklab.attach(emd, ranklab.make_config("emd", a=2, b=5, target_modules=["query"]))
    _randomise(emd)
    report = model_report(emd)
    assert list(report["ranks"]) == ["5x2"] * 3 and list(report["max_rank"]) == [2] * 3


def test_zero_init_report_and_errors():
    model = _bert()
    ranklab.attach(model, ranklab.make_config("lora", r=2, target_modules=["query"]))
    report = model_report(model)
    assert (report["delta_fro"] == 0).all() and (report["effective_rank"] == 0).all()
    with pytest.raises(ValueError, match="no adapted modules"):
        model_report(_bert())
    with pytest.raises(ValueError, match="top_k"):
        model_report(model, top_k=-1)


def test_rank_table_layer_by_module():
    model = _bert()
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=["query", "value"]))
    _randomise(model)
    report = model_report(model)
    table = rank_table(report, "effective_rank")
    assert list(table.index) == [0, 1, 2]
    assert list(table.columns) == ["attention.self.query", "attention.self.value"]
    for _, row in report.iterrows():
        assert table.loc[row["layer"], row["module"]] == row["effective_rank"]
    with pytest.raises(ValueError, match="numeric columns"):
        rank_table(report, "nope")


def test_report_on_peft_lora_and_adalora():
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    lora = get_peft_model(_bert(), LoraConfig(r=3, lora_alpha=6, target_modules=["query", "value"],
                                              init_lora_weights=False))
    report = model_report(lora)
    assert len(report) == 6 and set(report["method"]) == {"peft_lora"}
    assert list(report["params"]) == [3 * 24 + 24 * 3] * 6
    assert report["layer"].tolist() == [0, 0, 1, 1, 2, 2]
    name = report["name"][0]
    module = lora.get_submodule(name)
    dense = module.get_delta_weight("default").detach().double()
    assert report["delta_fro"][0] == pytest.approx(torch.linalg.matrix_norm(dense).item(), rel=1e-5)
    assert report["base_fro"][0] == pytest.approx(
        torch.linalg.matrix_norm(module.base_layer.weight.double()).item(), rel=1e-5)

    ada = get_peft_model(_bert(), AdaLoraConfig(init_r=4, target_modules=["query"], total_step=10))
    report = model_report(ada)
    assert set(report["method"]) == {"peft_adalora"}
    assert list(report["params"]) == [4 * 24 + 24 * 4 + 4] * 3
    assert (report["delta_fro"] == 0).all()  # AdaLoRA starts with E = 0


def test_name_parsing():
    assert layer_index("bert.encoder.layer.11.attention.self.query") == 11
    assert layer_index("classifier.dense") is None
    assert short_module_name("bert.encoder.layer.3.output.dense") == "output.dense"
    assert short_module_name("classifier.dense") == "classifier.dense"
