"""ranklab's adapter comparison beside gradience's `merge-audit` (a peer), on the same PEFT folders.

gradience runs in an environment of its own (``--peer-python``, default ``.venv-peers``: created
with torch 2.13.0 and gradience 0.11.0 if missing), so its dependencies never touch ranklab's.
Per module the script prints what both compute (norms, stable rank, energy rank, the principal
angles between the column spaces truncated at the energy rank) and the measures that differ in
what they ask (ranklab's cosine of the two updates and phi at the numerical ranks; gradience's
directional agreement and mean overlap).

    python benchmarks/peer_merge_audit.py [--adapters A B] [--peer-python PATH]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".venv-peers"


def peer_python(path: str | None) -> Path:
    if path:
        return Path(path)
    python = PEERS / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "gradience==0.11.0"], check=True)
    return python


def demo_adapters(folder: Path) -> list[Path]:
    """Two PEFT LoRA adapters of ranks 4 and 6 on a tiny random Llama (q, v of 3 layers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    out = []
    for i, r in enumerate((4, 6)):
        torch.manual_seed(0)
        base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                            num_attention_heads=4, num_key_value_heads=2))
        model = get_peft_model(base, LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        model.save_pretrained(folder / f"adapter{i}")
        out.append(folder / f"adapter{i}")
    return out


def ours(a: Path, b: Path) -> dict[str, dict]:
    import torch

    from ranklab.inspect import energy_rank, stable_rank
    from ranklab.inspect.adapter_files import read_adapter
    from ranklab.inspect.compare import compare_factors
    from ranklab.inspect.spectra import two_factor_svd

    first, second = read_adapter(a), read_adapter(b)
    rows = {}
    for name, module in first.modules.items():
        fa, fb = module.factors(), second.modules[name].factors()
        measures = compare_factors(fa, fb, name)
        svd_a, svd_b = (two_factor_svd(*(f.double() for f in factors)) for factors in (fa, fb))
        ka, kb = energy_rank(svd_a.S.numpy()), energy_rank(svd_b.S.numpy())
        cosines = torch.linalg.svdvals(svd_a.U[:, :ka].double().T @ svd_b.U[:, :kb].double())
        rows[name] = {**measures, "energy_rank_a": ka, "energy_rank_b": kb,
                      "stable_rank_a": stable_rank(svd_a.S.numpy()), "angle_cosines_at_energy_rank": cosines.tolist()}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", nargs=2, default=None, help="two PEFT LoRA folders (default: two demo adapters)")
    parser.add_argument("--peer-python", default=None, help="a Python with gradience installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = [Path(p) for p in args.adapters] if args.adapters else demo_adapters(Path(tmp))
        result = subprocess.run([str(peer_python(args.peer_python)), "-m", "gradience.cli", "merge-audit",
                                 "--adapter-a", str(a), "--adapter-b", str(b), "--json"],
                                capture_output=True, text=True, check=True)
        peer = {layer["layer_name"]: layer["metrics"] for layer in json.loads(result.stdout)["per_layer"]}
        mine = ours(a, b)
    print("| module | ‖ΔW_a‖ ranklab / gradience | stable rank a | energy rank a, b | max |Δ cos θ| at the energy "
          "ranks | ranklab cosine of the updates | gradience directional agreement | ranklab φ (numerical ranks) | "
          "gradience mean overlap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in mine.items():
        g = peer[name]
        gap = max(abs(x - y) for x, y in zip(m["angle_cosines_at_energy_rank"], g["principal_angle_cosines"]))
        print(f"| {name.rsplit('model.', 1)[-1]} | {m['norm_a']:.6f} / {g['frobenius_norm_a']:.6f} | "
              f"{m['stable_rank_a']:.4f} / {g['stable_rank_a']:.4f} | {m['energy_rank_a']}, {m['energy_rank_b']} / "
              f"{g['effective_rank_a']}, {g['effective_rank_b']} | {gap:.1e} | {m['cosine']:+.4f} | "
              f"{g['directional_agreement']:+.4f} | {m['phi']:.4f} | {g['mean_overlap']:.4f} |")


if __name__ == "__main__":
    main()
