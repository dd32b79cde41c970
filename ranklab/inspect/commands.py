"""``ranklab inspect PATH`` (audit one saved adapter folder without its base), ``compare`` (adapters side by
side), ``checkpoints`` (an adapter over its saved checkpoints) and ``compress``."""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def _inspect(args: argparse.Namespace) -> int:
    if not (0.0 < args.tau <= 1.0):
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    if not (0.0 < args.intruder_eps < 1.0) or args.intruder_k < 1 or args.top_k < 0:
        raise ValueError("need --intruder-eps in (0, 1), --intruder-k >= 1 and --top-k >= 0")
    from ..atomic import write_text
    from ..output_paths import check_output_file, check_output_folder

    if args.csv:  # checked before the audit: bad output paths lose no work
        check_output_file(args.csv, "--csv", inputs=[args.path], overwrite=args.overwrite)
    if args.plots:
        check_output_folder(args.plots, "--plots", inputs=[args.path], overwrite=args.overwrite)
    from .audit import audit_adapter

    selector = {k: v for k, v in (("task", args.task), ("rank", args.rank)) if v is not None}
    audit = audit_adapter(args.path, base=args.base, tau=args.tau, top_k=args.top_k, intruder_k=args.intruder_k,
                          intruder_eps=args.intruder_eps, all_pairs=bool(args.plots), **selector)
    print(audit.to_text())
    if args.csv:
        print(f"wrote {write_text(args.csv, audit.report.to_csv(index=False))}")
    if args.plots:
        written = audit.save_plots(args.plots)
        print(f"wrote {len(written)} files to {args.plots}: " + ", ".join(sorted({p.stem for p in written})))
    return 0


