"""Shared test set-up: offline, single-threaded, tiny models built from configs."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from . import toy_method  # noqa: E402,F401  (registers the toy method: see tests/test_toy_method.py)

torch.set_num_threads(1)


def build_tiny_roberta(num_labels: int = 3, hidden: int = 32, layers: int = 2, seed: int = 0):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=40, num_labels=num_labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return RobertaForSequenceClassification(config).eval()


def build_tiny_bert(num_labels: int = 2, hidden: int = 32, layers: int = 2, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=40, num_labels=num_labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


def build_tiny_gpt2(hidden: int = 32, layers: int = 2, seed: int = 0, vocab: int = 100):
    """A GPT-2 causal LM (Conv1D projections: c_attn, c_proj, c_fc) with random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=2, n_positions=40,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def build_tiny_decoder(family: str = "llama", hidden: int = 32, layers: int = 2, seed: int = 0, vocab: int = 100):
    """A Llama- or Qwen2-style causal LM (nn.Linear q/k/v/o_proj, gate/up/down_proj) with random weights."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family]
    config = config_class(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                          bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return AutoModelForCausalLM.from_config(config).eval()


def randomize_layer(layer, seed: int = 0, std: float = 0.1, generator=None) -> None:
    """Give one adapter layer's parameters random values (B starts at zero, which hides bugs)."""
    generator = generator or torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def randomize_adapters(model, seed: int = 0, std: float = 0.1) -> None:
    """randomize_layer for every adapter layer of a model, from one random stream."""
    import ranklab

    generator = torch.Generator().manual_seed(seed)
    for layer in ranklab.adapter_layers(model).values():
        randomize_layer(layer, std=std, generator=generator)


@pytest.fixture
def tiny_roberta():
    return build_tiny_roberta


@pytest.fixture
def tiny_bert():
    return build_tiny_bert


@pytest.fixture
def tiny_gpt2():
    return build_tiny_gpt2


@pytest.fixture
def token_batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, 100, (4, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
