"""GPT-2's Conv1D layers (PEFT fan_in_fan_out): the audit of a PEFT-saved folder reports ΔW as
d_out x d_in, its spectra and φ are those of the dense ΔW (right singular vectors: the input
space), and compression from the folder or the model loads back in PEFT with the same logits."""
import warnings

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from ranklab.compression import compress_adapter
from ranklab.inspect.audit import audit_adapter

TARGETS = ["c_attn", "c_fc", "c_proj"]


def gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=3, n_head=4, n_positions=32,
                                          bos_token_id=0, eos_token_id=0)).eval()


@pytest.fixture(scope="module")
def peft_gpt2(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(gpt2(), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, fan_in_fan_out=True))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("gpt2") / "lora"
    model.save_pretrained(str(folder))
    return model.eval(), folder


def dense_deltas(model) -> dict[str, torch.Tensor]:
    """ΔW (d_out x d_in) of every adapted Conv1D from PEFT itself (get_delta_weight is W0's d_in x d_out layout)."""
    return {name: module.get_delta_weight("default").detach().T.double()
            for name, module in model.named_modules() if hasattr(module, "get_delta_weight") and name.endswith(tuple(TARGETS))}


def test_the_audit_of_a_conv1d_folder_is_the_dense_delta_w(peft_gpt2):
    model, folder = peft_gpt2
    report = audit_adapter(folder).report.set_index("name")
    deltas = dense_deltas(model)
    assert set(report.index) == set(deltas)
    for name, delta in deltas.items():
        row = report.loc[name]
        assert (row["d_out"], row["d_in"]) == tuple(delta.shape)  # c_attn 96 x 32, c_fc 128 x 32, c_proj 32 x 128
        sigma = torch.linalg.svdvals(delta).numpy()
        np.testing.assert_allclose(row[["sigma_1", "sigma_2", "sigma_3", "sigma_4"]].to_numpy(float), sigma[:4], rtol=1e-4)
    shapes = {name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1]: tuple(d.shape) for name, d in deltas.items()}
    assert shapes["attn.c_attn"] == (96, 32) and shapes["mlp.c_fc"] == (128, 32) and shapes["mlp.c_proj"] == (32, 128)
    for name in deltas:  # φ with the previous layer: input-space (right) singular vectors of the dense ΔW
        layer = int(name.split(".h.")[1].split(".")[0])
        if layer == 0:
            continue
        previous = name.replace(f".h.{layer}.", f".h.{layer - 1}.")
        k = int(min(report.loc[name, "numerical_rank"], report.loc[previous, "numerical_rank"]))
        v1 = torch.linalg.svd(deltas[previous])[2][:k].T
        v2 = torch.linalg.svd(deltas[name])[2][:k].T
        assert report.loc[name, "phi_prev"] == pytest.approx(float((v1.T @ v2).pow(2).sum()) / k, abs=1e-6)


@pytest.mark.parametrize("source", ["folder", "model"])
def test_compressing_a_conv1d_adapter_loads_back_with_the_same_logits(peft_gpt2, tmp_path, source):
    model, folder = peft_gpt2
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(input_ids=ids).logits
    result = compress_adapter(folder if source == "folder" else model, tmp_path / "out", tau=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = PeftModel.from_pretrained(gpt2(), str(tmp_path / "out")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, want, atol=1e-4, rtol=1e-4)
    if source == "model":  # W0 + ΔW written into Conv1D's d_in x d_out storage
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_copy = get_peft_model(gpt2(), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, fan_in_fan_out=True))
        model_copy.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(result.apply(model_copy)(input_ids=ids).logits, want, atol=1e-4, rtol=1e-4)


def test_a_lora_bias_folder_saved_as_bin_is_an_ordinary_linear_lora(tmp_path):
    from ranklab.cli import main

    from .test_compression import classifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(classifier(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        lora_bias=True))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(str(tmp_path / "biased"), safe_serialization=False)
    assert (tmp_path / "biased" / "adapter_model.bin").is_file()
    audit = audit_adapter(tmp_path / "biased")
    report = audit.report.set_index("name")
    for name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and name.endswith(("q_proj", "v_proj")):
            sigma = torch.linalg.svdvals(module.get_delta_weight("default").detach().double()).numpy()
            np.testing.assert_allclose(report.loc[name, ["sigma_1", "sigma_2"]].to_numpy(float), sigma[:2], rtol=1e-4)
            assert report.loc[name, "params"] == sum(p.numel() for n, p in module.named_parameters() if "lora_" in n)
    assert len(report) == 4 and any("lora_bias" in note for note in audit.notes) and "note: lora_bias" in audit.to_text()
    with pytest.raises(ValueError, match="lora_bias=True"):  # compression would drop the bias: it says so
        compress_adapter(tmp_path / "biased", tmp_path / "out")
    assert main(["compress", str(tmp_path / "biased"), "--output", str(tmp_path / "out")]) == 2
