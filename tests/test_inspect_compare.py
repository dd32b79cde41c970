"""`ranklab compare`: two or more saved adapters side by side, every measure equal to a dense
reference computed here from ΔW itself (the library computes them from the factors)."""
import contextlib
import io

import numpy as np
import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model

import ranklab
from ranklab.cli import main
from ranklab.inspect import module_factors
from ranklab.inspect.compare import compare_adapters, compare_factors, layer_summary

from .conftest import randomize_adapters
from .test_inspect_audit import randomize_peft, tiny_llama

TARGETS = ["q_proj", "v_proj"]


def saved(tmp_path, name, method="lora", seed=0, targets=TARGETS, **options):
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config(method, target_modules=targets, **options))
    randomize_adapters(model, seed=seed)
    folder = ranklab.save_adapters(model, tmp_path / name)
    deltas = {}
    for n, layer in ranklab.adapter_layers(model).items():
        factors = [f.detach().double() for f in module_factors(layer)]
        deltas[n] = torch.linalg.multi_dot(factors) if len(factors) > 2 else factors[0] @ factors[1]
    return folder, deltas


def dense_reference(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> dict:
    """Every measure from the dense d x d updates: SVDs, Frobenius products, principal angles."""
    ua, sa, vha = torch.linalg.svd(a)
    ub, sb, vhb = torch.linalg.svd(b)
    ka, kb = int((sa > tol * sa[0]).sum()), int((sb > tol * sb[0]).sum())
    cos = lambda x, y: torch.linalg.svdvals(x.T @ y).clamp(0, 1)  # noqa: E731
    return {"cosine": float((a * b).sum() / (a.norm() * b.norm())), "relative_distance": float((a - b).norm() / a.norm()),
            "phi": float((ua[:, :ka].T @ ub[:, :kb]).norm() ** 2 / min(ka, kb)), "rank_a": ka, "rank_b": kb,
            "column_angles": np.degrees(np.arccos(cos(ua[:, :ka], ub[:, :kb]).numpy())),
            "row_angles": np.degrees(np.arccos(cos(vha[:ka].T, vhb[:kb].T).numpy())),
            "spectrum_a": sa[:ka].numpy(), "spectrum_b": sb[:kb].numpy()}


def assert_matches(row, reference):
    for key in ("cosine", "relative_distance", "phi"):
        assert row[key] == pytest.approx(reference[key], rel=1e-6, abs=1e-9), key
    assert (row["rank_a"], row["rank_b"]) == (reference["rank_a"], reference["rank_b"])
    for key in ("column_angles", "row_angles"):
        np.testing.assert_allclose(row[key], reference[key], atol=1e-2, err_msg=key)  # degrees (arccos near 0)
    for key in ("spectrum_a", "spectrum_b"):
        np.testing.assert_allclose(row[key], reference[key], rtol=1e-6)


def test_lora_against_emd_equals_the_dense_reference(tmp_path):
    lora, deltas_a = saved(tmp_path, "lora", r=4, seed=1)
    emd, deltas_b = saved(tmp_path, "emd", method="emd", a=2, b=6, seed=2)
    frame = compare_adapters([lora, emd])
    assert len(frame) == len(deltas_a) and (frame["only_in"] == "").all()
    for _, row in frame.iterrows():
        assert_matches(row, dense_reference(deltas_a[row["module"]], deltas_b[row["module"]]))
    summary = layer_summary(frame)
    assert len(summary) == 3  # tiny_llama's 3 layers
    first = frame[frame["layer"] == 0]
    assert summary.iloc[0]["cosine"] == pytest.approx(first["cosine"].mean())


def test_identical_and_scaled_updates_are_what_the_measures_say():
    torch.manual_seed(0)
    left, right = torch.randn(16, 3), torch.randn(3, 12)
    same = compare_factors([left, right], [left, right])
    assert same["cosine"] == pytest.approx(1.0) and same["relative_distance"] == pytest.approx(0.0, abs=1e-7)
    assert same["phi"] == pytest.approx(1.0) and max(same["column_angles"]) < 0.1
    opposite = compare_factors([left, right], [-2 * left, right])
    assert opposite["cosine"] == pytest.approx(-1.0) and opposite["relative_distance"] == pytest.approx(3.0)
    other = compare_factors([left, right], [torch.randn(16, 3), torch.randn(3, 12)])
    assert -1 < other["cosine"] < 1 and 0 < other["phi"] < 1


def test_a_peft_folder_and_a_ranklab_folder_of_the_same_model_compare(tmp_path):
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=TARGETS))
    randomize_adapters(model, seed=3)
    ours = ranklab.save_adapters(model, tmp_path / "ours")
    exported = ranklab.export_peft(model, tmp_path / "peft")  # the same updates, PEFT's format and names
    frame = compare_adapters([ours, exported])
    assert (frame["only_in"] == "").all() and not frame["module"].str.startswith("base_model").any()
    assert np.allclose(frame["cosine"], 1.0) and np.allclose(frame["relative_distance"], 0.0, atol=1e-5)


def test_a_module_in_one_adapter_only_is_listed_not_dropped(tmp_path):
    both, _ = saved(tmp_path, "both", r=2)
    one, _ = saved(tmp_path, "one", r=2, targets=["q_proj"], seed=4)
    frame = compare_adapters([both, one])
    lonely = frame[frame["only_in"] != ""]
    assert sorted(lonely["module"]) == sorted(m for m in frame["module"] if "v_proj" in m)
    assert (lonely["only_in"] == str(both)).all() and lonely["cosine"].isna().all()