def _compare(args: argparse.Namespace) -> int:
    if not args.tol > 0:
        raise ValueError(f"--tol must be > 0, got {args.tol}")
    from ..atomic import write_text
    from ..output_paths import check_output_file

    if args.csv:  # checked before any work: a bad output path loses nothing, an input is never written
        check_output_file(args.csv, "--csv", inputs=args.paths, overwrite=args.overwrite)
    from .compare import compare_adapters, compare_text

    frame = compare_adapters(args.paths, tol=args.tol)
    print(compare_text(frame))
    if args.csv:
        print(f"wrote {write_text(args.csv, frame.to_csv(index=False))}")
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    from ..atomic import write_text
    from ..output_paths import check_output_folder

    if args.output:
        check_output_folder(args.output, "--output", inputs=[args.folder], overwrite=args.overwrite)
    from .checkpoints import checkpoint_drift, drift_figure

    ranks, drift = checkpoint_drift(args.folder)
    table = drift.pivot_table(index=["step", "against"], values=["cosine", "relative_distance", "phi"], aggfunc="mean")
    print("drift per checkpoint (mean over modules):")
    print(table.reset_index().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("effective rank per checkpoint (mean over modules):")
    print(ranks.groupby("step")[["effective_rank", "stable_rank", "energy_rank"]].mean().to_string(
        float_format=lambda v: f"{v:.4g}"))
    if args.output:
        from ..plots import save_figure

        written = [write_text(Path(args.output) / "ranks.csv", ranks.to_csv(index=False)),
                   write_text(Path(args.output) / "drift.csv", drift.to_csv(index=False)),
                   *save_figure(drift_figure(ranks, drift), Path(args.output) / "drift")]
        print(f"wrote {len(written)} files to {args.output}")
    return 0


def _merge_audit(args: argparse.Namespace) -> int:
    from .merge import COMBINATIONS

    if args.combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {args.combination!r}; valid: {', '.join(COMBINATIONS)}")
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        raise ValueError(f"--weights takes a comma list of numbers, got {args.weights!r}") from None
    if len(args.paths) < 2 or len(weights) != len(args.paths):
        raise ValueError(f"give two or more adapter folders and one weight each, got {len(args.paths)} folders and "
                         f"{len(weights)} weights")
    from ..output_paths import check_output_folder
    from .compare import read_adapters

    if args.output:
        check_output_folder(args.output, "--output", inputs=args.paths, overwrite=args.overwrite)
    adapters = read_adapters(args.paths)  # one-line errors: unreadable folders, different bases
    base = args.base or adapters[0].base_name
    if not base:
        raise ValueError("the adapters name no base model; pass --base (a local model folder or a hub id)")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from .merge import merge_audit, reload_check

    try:
        model = AutoModelForCausalLM.from_pretrained(base)
    except OSError as error:
        raise ValueError(f"cannot load the base {base!r} ({str(error).splitlines()[0]}); pass --base with a local "
                         "model folder") from None
    names = [f"a{i}" for i in range(len(args.paths))]
    model = PeftModel.from_pretrained(model, str(args.paths[0]), adapter_name=names[0])
    for name, path in zip(names[1:], args.paths[1:]):
        model.load_adapter(str(path), adapter_name=name)
    options = {"density": args.density} if args.density is not None else {}
    audit = merge_audit(model, names, weights, args.combination, **options)
    print("adapters: " + ", ".join(f"{n} = {p}" for n, p in zip(names, args.paths)))
    print("before the merge (per pair and module):")
    print(audit["before"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"after the {args.combination} merge (per module, against the intended weighted sum):")
    print(audit["after"].drop(columns=["spectrum"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.output:
        vocab = getattr(model.config, "vocab_size", 100)
        inputs = {"input_ids": torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(0))}
        check = reload_check(model, "merged", args.output, inputs)
        print("reload of the merged folder: " + ", ".join(f"{k}: {v}" for k, v in check.items()))
    return 0


def _compress(args: argparse.Namespace) -> int:
    if not (0.0 < args.tau <= 1.0):
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    from ..output_paths import check_output_folder

    check_output_folder(args.output, "--output", inputs=[args.path], overwrite=args.overwrite)
    from ..compression import compress_adapter

    selector = {"task": args.task} if args.task is not None else {}
    result = compress_adapter(args.path, args.output, tau=args.tau, **selector)
    table = result.table[["layer", "module", "rank_before", "rank_after", "energy_kept", "params_before", "params_after"]]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    before, after = int(table["params_before"].sum()), int(table["params_after"].sum())
    print(f"adapter parameters {before:,} -> {after:,} ({after / before:.1%}); wrote a PEFT LoRA to {result.path}")
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    inspect = subparsers.add_parser(
        "inspect", help="audit a saved adapter folder (PEFT LoRA/AdaLoRA or ranklab) without its base model",
        description="Per module: ranks, spectra, effective/stable/energy rank, ||ΔW||_F and the subspace "
                    "similarity with the previous layer, all from the adapter's factors. With --base: "
                    "||ΔW||/||W0||, alignment with W0 and intruder dimensions.")
    inspect.add_argument("path", help="adapter folder (adapter_config.json or ranklab_config.json inside)")
    inspect.add_argument("--base", default=None, help="the base model: a local folder, a ranklab backbone name or "
                         "a hub id (from the local HF cache offline); adds the columns that need W0")
    inspect.add_argument("--plots", metavar="DIR", default=None, help="write the standard figures (PNG + PDF) to DIR")
    inspect.add_argument("--csv", metavar="FILE", default=None, help="write the full report (every column) as CSV")
    inspect.add_argument("--tau", type=_fraction, default=0.9, help="energy share of the energy rank (default 0.9)")
    inspect.add_argument("--top-k", type=int, default=4, help="singular values listed as columns (default 4)")
    inspect.add_argument("--task", type=int, default=None, help="ranklab multi-task adapters: one task (default: all)")
    inspect.add_argument("--rank", type=int, default=None, help="ranklab DyLoRA adapters: the rank to evaluate at")
    inspect.add_argument("--intruder-k", type=int, default=10, help="top singular vectors of W0+ΔW checked (default 10)")
    inspect.add_argument("--intruder-eps", type=_fraction, default=0.5,
                         help="|cos| below which a vector is an intruder dimension (default 0.5)")
    inspect.add_argument("--overwrite", action="store_true",
                         help="replace an existing --csv file; write into a non-empty --plots folder (same-named figures replaced)")
    inspect.set_defaults(func=_inspect)
    compare = subparsers.add_parser(
        "compare", help="compare two or more saved adapters module by module, exactly from their factors",
        description="Per pair of adapters and module both hold: the cosine of the two updates, their relative "
                    "distance, the subspace similarity phi at their ranks, the principal angles of their column and "
                    "row spaces and both spectra, computed from the factors (no dense d x d product); a summary per "
                    "layer. PEFT LoRA/AdaLoRA and ranklab folders mix; a module one adapter lacks is listed.")
    compare.add_argument("paths", nargs="+", metavar="PATH", help="two or more adapter folders (or ranklab run folders)")
    compare.add_argument("--csv", metavar="FILE", default=None, help="write every measure (one row per pair and module)")
    compare.add_argument("--tol", type=float, default=1e-6,
                         help="relative tolerance of the numerical rank the subspaces are taken at (default 1e-6)")
    compare.add_argument("--overwrite", action="store_true", help="replace an existing --csv file (never an input)")
    compare.set_defaults(func=_compare)
    checkpoints = subparsers.add_parser(
        "checkpoints", help="how an adapter moved over training: its checkpoint-<step>/ folders compared",
        description="Per checkpoint-<step>/ folder (the Hugging Face Trainer's, or any adapter folders so named): each "
                    "module's rank measures, and its cosine, relative distance and phi against the previous and the "
                    "final checkpoint, from the factors.")
    checkpoints.add_argument("folder", help="training output folder holding checkpoint-<step>/ adapter folders")
    checkpoints.add_argument("--output", metavar="DIR", default=None,
                             help="write ranks.csv, drift.csv and the drift figure (PNG + PDF) to DIR")
    checkpoints.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder")
    checkpoints.set_defaults(func=_checkpoints)
    merge = subparsers.add_parser(
        "merge-audit", help="merge PEFT LoRA adapters with PEFT and audit the merge before and after",
        description="Before: per pair of adapters and module, the cosine, principal angle and sign conflicts. After "
                    "PEFT's add_weighted_adapter: per module the merged update against the intended weighted sum "
                    "(relative error, exactly from the factors), its rank and spectrum, and why they differ; with "
                    "--output, the merged adapter saved, reloaded in PEFT and its logits compared.")
    merge.add_argument("paths", nargs="+", metavar="PATH", help="two or more PEFT LoRA adapter folders")
    merge.add_argument("--weights", required=True, help="one weight per adapter, comma separated")
    merge.add_argument("--combination", required=True, help="PEFT's combination_type: linear, cat, svd, ties, "
                       "ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, magnitude_prune, "
                       "magnitude_prune_svd")
    merge.add_argument("--density", type=float, default=None, help="ties / dare / magnitude_prune: share kept")
    merge.add_argument("--base", default=None, help="the base model folder (default: the adapters' base_model_name_or_path)")
    merge.add_argument("--output", metavar="DIR", default=None, help="save the merged adapter here and check it reloads")
    merge.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder (never an input)")
    merge.set_defaults(func=_merge_audit)
    compress = subparsers.add_parser(
        "compress", help="truncate a saved adapter to its energy rank and write a PEFT LoRA (no base needed)",
        description="Each module's update is cut to the fewest singular values holding a share tau of its energy "
                    "(exact truncated SVD from the factors) and written as a PEFT LoRA with a per-module rank_pattern. "
                    "To measure the accuracy change, use ranklab.compression.compress_adapter(model, ..., eval_batches=).")
    compress.add_argument("path", help="adapter folder (PEFT LoRA/AdaLoRA or ranklab)")
    compress.add_argument("--output", required=True, help="folder to write the compressed PEFT LoRA to")
    compress.add_argument("--tau", type=_fraction, default=0.9, help="energy share kept per module (default 0.9)")
    compress.add_argument("--task", type=int, default=None, help="ranklab multi-task adapters: the task to export")
    compress.add_argument("--overwrite", action="store_true",
                          help="replace the contents of an existing non-empty --output folder (never the input)")
    compress.set_defaults(func=_compress)
