"""Models for the benchmarks: MiniLM-L6-shaped BERT from a config, with ranklab or PEFT adapters."""
from __future__ import annotations

import torch
from torch import nn

import ranklab

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TARGETS = ["query", "value"]
MOR_OPTIONS = {"n_experts": 8, "r": 8}  # shared rank = LoRA's r, so the ratio shows the routing cost


def build_backbone(num_labels: int = 2, seed: int = 0) -> nn.Module:
    """BERT with MiniLM-L6's shapes (6 layers, hidden 384, 12 heads), random weights, no dropout."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, num_labels=num_labels, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def ranklab_model(method: str, randomize: bool = False, **options) -> nn.Module:
    model = build_backbone()
    ranklab.attach(model, ranklab.make_config(method, target_modules=TARGETS, modules_to_save=["classifier"], **options))
    if randomize:
        with torch.no_grad():
            for layer in ranklab.adapter_layers(model).values():
                for p in layer.adapter_parameters():
                    p.normal_(0, 0.02)
    return model.to(DEVICE)


def peft_lora(r: int = 8) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    from ranklab.compat import quiet_peft

    with quiet_peft():
        model = get_peft_model(build_backbone(), LoraConfig(r=r, lora_alpha=16, target_modules=TARGETS,
                                                            modules_to_save=["classifier"]))
    return model.to(DEVICE)
