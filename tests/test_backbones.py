"""Named backbones: tiny-random, embedded MiniLM, hub errors; tokenisation and collation on them."""

import pytest
import torch
from datasets import Dataset, DatasetDict

from ranklab import backbones
from ranklab.backbones import available_backbones, backbone_info, load_backbone
from ranklab.data import HubUnreachableError, get_task, make_collator, tokenize_task


@pytest.fixture(scope="module")
def tiny():
    return load_backbone("tiny-random", 2)


def test_names_and_unknown():
    assert available_backbones() == ["roberta-base", "roberta-large", "minilm-l6", "tiny-random", "tiny-gpt2",
                                     "tiny-llama", "tiny-qwen2", "qwen2-0.5b", "llama-7b"]
    with pytest.raises(ValueError, match="valid backbones: roberta-base, roberta-large, minilm-l6, tiny-random"):
        load_backbone("bert-base", 2)
    with pytest.raises(ValueError, match="num_labels"):
        load_backbone("tiny-random", 0)


def test_tiny_random_is_fast_seeded_and_runs_pairs(tiny):
    model, tokenizer = load_backbone("tiny-random", 1)  # built from a config in code: no file, no network
    assert model.config.problem_type == "regression" and model.config.hidden_size == 32
    again, _ = load_backbone("tiny-random", 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    batch = tokenizer(["a good film", "bad"], ["yes", "no it was not"], padding=True, return_tensors="pt")
    out = model(**batch, labels=torch.tensor([0.5, -1.0]))
    assert out.logits.shape == (2, 1) and out.loss.item() > 0
    assert any(name.endswith("attention.self.query") for name, _ in tiny[0].named_modules())


def test_minilm_loads_offline_with_a_fresh_head():
    model, tokenizer = load_backbone("minilm-l6", 3)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.classifier.out_features == 3 and model.config.num_hidden_layers == 6
    assert sum(p.numel() for p in model.bert.parameters()) == pytest.approx(22.7e6, rel=0.01)
    info = backbone_info("minilm-l6")
    assert info["offline_now"] and info["hidden_size"] == 384


def test_hub_backbone_without_hub_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(backbones, "_offline_now", lambda spec: False)
    with pytest.raises(HubUnreachableError, match="offline tasks .*`minilm-l6`"):
        load_backbone("roberta-base", 2)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(backbones, "hub_reachable", lambda: False)
    with pytest.raises(HubUnreachableError, match="cannot be reached"):
        load_backbone("roberta-large", 2, offline_ok=False)


def test_tokenize_and_collate(tiny):
    _, tokenizer = tiny
    data = DatasetDict(train=Dataset.from_dict({"sentence1": ["a b c d e f g h i j", "x"],
                                                "sentence2": ["y", "z z"], "label": [1, 0]}))
    tokens = tokenize_task(data, tokenizer, get_task("rte"), max_length=8)
    row = tokens["train"][0]
    assert set(tokens["train"].column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert len(row["input_ids"]) == 8 and row["labels"] == 1  # truncated to max_length
    batch = make_collator(tokenizer)([tokens["train"][i] for i in range(2)])
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"][1].sum() < 8
    assert batch["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="lacks columns"):
        tokenize_task(data, tokenizer, "sst2")


def test_attention_implementation_is_chosen_and_checked():
    model, _ = load_backbone("tiny-random", 2, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="unknown attn_implementation 'flash'; valid: eager, sdpa"):
        load_backbone("tiny-random", 2, attn_implementation="flash")
    from ranklab.train import TrainConfig

    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        TrainConfig(attn_implementation="flash")


def test_embedded_scale_uses_bf16_only_where_it_is_native():
    from ranklab.experiments.protocol.recipes import get_scale
    from ranklab.hardware import native_bf16

    train = get_scale("embedded").train
    assert train["mixed_precision"] == ("bf16" if native_bf16() else "no")
    assert train["attn_implementation"] == "eager"


@pytest.mark.parametrize("name,model_class,targets", [
    ("tiny-gpt2", "GPT2LMHeadModel", ("c_attn", "c_fc")),
    ("tiny-llama", "LlamaForCausalLM", ("q_proj", "down_proj")),
    ("tiny-qwen2", "Qwen2ForCausalLM", ("q_proj", "down_proj")),
])
def test_tiny_decoders_load_offline_as_causal_lms(name, model_class, targets):
    model, tokenizer = load_backbone(name, objective="causal-lm")
    again, _ = load_backbone(name, objective="causal-lm")
    assert type(model).__name__ == model_class and backbone_info(name)["offline_now"]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))  # seeded
    assert model.config.vocab_size == len(tokenizer) == 30522
    assert (model.config.bos_token_id, model.config.eos_token_id) == (tokenizer.cls_token_id, tokenizer.sep_token_id)
    embeddings = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embeddings  # tied: the output layer is frozen with the base
    assert float(embeddings.detach().std()) == pytest.approx(backbones.TINY_EMBEDDING_STD, rel=0.02)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert set(targets) <= names
    batch = tokenizer(["a good film", "bad"], padding=True, return_tensors="pt")
    assert model(**batch).logits.shape == (2, batch["input_ids"].shape[1], 30522)
    classifier, _ = load_backbone(name, 3)  # the classification objective: a fresh head named score
    assert classifier.score.out_features == 3


def test_objective_needs_a_decoder_backbone():
    with pytest.raises(ValueError, match="backbone 'minilm-l6' is not a decoder-only LM; objective 'causal-lm' needs "
                                         "one of: tiny-gpt2, tiny-llama, tiny-qwen2, qwen2-0.5b"):
        load_backbone("minilm-l6", objective="causal-lm")
    with pytest.raises(ValueError, match="unknown objective 'seq2seq'; valid objectives: classification, causal-lm"):
        backbones.check_backbone("tiny-gpt2", "seq2seq")
    with pytest.raises(ValueError, match="num_labels"):
        load_backbone("tiny-gpt2")  # classification needs a label count


def test_hub_decoder_without_hub_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(backbones, "_offline_now", lambda spec: False)
    with pytest.raises(HubUnreachableError, match="qwen2-0.5b"):
        load_backbone("qwen2-0.5b", objective="causal-lm")


def test_every_backbone_names_its_classification_head():
    from ranklab.backbones import BACKBONES

    assert BACKBONES["tiny-random"].head == BACKBONES["minilm-l6"].head == "classifier"
    for name in ("tiny-gpt2", "tiny-llama", "tiny-qwen2", "qwen2-0.5b", "llama-7b"):
        assert BACKBONES[name].head == "score", name
    model, _ = load_backbone("tiny-llama", 3)
    assert model.get_submodule(BACKBONES["tiny-llama"].head).out_features == 3


def test_tiny_llama_classifies_padded_pairs_and_takes_mor_on_its_ffn():
    """The miniature stand-in of the MoR recipe's LLaMA: head ``score``, FFN modules that fit rank 64,
    and padding that does not change a row's logits (the head reads each row's last real token)."""
    import ranklab

    model, tokenizer = load_backbone("tiny-llama", 3)
    assert model.score.out_features == 3
    summary = ranklab.attach(model, ranklab.make_config("mor", r=64, n_experts=8, modules_to_save=["score"],
                                                        target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert len(summary.to_dict()["modules"]) == 2 * 3
    model.eval()
    pair = tokenizer(["a good film"], ["yes"], return_tensors="pt")
    padded = tokenizer(["a good film", "a much longer sentence than the first one"], ["yes", "no"],
                       padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # row 0 is padded
    with torch.no_grad():
        alone = model(**pair).logits
        together = model(**padded).logits
    torch.testing.assert_close(together[0], alone[0], rtol=1e-4, atol=1e-5)


def test_without_native_bf16_the_embedded_scale_trains_in_fp32_and_says_so_once(tmp_path):
    """RANKLAB_BF16=off stands in for a CPU without AMX / AVX512-BF16 (the scales read it at import)."""
    import subprocess
    import sys

    code = ("from ranklab.experiments.run.commands import _say_precision\n"
            "from ranklab.experiments.protocol.recipes import get_scale\n"
            "scale = get_scale('embedded')\n"
            "print(scale.train['mixed_precision'], 'fp32' in scale.description)\n"
            "_say_precision(scale); _say_precision(get_scale('smoke'))\n")
    env = {**__import__("os").environ, "RANKLAB_BF16": "off"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "no True" and len(lines) == 2
    assert "no native bf16 here, so the embedded scale trains in fp32" in lines[1]
    assert "RANKLAB_BF16=off" in lines[1]
