"""`make bench`: adapter cost as ratios measured side by side in one process.

Every ratio compares two variants timed alternately (A B A B ...) after warm-up, medians over
repeats, so machine load affects both sides alike.  Shapes are MiniLM-L6's (BERT, 6 layers,
hidden 384) built from a config with random weights: the cost does not depend on the values.

    python benchmarks/bench.py [--repeats 15] [--batch 8] [--seq 64] [--out benchmarks/results.md]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import (  # noqa: E402
    DEVICE,  # noqa: E402,F811
    MOR_OPTIONS,
    build_backbone,
    peft_lora,
    ranklab_model,
)
from spectra_bench import SHAPES, relative_difference  # noqa: E402
from spectra_bench import build as build_spectra_model

import ranklab  # noqa: E402
from ranklab.adapters.mor import mor_loop_reference  # noqa: E402
from ranklab.hardware import describe, hardware_info, native_bf16  # noqa: E402
from ranklab.inspect import module_spectrum  # noqa: E402


def make_batch(batch: int, seq: int, num_labels: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 1000, (batch, seq), generator=generator)
    return {k: v.to(DEVICE) for k, v in {
        "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
        "labels": torch.randint(0, num_labels, (batch,), generator=generator)}.items()}


def train_step_fn(model: nn.Module, batch: dict) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def inference_fn(model: nn.Module, batch: dict) -> Callable[[], None]:
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def forward() -> None:
        with torch.no_grad():
            model(**inputs)
    return forward


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def paired_times(fn_a: Callable[[], None], fn_b: Callable[[], None], repeats: int,
                 warmup: int = 3) -> tuple[list[float], list[float]]:
    """Seconds of a and b per repeat, timed alternately (a b a b ...) after warm-up."""
    for _ in range(warmup):
        fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times.append(time.perf_counter() - start)
    return times_a, times_b


class Ratio:
    """a / b from paired repeats: the ratio of medians and the interquartile range of the
    per-pair ratios (their spread under whatever else the machine is doing)."""

    def __init__(self, times_a: list[float], times_b: list[float]) -> None:
        self.a, self.b = statistics.median(times_a), statistics.median(times_b)
        pairs = sorted(x / y for x, y in zip(times_a, times_b))
        quartiles = statistics.quantiles(pairs, n=4) if len(pairs) >= 2 else [pairs[0]] * 3
        self.value, self.low, self.high = self.a / self.b, quartiles[0], quartiles[2]


def paired_median(fn_a: Callable[[], None], fn_b: Callable[[], None], repeats: int, warmup: int = 3) -> Ratio:
    return Ratio(*paired_times(fn_a, fn_b, repeats, warmup))


def saved_activation_bytes(step: Callable[[], None]) -> int:
    """Bytes of tensors autograd keeps for backward in one step (unique storages): the part of a
    training step's peak memory that adapter implementations differ in, measurable on a CPU."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def peak_memory(step: Callable[[], None]) -> tuple[int, str]:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated(), "CUDA peak allocated"
    return saved_activation_bytes(step), "bytes saved for backward"


