"""Adapter-only audit: `audit_adapter` / `ranklab inspect` read saved folders without the base model
and give the spectra and rank measures of the in-model report; base columns only with a base."""
import contextlib
import io
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from peft import AdaLoraConfig, LoraConfig, PeftModel, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import ranklab
from ranklab.cli import main
from ranklab.inspect import model_report, model_spectra, module_spectrum
from ranklab.inspect.audit import audit_adapter
from ranklab.inspect.base_analysis import update_vs_base
from ranklab.inspect.spectra import factored_svd

from .conftest import randomize_adapters

MEASURES = ["effective_rank", "stable_rank", "energy_rank", "numerical_rank", "delta_fro"]


def tiny_llama(seed: int = 0, layers: int = 3) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))


def randomize_peft(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)


def assert_same_as_report(rows: pd.DataFrame, report: pd.DataFrame, strip: str = "") -> None:
    """Every module's spectrum and rank measures equal the in-model report's (names up to a prefix;
    a rank pruned away in the saved file and a zero singular value in the model both read as 0)."""
    ours = rows.assign(key=rows["name"].str.removeprefix(strip)).set_index("key").fillna(0.0)
    theirs = report.assign(key=report["name"].str.removeprefix(strip)).set_index("key").fillna(0.0)
    assert sorted(ours.index) == sorted(theirs.index)
    for column in ["sigma_1", "sigma_2", "sigma_3", "sigma_4"] + MEASURES:
        np.testing.assert_allclose(ours.loc[theirs.index, column].to_numpy(float),
                                   theirs[column].to_numpy(float), rtol=1e-5, atol=1e-7, err_msg=column)


def printed_spectra(text: str) -> dict[str, np.ndarray]:
    section = text.split("singular values of ΔW (from the factors):\n", 1)[1]
    return {m.group(1): np.array(m.group(2).split(), dtype=float)
            for m in re.finditer(r"^  (\S+(?: \[[a-z]+ \d+\])?): ([^\n]*)$", section, flags=re.M)}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# --- the same spectra as the in-model report -----------------------------------------------------
@pytest.mark.parametrize("method, options, selector", [
    ("lora", {"r": 4}, {}), ("emd", {"a": 3, "b": 6}, {}), ("dylora", {"r_max": 6}, {"rank": 4}),
    ("rank_router", {"r": 4, "n_tasks": 2, "selection": "soft"}, {"task": 1}),
])
def test_inspect_on_an_export_peft_folder_prints_the_in_model_spectra(tmp_path, method, options, selector):
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config(method, target_modules=["q_proj", "v_proj"], **options))
    randomize_adapters(model)
    ranklab.export_peft(model, tmp_path / "peft", **selector)
    report = model_report(model, **selector)
    audit = audit_adapter(tmp_path / "peft")
    assert audit.format == "peft_lora" and "relative_delta" not in audit.report  # no base: no W0 columns
    assert_same_as_report(audit.report, report, strip="base_model.model.")
    code, out, _ = run_cli("inspect", str(tmp_path / "peft"))
    assert code == 0 and "pass --base" in out
    printed = printed_spectra(out)
    expected = model_spectra(model, **selector)
    assert len(printed) == len(expected) == 6
    for name, sigma in expected.items():
        np.testing.assert_allclose(printed["base_model.model." + name], sigma, rtol=1e-5)


def test_ranklab_folders_are_read_per_task_and_per_expert(tmp_path):
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config("rank_router", r=4, n_tasks=3, target_modules=["q_proj", "v_proj"]))
    randomize_adapters(model)
    ranklab.save_adapters(model, tmp_path / "router")
    audit = audit_adapter(tmp_path / "router")
    assert audit.format == "ranklab" and sorted(audit.report["task"].unique()) == [0, 1, 2]
    for task in range(3):
        rows = audit.report[audit.report["task"] == task].drop(columns="task").reset_index(drop=True)
        assert_same_as_report(rows, model_report(model, task=task))
    assert_same_as_report(audit_adapter(tmp_path / "router", task=2).report, model_report(model, task=2))

    mor = tiny_llama()
    ranklab.attach(mor, ranklab.make_config("mor", r=4, n_experts=3, target_modules=["q_proj"]))
    randomize_adapters(mor)
    ranklab.save_adapters(mor, tmp_path / "mor")
    audit = audit_adapter(tmp_path / "mor")
    assert sorted(audit.report["expert"].unique()) == [0, 1, 2] and len(audit.report) == 3 * 3
    for (name, expert), sigma in {(n, e): None for n in ranklab.adapter_layers(mor) for e in range(3)}.items():
        expected = module_spectrum(ranklab.adapter_layers(mor)[name], expert=expert).numpy()
        np.testing.assert_allclose(audit.spectra[f"{name} [expert {expert}]"], expected, rtol=1e-5)