def test_three_adapters_give_every_pair(tmp_path):
    folders = [saved(tmp_path, f"a{i}", r=2, seed=i)[0] for i in range(3)]
    frame = compare_adapters(folders)
    assert sorted(set(zip(frame["a"], frame["b"]))) == sorted(
        (str(folders[i]), str(folders[j])) for i in range(3) for j in range(i + 1, 3))


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_prints_writes_csv_and_refuses_bad_input(tmp_path):
    a, _ = saved(tmp_path, "a", r=2, seed=5)
    b, _ = saved(tmp_path, "b", r=3, seed=6)
    code, out, _ = run_cli("compare", str(a), str(b), "--csv", str(tmp_path / "pairs.csv"))
    assert code == 0 and "per layer" in out and (tmp_path / "pairs.csv").is_file()
    bad = {
        "one folder": ((str(a),), "at least two adapter folders"),
        "missing": ((str(a), str(tmp_path / "nope")), "does not exist"),
        "not an adapter": ((str(a), str(tmp_path)), "is not a saved adapter"),
        "same twice": ((str(a), str(a)), "the same folder is given twice"),
        "csv exists": ((str(a), str(b), "--csv", str(tmp_path / "pairs.csv")), "--overwrite"),
        "csv is an input": ((str(a), str(b), "--csv", str(a)), "it would be overwritten"),
    }
    for name, (argv, message) in bad.items():
        code, _, err = run_cli("compare", *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (name, err)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())  # inputs untouched


def test_different_shapes_and_bases_are_one_line_errors(tmp_path):
    small, _ = saved(tmp_path, "small", r=2)
    model = tiny_llama()
    model.model.layers[0].self_attn.q_proj = torch.nn.Linear(32, 64, bias=False)  # another shape
    ranklab.attach(model, ranklab.make_config("lora", r=2, target_modules=TARGETS))
    wide = ranklab.save_adapters(model, tmp_path / "wide")
    with pytest.raises(ValueError, match=r"q_proj: ΔW is 32 x 32 in one adapter and 64 x 32 in the other"):
        compare_adapters([small, wide])
    peft_folders = []
    for i, base in enumerate(("org/base-one", "org/base-two")):
        peft_model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=TARGETS))
        randomize_peft(peft_model, seed=i)
        peft_model.peft_config["default"].base_model_name_or_path = base
        peft_model.save_pretrained(tmp_path / f"peft{i}")
        peft_folders.append(tmp_path / f"peft{i}")
    with pytest.raises(ValueError, match="name different bases .*org/base-one.*org/base-two"):
        compare_adapters(peft_folders)


def test_checkpoint_drift_equals_what_rank_dynamics_recorded_in_the_same_run(tmp_path):
    """A small training loop that saves both: RankDynamics during training, and a checkpoint-<step>
    adapter folder at the same steps; the folder's rank measures equal the recorded ones, and its
    drift measures equal the dense reference between the saved updates."""
    from ranklab.inspect import RankDynamics
    from ranklab.inspect.checkpoints import checkpoint_drift, drift_figure

    torch.manual_seed(0)
    model = tiny_llama()
    ranklab.attach(model, ranklab.make_config("lora", r=4, target_modules=TARGETS))
    randomize_adapters(model, seed=7)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    dynamics, dense = RankDynamics(every=2), {}
    ids = torch.randint(0, 64, (4, 12))
    for step in range(7):
        if step % 2 == 0:
            dynamics.on_step(step, model)
            ranklab.export_peft(model, tmp_path / "run" / f"checkpoint-{step}")
            dense[step] = {name: (lambda f: f[0].detach().double() @ f[1].detach().double())(module_factors(layer))
                           for name, layer in ranklab.adapter_layers(model).items()}
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    ranks, drift = checkpoint_drift(tmp_path / "run")
    recorded = pd.DataFrame(dynamics.records)
    merged = ranks.merge(recorded, left_on=["step", "module"], right_on=["step", "name"], suffixes=("", "_dyn"))
    assert len(merged) == len(ranks) == len(recorded)
    for measure in ("effective_rank", "stable_rank", "energy_rank", "numerical_rank"):
        np.testing.assert_allclose(merged[measure], merged[measure + "_dyn"], rtol=1e-5, err_msg=measure)
    steps = sorted(dense)
    for _, row in drift.iterrows():
        other = steps[-1] if row["against"] == "final" else steps[steps.index(row["step"]) - 1]
        reference = dense_reference(dense[other][row["module"]], dense[row["step"]][row["module"]])
        assert row["cosine"] == pytest.approx(reference["cosine"], rel=1e-6)
        assert row["relative_distance"] == pytest.approx(reference["relative_distance"], rel=1e-5, abs=1e-6)
    assert set(drift[drift["against"] == "previous"]["step"]) == set(steps[1:])
    assert drift_figure(ranks, drift).axes
    code, out, _ = run_cli("checkpoints", str(tmp_path / "run"), "--output", str(tmp_path / "drift-out"))
    assert code == 0 and "drift per checkpoint" in out and (tmp_path / "drift-out" / "drift.png").is_file()
    code, _, err = run_cli("checkpoints", str(tmp_path / "run" / "checkpoint-0"))
    assert code == 2 and "drift needs at least two" in err
    code, _, err = run_cli("checkpoints", str(tmp_path / "run"), "--output", str(tmp_path / "run" / "out"))
    assert code == 2 and "would be overwritten" in err  # never written into the input