def adapter_flop_share(model: nn.Module, batch: dict) -> float:
    """Share of a training step's FLOPs (forward + backward) spent inside the adapters: each
    adapter layer's count minus its frozen base Linear's, over the whole step."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    counts = {name.split(".", 1)[-1]: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    adapter = sum(counts.get(name, 0) - counts.get(f"{name}.base", 0) for name in ranklab.adapter_layers(model))
    return adapter / counter.get_total_flops()


def frozen_base(num_labels: int = 2) -> nn.Module:
    """The limit: the frozen backbone with gradients flowing through it but no adapter at all."""
    model = build_backbone(num_labels).to(DEVICE)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    model.get_input_embeddings().register_forward_hook(lambda module, args, out: out.requires_grad_(True))
    return model


def _verdict(ratio: Ratio, goal: str) -> str:
    """Whether the goal holds over the whole interquartile range, fails over it, or the spread
    crosses it (then the median alone cannot say)."""
    if goal.startswith("<="):
        limit = float(goal[2:])
        return "meets goal" if ratio.high <= limit else "misses goal" if ratio.low > limit else "spread crosses goal"
    if goal.startswith(">="):
        limit = float(goal[2:])
        return "meets goal" if ratio.low >= limit else "misses goal" if ratio.high < limit else "spread crosses goal"
    return "-"


def row(name: str, ratio: Ratio | float, goal: str, detail: str) -> str:
    """A table row; a Ratio shows its interquartile range and what it says about the goal."""
    if isinstance(ratio, Ratio):
        return f"| {name} | {ratio.value:.3f} | {ratio.low:.3f}-{ratio.high:.3f} | {goal} | {_verdict(ratio, goal)} | {detail} |"
    return f"| {name} | {ratio:.3f} | - | {goal} | - | {detail} |"


def ms(ratio: Ratio) -> str:
    return f"{ratio.a * 1e3:.1f} ms vs {ratio.b * 1e3:.1f} ms"


def bench_training(batch: dict, repeats: int) -> list[str]:
    rows = []
    ours, theirs = ranklab_model("lora", r=8), peft_lora(r=8)
    ratio = paired_median(train_step_fn(ours, batch), train_step_fn(theirs, batch), repeats)
    rows.append(row("train step: ranklab lora / PEFT lora (r=8)", ratio, "<= 1.0", ms(ratio)))
    emd = ranklab_model("emd", a=4, b=12)
    ratio = paired_median(train_step_fn(emd, batch), train_step_fn(ours, batch), repeats)
    rows.append(row("train step: emd (a=4, b=12) / lora (r=8), same budget", ratio, "<= 1.03", ms(ratio)))
    mor = ranklab_model("mor", **MOR_OPTIONS)
    ratio = paired_median(train_step_fn(mor, batch), train_step_fn(ours, batch), repeats)
    rows.append(row(f"train step: mor (N={MOR_OPTIONS['n_experts']}, r={MOR_OPTIONS['r']}) / lora (r=8)",
                    ratio, "<= 1.3", ms(ratio)))
    limit = frozen_base()
    ratio = paired_median(train_step_fn(ours, batch), train_step_fn(limit, batch), repeats)
    rows.append(row("train step: lora / frozen base (the limit)", ratio, "-> 1.0",
                    f"adapters' share of the step's FLOPs: {adapter_flop_share(ours, batch):.2%}"))
    m_ours, kind = peak_memory(train_step_fn(ours, batch))
    m_peft, _ = peak_memory(train_step_fn(theirs, batch))
    rows.append(row("train memory: ranklab lora / PEFT lora", m_ours / m_peft, "<= 1.0",
                    f"{kind}: {m_ours / 2**20:.1f} MiB vs {m_peft / 2**20:.1f} MiB"))
    return rows


def bench_mor_layer(repeats: int, tokens: int = 512, n_experts: int = 8, r: int = 32, d: int = 384) -> list[str]:
    """One MoR layer (the paper's N=8, r=32) forward + backward: vector stack vs loops over experts."""
    layer = ranklab.get_method("mor")[1](nn.Linear(d, d), ranklab.make_config("mor", n_experts=n_experts, r=r))
    layer = layer.to(DEVICE)
    nn.init.normal_(layer.mor_B, std=0.02)  # B starts at zero; make the outputs non-trivial
    x = torch.randn(tokens, d, device=DEVICE, requires_grad=True)

    def run(output_fn: Callable) -> Callable[[], None]:
        return lambda: output_fn(x).sum().backward()

    rows = []
    for name, loop_fn in (("dense per-expert loop (test reference)", partial(mor_loop_reference, dense=True)),
                          ("factored per-expert loop", partial(mor_loop_reference, dense=False))):
        with torch.no_grad():
            error = (layer.adapter_output(x) - loop_fn(layer, x)).abs().max().item()
        ratio = paired_median(run(lambda v: loop_fn(layer, v)), run(layer.adapter_output), repeats)
        rows.append(row(f"mor layer (N={n_experts}, r={r}, {tokens} tokens) fwd+bwd: {name} / vector stack",
                        ratio, ">= 4", f"{ratio.b * 1e3:.2f} ms vs {ratio.a * 1e3:.2f} ms, max diff {error:.1e}"))
    return rows


def bench_inference(batch: dict, repeats: int) -> list[str]:
    adapted = ranklab_model("lora", r=8, randomize=True)
    merged = ranklab.merge_and_unload(adapted)
    base = build_backbone(2).to(DEVICE)
    ratio = paired_median(inference_fn(merged, batch), inference_fn(base, batch), repeats)
    return [row("inference: merged lora / base model", ratio, "<= 1.01", ms(ratio))]


def bench_protocol(repeats: int) -> list[str]:
    """The embedded protocol's training (real MiniLM-L6, offline movie data) against the HF Trainer
    + PEFT doing the same work, and the speed-ups it uses (or rejected)."""
    import protocol_bench as pb

    work = f"{pb.STEPS} steps x batch {pb.BATCH}, {pb.TASK}, max length {pb.LENGTH}"
    ours = pb.ranklab_run()
    rows = []
    for grouped in (True, False):
        ratio = paired_median(ours, pb.hf_trainer_run(grouped), repeats, warmup=0)
        rows.append(row(f"protocol training: ranklab trainer / HF Trainer + PEFT (HF group_by_length={grouped})",
                        ratio, "<= 1.0", f"{work}: {ratio.a:.1f} s vs {ratio.b:.1f} s"))
    ratio = paired_median(pb.ranklab_run(group_by_length=False), ours, repeats, warmup=0)
    rows.append(row("speed-up of length-grouped batches: plain / grouped", ratio, ">= 1.0",
                    f"{work}: {ratio.a:.1f} s vs {ratio.b:.1f} s"))
    settings = pb.protocol_settings()
    if settings["mixed_precision"] == "bf16":
        ratio = paired_median(pb.ranklab_run(mixed_precision="no", attn_implementation=None), ours, repeats, warmup=0)
        rows.append(row("speed-up of the protocol's bf16 autocast + eager attention: fp32 (sdpa) / protocol", ratio,
                        ">= 1.0", f"{work}: {ratio.a:.1f} s vs {ratio.b:.1f} s"))
        ratio = paired_median(pb.ranklab_run(attn_implementation="sdpa"), ours, repeats, warmup=0)
        rows.append(row("speed-up of eager attention under bf16: sdpa / eager", ratio, ">= 1.0",
                        f"{work}: {ratio.a:.1f} s vs {ratio.b:.1f} s"))
    else:
        rows.append(row("bf16 autocast", 1.0, "-", "no native bf16 on this machine: the protocol runs in fp32"))
    side_by_side, two_threads = pb.threads_comparison()
    rows.append(row("speed-up of two runs side by side (1 thread each) per run: 1 x 2 threads / 2 x 1 thread",
                    two_threads / side_by_side, ">= 1.0",
                    f"{work}: {two_threads:.1f} s vs {side_by_side:.1f} s per run (one measurement; --jobs)"))
    return rows


def bench_spectra(repeats: int) -> list[str]:
    rows = []
    for name, (n_layers, hidden) in SHAPES.items():
        layers = list(ranklab.adapter_layers(build_spectra_model(n_layers, hidden)).values())

        def factored() -> None:
            with torch.no_grad():
                [module_spectrum(layer) for layer in layers]

        def dense() -> None:
            with torch.no_grad():
                [torch.linalg.svdvals(layer.delta_weight()) for layer in layers]
        ratio = paired_median(dense, factored, repeats, warmup=1)
        worst = max(relative_difference(layer) for layer in layers)
        rows.append(row(f"spectra, all {len(layers)} modules of {name}: dense SVD / factored", ratio, ">= 20",
                        f"{ratio.b * 1e3:.2f} ms vs {ratio.a * 1e3:.1f} ms, max rel. diff {worst:.1e}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="ranklab benchmarks: ratios in one run")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    parser.add_argument("--protocol-repeats", type=int, default=3, help="paired repeats of whole protocol runs")
    parser.add_argument("--skip-protocol", action="store_true", help="leave out the protocol-throughput rows")
    args = parser.parse_args()
    batch = make_batch(args.batch, args.seq)
    header = [
        f"hardware: {describe(hardware_info())}; native bf16: {'yes' if native_bf16() else 'no'}",
        f"device {DEVICE.type}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"ranklab {ranklab.__version__}, {platform.machine()}; "
        f"batch {args.batch} x {args.seq} tokens, MiniLM-L6 shapes, medians of {args.repeats}",
        "ratio: median of a over median of b; IQR: interquartile range of the per-pair ratios a_i / b_i; "
        "'spread crosses goal': the IQR contains the goal, so the median alone cannot say",
        "", "| comparison | ratio | IQR | goal | reading | detail |", "|---|---|---|---|---|---|",
    ]
    rows = bench_training(batch, args.repeats) + bench_mor_layer(args.repeats) + bench_inference(batch, args.repeats)
    rows += bench_spectra(max(3, args.repeats // 3))
    if not args.skip_protocol:
        rows += bench_protocol(args.protocol_repeats)
    table = "\n".join(header + rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