def test_peft_save_pretrained_lora_with_patterns_and_rslora(tmp_path):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True,
                        rank_pattern={"v_proj": 2}, alpha_pattern={"layers.1.self_attn.q_proj": 3})
    model = get_peft_model(tiny_llama(), config)
    randomize_peft(model)
    model.save_pretrained(tmp_path / "lora")
    audit = audit_adapter(tmp_path / "lora")
    assert_same_as_report(audit.report, model_report(model))
    assert set(audit.report[audit.report["module"] == "self_attn.v_proj"]["ranks"]) == {"2"}


def test_peft_adalora_pruned_and_saved_matches_the_trained_and_the_reloaded_model(tmp_path):
    model = get_peft_model(tiny_llama(layers=2), AdaLoraConfig(init_r=6, target_r=2, lora_alpha=8, total_step=12,
                                                               tinit=2, tfinal=3, target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(12):
        ids = torch.randint(0, 64, (4, 10), generator=generator)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT's notices about rank-0 tensors and rank_pattern keys
        model.save_pretrained(tmp_path / "adalora")
        reloaded = PeftModel.from_pretrained(tiny_llama(layers=2), tmp_path / "adalora")
    audit = audit_adapter(tmp_path / "adalora")
    assert audit.format == "peft_adalora" and audit.report["numerical_rank"].sum() == 2 * 4  # the pruned budget
    assert_same_as_report(audit.report, model_report(model))
    assert_same_as_report(audit.report, model_report(reloaded))


def test_gpt2_conv1d_fan_in_fan_out_and_its_base(tmp_path):
    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    base.save_pretrained(tmp_path / "base")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT notes it sets fan_in_fan_out for Conv1D
        model = get_peft_model(base, LoraConfig(r=3, lora_alpha=6, target_modules=["c_attn"], fan_in_fan_out=True))
    randomize_peft(model)
    model.save_pretrained(tmp_path / "lora")
    audit = audit_adapter(tmp_path / "lora", base=str(tmp_path / "base"))  # W0 read from the folder's safetensors
    report = model_report(model)
    assert_same_as_report(audit.report, report)
    np.testing.assert_allclose(audit.report["relative_delta"], report["relative_delta"], rtol=1e-5)


# --- the base-dependent columns ------------------------------------------------------------------
@pytest.fixture
def lora_with_base(tmp_path):
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=["q_proj", "v_proj"]))
    randomize_adapters(model, std=0.3)
    ranklab.export_peft(model, tmp_path / "peft")
    tiny_llama().save_pretrained(tmp_path / "base")  # the same W0 (same seed), saved as a plain model
    return tmp_path, model


@pytest.mark.parametrize("as_folder", [False, True])
def test_base_columns_match_the_in_model_report_and_a_dense_reference(lora_with_base, as_folder):
    folder, model = lora_with_base
    base = str(folder / "base") if as_folder else tiny_llama()
    audit = audit_adapter(folder / "peft", base=base, intruder_k=5, intruder_eps=0.6)
    report = model_report(model)
    np.testing.assert_allclose(audit.report["relative_delta"], report["relative_delta"], rtol=1e-5)
    for _, row in audit.report.iterrows():
        layer = ranklab.adapter_layers(model)[row["name"].removeprefix("base_model.model.")]
        w0, delta = layer.base.weight.double().detach(), layer.delta_weight().double().detach()
        u0 = torch.linalg.svd(w0)[0]
        u, s, vh = torch.linalg.svd(delta)
        r = int(row["numerical_rank"])
        assert row["alignment"] == pytest.approx(float((u[:, :r].T @ u0[:, :r]).pow(2).sum()) / r, rel=1e-6)
        projected = float(torch.linalg.matrix_norm(u[:, :r].T @ w0 @ vh[:r].T))
        assert row["amplification"] == pytest.approx(float(s.norm()) / projected, rel=1e-6)
        tuned = torch.linalg.svd(w0 + delta)[0][:, :5]
        assert row["intruders"] == int(((tuned.T @ u0).abs().max(dim=1).values < 0.6).sum())
    assert audit.report["intruders"].sum() > 0  # strong random updates bring new top directions


