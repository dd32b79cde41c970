"""Every LoRA variant of the installed PEFT, saved by PEFT itself from a tiny Llama: the folder
audit either gives ΔW exactly (its singular values against PEFT's merged weights minus the
original base) or refuses in one line naming the variant and what it would need."""
import copy
import warnings

import numpy as np
import peft
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from ranklab.cli import main
from ranklab.inspect.adapter_files import REFUSED_VARIANTS, VARIANTS, active_variants
from ranklab.inspect.audit import audit_adapter

CONFIG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0)
TARGETS = ["q_proj", "v_proj"]


def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()


# variant -> the LoraConfig options that turn it on (every variant PEFT's LoraConfig declares, see the test below)
OPTIONS = {
    "plain": {},
    "use_rslora": {"use_rslora": True},
    "patterns": {"rank_pattern": {"v_proj": 2}, "alpha_pattern": {"q_proj": 3}},
    "use_dora": {"use_dora": True},
    "kasa_config": {"kasa_config": peft.KasaConfig()},
    "use_bdlora": {"use_bdlora": peft.BdLoraConfig(target_modules_bd_a=["q_proj"], target_modules_bd_b=["v_proj"],
                                                   nblocks=2)},
    "alora_invocation_tokens": {"alora_invocation_tokens": [5, 6]},
    "velora_config": {"velora_config": peft.VeloraConfig()},
    "monteclora_config": {"monteclora_config": peft.MontecloraConfig()},
    "mica": {"init_lora_weights": "mica"},
    "arrow_config": {},  # built only by PEFT's create_arrow_model from several adapters: its config is written below
}


def saved(tmp_path, name: str):
    """(the PEFT model, its saved folder, the original base's folder) for one variant."""
    base = llama()
    base.save_pretrained(str(tmp_path / "base"))  # before PEFT: KaSA truncates the base in place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, **OPTIONS[name]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if "lora_" in key and parameter.is_floating_point():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3
                                + (1.0 if "magnitude" in key else 0.0))
        model.save_pretrained(str(tmp_path / "adapter"))
    if name == "arrow_config":
        import dataclasses
        import json

        file = tmp_path / "adapter" / "adapter_config.json"
        config = json.loads(file.read_text())
        config["arrow_config"] = dataclasses.asdict(peft.ArrowConfig())
        file.write_text(json.dumps(config))
    return model.eval(), tmp_path / "adapter", tmp_path / "base"


def true_deltas(model) -> dict[str, torch.Tensor]:
    """merged weights minus the original base, per adapted module (aLoRA cannot merge: its s B A)."""
    original = {n: p.detach().clone() for n, p in llama().named_parameters()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            merged = copy.deepcopy(model).merge_and_unload()
    except NotImplementedError:
        return {name: module.get_delta_weight("default").detach().double() for name, module in model.named_modules()
                if name.endswith(tuple(TARGETS)) and hasattr(module, "get_delta_weight")}
    return {f"base_model.model.{n[:-len('.weight')]}": (p.detach() - original[n]).double()
            for n, p in merged.named_parameters() if n.endswith(tuple(f"{t}.weight" for t in TARGETS))}


def test_every_variant_peft_declares_is_known():
    import dataclasses

    declared = {f.name for f in dataclasses.fields(LoraConfig) if f.metadata.get("is_lora_variant")}
    declared |= {o for f in dataclasses.fields(LoraConfig) if f.name == "init_lora_weights"
                 for o in f.metadata.get("lora_variants", [])}
    assert declared <= set(OPTIONS) and declared <= set(VARIANTS) | set(REFUSED_VARIANTS)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_variant_is_exact_or_refused_by_name(tmp_path, name):
    model, folder, base = saved(tmp_path, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.PeftConfig.from_pretrained(str(folder)).to_dict()
    assert active_variants(config) == ([] if name in ("plain", "use_rslora", "patterns") else [name])
    if name in REFUSED_VARIANTS:
        with pytest.raises(ValueError, match=name):
            audit_adapter(folder)
        code = main(["inspect", str(folder)])
        assert code == 2
        return
    needs_base = name in ("use_dora", "kasa_config")
    if needs_base:  # refused without the base, naming the variant and --base
        with pytest.raises(ValueError, match="--base") as refusal:
            audit_adapter(folder)
        assert ("DoRA" if name == "use_dora" else "KaSA") in str(refusal.value)
    report = audit_adapter(folder, base=base if needs_base else None).report.set_index("name")
    deltas = true_deltas(model)
    assert set(report.index) == set(deltas)
    for module, delta in deltas.items():
        sigma = torch.linalg.svdvals(delta).numpy()
        ours = report.loc[module, ["sigma_1", "sigma_2", "sigma_3", "sigma_4"]].to_numpy(float)
        listed = int(np.isfinite(ours).sum())  # a rank-2 module (rank_pattern) lists two
        assert listed == min(4, int(report.loc[module, "max_rank"])) or listed == 4
        np.testing.assert_allclose(ours[:listed], sigma[:listed], rtol=1e-4, atol=1e-6 * sigma[0])
        assert report.loc[module, "delta_fro"] == pytest.approx(float(torch.linalg.norm(delta)), rel=1e-4)


@pytest.mark.parametrize("name", ["use_bdlora", "alora_invocation_tokens", "velora_config", "monteclora_config", "mica",
                                  "use_dora", "kasa_config"])
def test_compressing_a_variant_keeps_its_logits_or_refuses(tmp_path, name):
    from peft import PeftModel

    from ranklab.compression import compress_adapter

    model, folder, _ = saved(tmp_path, name)
    if name in ("use_dora", "kasa_config"):
        with pytest.raises(ValueError, match="cannot represent"):
            compress_adapter(folder, tmp_path / "out")
        return
    ids = torch.tensor([[3, 9, 5, 6, 11, 12, 13, 14], [7, 8, 9, 10, 5, 6, 15, 16]])  # aLoRA's invocation 5, 6 inside
    with torch.no_grad():
        want = model(input_ids=ids).logits
    compress_adapter(folder, tmp_path / "out", tau=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = PeftModel.from_pretrained(llama(), str(tmp_path / "out")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_an_initialisation_that_changed_the_base_is_refused_by_name(tmp_path, init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(llama(), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=init))
        model.save_pretrained(str(tmp_path / "adapter"))
    with pytest.raises(ValueError, match=f"init_lora_weights='{init}'.*changes W0"):
        audit_adapter(tmp_path / "adapter")


@pytest.mark.parametrize("option", [{"use_qalora": True}, {"use_newvariant": True}, {"shiny_config": {"k": 1}}])
def test_a_variant_ranklab_does_not_know_is_refused_by_name(tmp_path, option):
    import json

    model, folder, _ = saved(tmp_path, "plain")
    file = folder / "adapter_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **option}))
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"variant '{name}'"):
        audit_adapter(folder)
