"""Every recipe of a scale in miniature: the same runs, order and code path, on tiny models.

A GPU user should never find a wiring error after hours.  ``miniature_runs`` keeps each run's
recipe, method entry (id and label), seed, task set, method and options, optimisation settings and
``init_from`` (so the MNLI-initialised runs load their MNLI run's adapter), and changes only what
makes it small: a
tiny random backbone built from a config, local GLUE-schema fixture files instead of the hub, a
few optimizer steps, a batch of at most 4 rows, fp32.  ``run_miniature`` trains them through
the runner (waves, init-from, analysis) and ``ranklab reproduce --miniature`` does the same from
the shell.

Stand-ins: the MoR recipes' LLaMA-7B becomes ``tiny-llama`` (a 2-layer Llama built from a config):
the same causal-LM objective on the GLUE completion tasks (``mnli_lm`` ...), read from the same
fixture files as the classification recipes.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ...backbones import BACKBONES
from ..protocol.recipes import RunSpec, get_scale, recipe_runs

MINIATURE_BACKBONES = {"roberta-base": "tiny-random", "roberta-large": "tiny-random", "llama-7b": "tiny-llama"}
MINIATURE_STEPS = 3  # AdaLoRA's schedule needs a scoring step before its final prune (tfinal ~ half)
FIXTURE_ROWS = 16


def miniature_runs(runs: list[RunSpec], data_dir: str | Path, cache_dir: str | Path | None = None,
                   steps: int = MINIATURE_STEPS) -> list[RunSpec]:
    """``runs`` made small (see the module docstring); run ids, order and init-from unchanged."""
    small = []
    for run in runs:
        c = run.config
        backbone = MINIATURE_BACKBONES.get(c.backbone, c.backbone)
        config = replace(c, backbone=backbone, head_module=BACKBONES[backbone].head, data_dir=str(data_dir),
                         cache_dir=None if cache_dir is None else str(cache_dir), max_steps=steps,
                         batch_size=min(c.batch_size, 4), eval_batch_size=16, mixed_precision="no")
        small.append(replace(run, config=config, requires=()))
    return small


def run_miniature(names: list[str] | None, scale: str, results: str | Path, seeds: tuple[int, ...] | None = None,
                  steps: int = MINIATURE_STEPS, quiet: bool = True) -> list[Path]:
    """Write GLUE fixture files under ``results`` and train every run of the named recipes (all of
    the scale's by default) in miniature, first seed only unless ``seeds`` is given."""
    from ...data import write_glue_fixture
    from .runner import run_all

    scale_spec = get_scale(scale)
    if scale_spec.synthetic:
        raise ValueError(f"the {scale} scale is already synthetic and tiny; run it as it is")
    results = Path(results)
    runs = recipe_runs(names, scale_spec, seeds or (scale_spec.seeds[0],))
    from ...data import get_task

    tasks = sorted({get_task(t).base_task or t for run in runs for t in run.config.tasks})  # mnli_lm reads mnli
    fixture = write_glue_fixture(results / "glue-fixture", names=tasks, rows=FIXTURE_ROWS, seed=0)
    small = miniature_runs(runs, fixture, cache_dir=results / "cache", steps=steps)
    return run_all(small, results, scale_spec, quiet, desc=f"{scale} in miniature")