def test_intruder_dimensions_and_alignment_on_planted_updates():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    w0 = q @ torch.diag(torch.linspace(4, 1, 16, dtype=torch.float64)) @ q.T  # singular vectors: q's columns
    mix = (q @ torch.ones(16, 1, dtype=torch.float64)) / 4  # |cos| = 1/4 with every singular vector of W0
    along = [q[:, :1] * 2.0, q[:, :1].T]  # ΔW strengthens W0's top direction
    across = [mix * 1000.0, mix.T]  # ΔW adds a dominant direction spread over all of W0's
    for factors, alignment, intruders in ((along, 1.0, 0), (across, 1 / 16, 1)):
        delta = factors[0] @ factors[1]
        row = update_vs_base(w0, delta, factored_svd(factors, compute_uv=True), rank=1, intruder_k=1)
        assert row["alignment"] == pytest.approx(alignment, abs=1e-9) and row["intruders"] == intruders
    assert row["intruder_min_cos"] == pytest.approx(0.25, abs=1e-2)  # the top vector of W0 + ΔW is nearly mix
    with pytest.raises(ValueError, match="intruder_eps"):
        update_vs_base(w0, delta, factored_svd(across, compute_uv=True), rank=1, intruder_eps=1.5)


def test_a_ranklab_backbone_name_is_a_base(tmp_path):
    from ranklab.backbones import load_backbone

    model = load_backbone("tiny-random", num_labels=2)[0]
    ranklab.attach(model, ranklab.make_config("lora", r=2, target_modules=["query", "value"]))
    randomize_adapters(model)
    ranklab.save_adapters(model, tmp_path / "adapter")
    audit = audit_adapter(tmp_path / "adapter", base="tiny-random")
    np.testing.assert_allclose(audit.report["relative_delta"], model_report(model)["relative_delta"], rtol=1e-5)


# --- output, figures and errors ------------------------------------------------------------------
def test_cli_plots_and_csv(lora_with_base):
    folder, _ = lora_with_base
    code, out, _ = run_cli("inspect", str(folder / "peft"), "--base", str(folder / "base"), "--plots",
                           str(folder / "figs"), "--csv", str(folder / "report.csv"), "--tau", "0.5")
    assert code == 0 and "intruders" in out and "alignment" in out
    stems = {p.stem for p in (folder / "figs").iterdir()}
    assert stems == {"spectra", "effective_rank", "energy_rank", "similarity", "alignment", "intruders"}
    assert not list((folder / "figs").glob(".*"))  # atomic writes leave no temporary files
    table = pd.read_csv(folder / "report.csv")
    assert len(table) == 6 and {"phi_prev", "intruders", "sigma_4"} <= set(table.columns)
    assert table["energy_rank"].le(table["numerical_rank"]).all()


def test_similarity_between_layers_is_the_lora_papers_phi(lora_with_base):
    folder, model = lora_with_base
    audit = audit_adapter(folder / "peft")
    layers = ranklab.adapter_layers(model)
    pair = audit.similarity.iloc[0]
    a = layers[pair["name_1"].removeprefix("base_model.model.")]
    b = layers[pair["name_2"].removeprefix("base_model.model.")]
    va, vb = (torch.linalg.svd(x.delta_weight().double().detach())[2][: pair["k"]].T for x in (a, b))
    assert pair["phi"] == pytest.approx(float((va.T @ vb).pow(2).sum()) / pair["k"], rel=1e-6)
    assert pair["chance"] == pytest.approx(pair["k"] / 32)
    second = audit.report[audit.report["name"] == pair["name_2"]].iloc[0]
    assert second["phi_prev"] == pytest.approx(pair["phi"]) and audit.report["phi_prev"].isna().sum() == 2


def test_clear_errors(tmp_path, lora_with_base, monkeypatch):
    folder, _ = lora_with_base
    for path, message in ((tmp_path / "missing", "does not exist"), (folder / "peft" / "adapter_config.json", "is a file"),
                          (folder / "base", "not a saved adapter")):
        code, _, err = run_cli("inspect", str(path))
        assert code == 2 and message in err and err.count("\n") == 1
    (tmp_path / "ia3").mkdir()
    (tmp_path / "ia3" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(ValueError, match="reads LORA, ADALORA"):
        audit_adapter(tmp_path / "ia3")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli("inspect", str(folder / "peft"), "--base", "someone/not-cached-model")
    assert code == 2 and "huggingface-cli download someone/not-cached-model" in err and "--base DIR" in err
    with pytest.raises(ValueError, match="trained on"):  # a base of another architecture
        audit_adapter(folder / "peft", base=tiny_llama(layers=1))
    code, _, err = run_cli("inspect", str(folder / "peft"), "--tau", "1.5")
    assert code == 2 and "--tau must be in (0, 1]" in err
