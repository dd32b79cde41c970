"""`ranklab inspect` on a Llama-7B-shaped PEFT LoRA folder: end to end and by part, beside a dense-SVD audit.

The folder: 32 layers x {q, k, v, o, gate, up, down}_proj = 224 modules, r = 64, bf16 factors
(random, 320 MB), no base (the hub is unreachable here).  Measured in one run:

- end to end: `ranklab inspect FOLDER` in a fresh process (imports included), wall time and peak
  resident memory (``ru_maxrss`` of the child), and the same for a tiny adapter (the fixed cost
  of Python, torch and pandas);
- parts, in this process: reading the folder, the factored spectra (Cholesky QR of the r x r Gram
  matrices), phi with the previous layer, the report and its text;
- the dense audit it replaces: ``torch.linalg.svdvals`` of each dense ΔW (d_out x d_in), timed on
  one module of each of the three shapes and scaled by the module counts (224 dense SVDs would
  take tens of minutes), as a ratio against the factored spectra of the same modules;
- `ranklab compare` of two such folders (a second one from another seed) in this process, and the
  dense computation of the same measures, as a ratio on the same modules.

    python benchmarks/audit_bench.py [--keep FOLDER]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, FFN, LAYERS, RANK = 4096, 11008, 32, 64
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, HIDDEN),
          "self_attn.v_proj": (HIDDEN, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
          "mlp.gate_proj": (HIDDEN, FFN), "mlp.up_proj": (HIDDEN, FFN), "mlp.down_proj": (FFN, HIDDEN)}


def write_folder(folder: Path, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for name, (d_in, d_out) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{name}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(RANK, d_in, generator=generator) * 0.01).bfloat16()
            tensors[f"{key}.lora_B.weight"] = (torch.randn(d_out, RANK, generator=generator) * 0.01).bfloat16()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, "task_type": "CAUSAL_LM",
              "target_modules": [n.rsplit(".", 1)[-1] for n in SHAPES], "base_model_name_or_path": "meta-llama/Llama-2-7b-hf"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def write_tiny(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(2, 8),
               "base_model.model.layers.0.q_proj.lora_B.weight": torch.randn(8, 2)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 2}))
    return folder


# The child reports its own peak, VmHWM of its address space: ru_maxrss is no good here, since
# RUSAGE_CHILDREN's is the largest of all children so far and Linux carries the forking parent's
# peak into the child's own ru_maxrss across exec (this benchmark holds the 7B tensors itself).
CHILD = ("import atexit, re, runpy, sys\n"
         "peak = lambda: re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
         "atexit.register(lambda: sys.stderr.write(f'PEAK_KIB {peak()}\\n'))\n"
         "sys.argv = ['ranklab', 'inspect', sys.argv[1]]\n"
         "runpy.run_module('ranklab.cli', run_name='__main__')\n")


def end_to_end(folder: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of `ranklab inspect FOLDER` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KIB ")][-1]
    return wall, int(peak.split()[1]) / 1024


def parts(folder: Path) -> dict[str, float]:
    import numpy as np
    import torch

    from ranklab.inspect.adapter_files import read_adapter
    from ranklab.inspect.audit import _phi, audit_adapter
    from ranklab.inspect.spectra import two_factor_svd

    timings = {}
    start = time.perf_counter()
    saved = read_adapter(folder)
    timings["read the folder"] = time.perf_counter() - start
    start = time.perf_counter()
    svds = {name: two_factor_svd(*module.factors(), left_vectors=False) for name, module in saved.modules.items()}
    timings["factored spectra (224 modules)"] = time.perf_counter() - start
    start = time.perf_counter()
    names = list(svds)
    for name in names:
        layer = int(name.split(".layers.")[1].split(".")[0])
        previous = name.replace(f".layers.{layer}.", f".layers.{layer - 1}.")
        if layer and previous in svds:
            _phi(svds[previous].V, svds[name].V, RANK)
    timings["phi with the previous layer"] = time.perf_counter() - start
    start = time.perf_counter()
    audit = audit_adapter(folder, all_pairs=False)
    timings["whole audit (read, spectra, phi, report)"] = time.perf_counter() - start
    start = time.perf_counter()
    audit.to_text()
    timings["report text"] = time.perf_counter() - start
    # the dense audit: one module per shape, scaled by how many modules have that shape
    counts: dict[tuple[int, int], list[str]] = {}
    for name, module in saved.modules.items():
        counts.setdefault(tuple(module.fixed[0].shape[:1]) + tuple(module.fixed[1].shape[1:]), []).append(name)
    dense = factored = 0.0
    for shape, members in counts.items():
        module = saved.modules[members[0]]
        first, second = module.factors()
        start = time.perf_counter()
        two_factor_svd(first, second, left_vectors=False)
        factored += (time.perf_counter() - start) * len(members)
        start = time.perf_counter()
        sigma = torch.linalg.svdvals(first @ second)
        dense += (time.perf_counter() - start) * len(members)
        ours = two_factor_svd(first, second, compute_uv=False).S
        assert np.allclose(ours.numpy(), sigma[:RANK].numpy(), rtol=1e-4, atol=1e-6 * float(sigma[0]))
    timings["dense svdvals, 224 modules (3 timed, scaled)"] = dense
    timings["factored spectra, the same 3 modules scaled"] = factored
    return timings


def compare_parts(first: Path, second: Path) -> dict[str, float]:
    """`ranklab compare` of two 7B-shaped folders in this process, beside the dense computation of
    the same measures (the d_out x d_in updates, their inner product and norms, and the SVDs the
    subspace measures need), timed on one module per shape and scaled by the module counts."""
    import torch

    from ranklab.inspect.adapter_files import read_adapter
    from ranklab.inspect.compare import compare_adapters

    start = time.perf_counter()
    frame = compare_adapters([first, second])
    timings = {"compare, 224 module pairs (read both, every measure)": time.perf_counter() - start}
    a, b = read_adapter(first), read_adapter(second)
    counts: dict[tuple[int, int], list[str]] = {}
    for name, module in a.modules.items():
        counts.setdefault(tuple(module.fixed[0].shape[:1]) + tuple(module.fixed[1].shape[1:]), []).append(name)
    dense = factored = 0.0
    from ranklab.inspect.compare import compare_factors

    for members in counts.values():
        name = members[0]
        fa, fb = a.modules[name].factors(), b.modules[name].factors()
        start = time.perf_counter()
        compare_factors(fa, fb, name)
        factored += (time.perf_counter() - start) * len(members)
        start = time.perf_counter()
        delta_a, delta_b = fa[0] @ fa[1], fb[0] @ fb[1]
        float((delta_a * delta_b).sum()), float(delta_a.norm()), float((delta_a - delta_b).norm())
        torch.linalg.svd(delta_a, full_matrices=False), torch.linalg.svd(delta_b, full_matrices=False)
        dense += (time.perf_counter() - start) * len(members)
    timings["dense compare, 224 modules (3 timed, scaled)"] = dense
    timings["factored compare, the same 3 modules scaled"] = factored
    assert len(frame) == len(a.modules) and (frame["only_in"] == "").all()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="write the folder here (default: a temporary folder)")
    args = parser.parse_args()
    import torch

    from ranklab.hardware import describe, hardware_info

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        folder, tiny = write_folder(root / "llama7b-lora"), write_tiny(root / "tiny-lora")
        size = (folder / "adapter_model.safetensors").stat().st_size / 2**20
        print(f"hardware: {describe(hardware_info())}; torch {torch.__version__}")
        print(f"folder: {len(SHAPES) * LAYERS} modules, r={RANK}, bf16, {size:.0f} MiB\n")
        end_to_end(tiny)  # warm the file cache and the imports' .pyc files
        tiny_wall, tiny_peak = end_to_end(tiny)
        wall, peak = end_to_end(folder)
        print("| measure | value |\n|---|---|")
        print(f"| `ranklab inspect` end to end (imports included) | {wall:.2f} s |")
        print(f"| the same on a 2-module adapter (Python, torch, pandas: the fixed cost) | {tiny_wall:.2f} s |")
        print(f"| peak resident memory | {peak:.0f} MiB = {peak / size:.2f} x the file |")
        print(f"| peak resident memory of the 2-module run | {tiny_peak:.0f} MiB |")
        print(f"| memory above the 2-module run | {peak - tiny_peak:.0f} MiB = {(peak - tiny_peak) / size:.2f} x the file |")
        timings = parts(folder)
        for name, seconds in timings.items():
            print(f"| {name} | {seconds:.2f} s |")
        ratio = timings["dense svdvals, 224 modules (3 timed, scaled)"] / timings["factored spectra, the same 3 modules scaled"]
        print(f"| dense-SVD audit / factored audit (spectra of the same modules) | {ratio:.0f}x |")
        other = write_folder(root / "llama7b-lora-2", seed=1)
        timings = compare_parts(folder, other)
        for name, seconds in timings.items():
            print(f"| {name} | {seconds:.2f} s |")
        ratio = timings["dense compare, 224 modules (3 timed, scaled)"] / timings["factored compare, the same 3 modules scaled"]
        print(f"| dense compare / factored compare (the same modules) | {ratio:.0f}x |")


if __name__ == "__main__":
    main()
