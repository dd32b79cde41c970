"""The paper scale: each recipe's settings against the official scripts, run order (MNLI first),
the plan, and every paper recipe trained in miniature through the real runner (default suite)."""
import json
import math
from pathlib import Path

import pytest

from ranklab.adapters.rank_router import MORE_OPTIONS
from ranklab.cli import main
from ranklab.experiments.protocol import paper_recipes as pr
from ranklab.experiments.protocol import paper_settings as ps
from ranklab.experiments.run.plan import blocked_reasons, plan_rows, plan_text, run_waves, runnable_recipes
from ranklab.experiments.protocol.recipes import RunSpec, get_scale, recipe_runs
from ranklab.experiments.run.runner import is_finished, run_all, run_folder

PAPER = get_scale("paper")


def runs_of(recipe, seeds=(0,)):
    return recipe_runs([recipe], PAPER, seeds)


def by_id(runs):
    return {run.run_id: run for run in runs}


# Transcribed from microsoft/LoRA examples/NLU/roberta_large_<task>.sh (8 GPUs x per-device batch):
# task: (learning_rate, global batch, epochs, max_seq_length, --lora_path of the MNLI adapter)
LORA_LARGE_SCRIPTS = {"mnli": (3e-4, 32, 10, 128, False), "sst2": (4e-4, 64, 10, 512, False),
                      "mrpc": (3e-4, 32, 20, 512, True), "cola": (3e-4, 32, 20, 128, False),
                      "qnli": (2e-4, 32, 10, 512, False), "qqp": (3e-4, 32, 20, 512, False),
                      "rte": (4e-4, 64, 20, 512, True), "stsb": (3e-4, 32, 10, 128, True)}
# huawei-noah/Efficient-NLP DyLoRA/examples/NLU/roberta_base_<task>.sh (CoLA on 2 GPUs, the rest on 8)
DYLORA_BASE_SCRIPTS = {"mnli": (5e-4, 128, 30, 512, False), "sst2": (5e-4, 128, 60, 512, False),
                       "mrpc": (4e-4, 128, 30, 512, True), "cola": (4e-4, 64, 80, 512, False),
                       "qnli": (4e-4, 256, 25, 512, False), "stsb": (4e-4, 128, 40, 512, True)}


def test_table1_runs_follow_loras_roberta_large_scripts_task_by_task():
    runs = runs_of("single_task", (0, 1))
    assert {r.config.method for r in runs} == {"lora", "emd"} and {r.seed for r in runs} == {0, 1}
    for run in runs:
        c = run.config
        lr, batch, epochs, length, from_mnli = LORA_LARGE_SCRIPTS[c.tasks[0]]
        assert (c.lr, c.batch_size, c.epochs, c.max_length) == (lr, batch, epochs, length), run.run_id
        assert (c.backbone, c.weight_decay, c.warmup_ratio, c.warmup_steps) == ("roberta-large", 0.1, 0.06, None)
        assert c.adapter["alpha"] == 16 and c.adapter["target_modules"] == ["query", "value"]
        assert c.adapter.get("r", 8) == 8 and c.eval_every == 0  # LoRA r=8; EMD a=4, b=12; every epoch
        if from_mnli:  # the same method's MNLI run of the same seed
            source = by_id(runs)[run.init_from]
            assert (source.method_id, source.config.tasks, source.seed) == (run.method_id, ["mnli"], run.seed)
        else:
            assert run.init_from is None


def test_table2_runs_follow_dylora_and_adapted_adalora_scripts():
    runs = runs_of("table2")
    dylora = [r for r in runs if r.config.method == "dylora"]
    assert [r.config.tasks[0] for r in dylora] == ["mnli", "sst2", "mrpc", "cola", "qnli", "stsb"]
    for run in dylora + [r for r in runs if r.config.method == "emd"]:
        c = run.config
        lr, batch, epochs, length, from_mnli = DYLORA_BASE_SCRIPTS[c.tasks[0]]
        assert (c.lr, c.batch_size, c.epochs, c.max_length, c.weight_decay) == (lr, batch, epochs, length, 0.1)
        assert c.backbone == "roberta-base" and bool(run.init_from) == from_mnli
    assert all(r.config.adapter | {"frozen": True} == r.config.adapter for r in dylora)  # the official training
    assert {(r.config.adapter["r_min"], r.config.adapter["r_max"]) for r in dylora} == {(1, 8)}
    assert {r.method_id for r in runs if r.config.tasks == ["mnli"]} == {"dylora_r8_mnli_init", "emd_a4_b12_mnli_init"}
    assert {r.label for r in runs if r.config.tasks == ["mnli"]} == {"DyLoRA r<=8 (MNLI, init)",
                                                                    "EMD a=4, b=12 (MNLI, init)"}
    sst2 = next(r.config for r in runs if r.config.method == "adalora" and r.config.tasks == ["sst2"])
    # QingruZhang/AdaLoRA NLU/scripts/run_debertav3_sst2.sh: lr 8e-4, batch 32, 24 epochs, length 128,
    # warmup 1000 steps, eval every 3000, wd 0.01, alpha 16, init/final warmup 6000/22000 of its 24 x 2105 steps
    assert (sst2.lr, sst2.batch_size, sst2.epochs, sst2.max_length, sst2.warmup_steps, sst2.eval_every,
            sst2.weight_decay) == (8e-4, 32, 24, 128, 1000, 3000, 0.01)
    assert sst2.adapter["tinit_ratio"] == round(6000 / (24 * 2105), 4)
    assert sst2.adapter["tfinal_ratio"] == round(22000 / (24 * 2105), 4)
    assert (sst2.adapter["init_r"], sst2.adapter["target_r"], sst2.adapter["delta_t"]) == (16, 8, 100)
    cola = ps.adalora_options("cola")  # lora_r 3, target_rank 1: three times the target
    assert (cola["init_r"], cola["alpha"], cola["orth_reg_weight"]) == (24, 32.0, 0.1)
    assert not any(r.init_from for r in runs if r.config.method == "adalora")  # its scripts start fresh


def test_multi_task_and_ablations_use_mores_released_settings():
    runs = runs_of("multi_task")
    for run in runs:
        c = run.config
        # NLPfreshman0/MoRE script/finetune_more.sh and finetune.py
        assert (c.lr, c.weight_decay, c.warmup_steps, c.max_length, c.sampling) == (3e-4, 0.01, 500, 128, "softmax")
        assert (c.adapter["alpha"], c.adapter["dropout"]) == (32.0, 0.1)
        assert c.tasks == list(PAPER.multi_tasks) and "stsb" not in c.tasks  # Table 1 (bottom) has no STS-B
    router = next(r for r in runs if r.method_id == pr.PAPER_ROUTER_ID).config
    assert {k: router.adapter[k] for k in MORE_OPTIONS} == MORE_OPTIONS and router.adapter["r"] == 16
    for ablation in runs_of("ablations"):  # one change against the multi-task router
        differ = {k for k in set(router.adapter) | set(ablation.config.adapter)
                  if router.adapter.get(k) != ablation.config.adapter.get(k)}
        differ |= set(router.same_run(ablation.config)) - {"adapter"}
        options, train = pr.ABLATIONS[ablation.method_id]
        assert differ == set(options) | set(train), ablation.method_id


def test_mor_recipes_are_causal_lm_runs_on_the_glue_completions():
    runs = runs_of("mor") + runs_of("mor_experts") + runs_of("mor_rank")
    mor = next(r for r in runs if r.method_id == "mor_e8_r32").config
    assert (mor.adapter["n_experts"], mor.adapter["r"]) == (8, 32)
    assert mor.adapter["target_modules"] == ["gate_proj", "up_proj", "down_proj"] and mor.backbone == "llama-7b"
    assert mor.objective == "causal-lm" and mor.tasks == [f"{t}_lm" for t in PAPER.multi_tasks]
    assert sorted(r.config.adapter["n_experts"] for r in runs if r.recipe == "mor_experts") == [1, 2, 4, 16]
    assert sorted(r.config.adapter["r"] for r in runs if r.recipe == "mor_rank") == [8, 16, 64]
    assert not any(blocked_reasons(r) for r in runs)
    runnable, blocked = runnable_recipes(PAPER)
    assert not blocked and {"mor", "mor_experts", "mor_rank", "table2"} <= set(runnable)
    # a run needing what this ranklab lacks is refused before anything is trained
    lacking = RunSpec("mor", "x", "x", mor, requires=("a time machine",))
    assert blocked_reasons(lacking) == ["a time machine"]
    with pytest.raises(ValueError, match="need what this ranklab lacks, e.g. mor/.*leave their recipe out"):
        run_all([lacking], "/nonexistent-results", PAPER)


def test_sources_are_trained_before_the_runs_that_start_from_them():
    runs = recipe_runs(None, PAPER)
    waves = run_waves(runs)
    position = {run.run_id: i for i, wave in enumerate(waves) for run in wave}
    starts = [r for r in runs if r.init_from]
    assert len(starts) == len(PAPER.seeds) * (2 * 3 + 2 * 2)  # Table 1: 2 x (MRPC, RTE, STS-B); Table 2: 2 x 2
    assert all(position[r.init_from] < position[r.run_id] for r in starts)
    orphan = RunSpec("x", "y", "y", runs[0].config, init_from="single_task/missing__mnli__s0")
    with pytest.raises(ValueError, match="neither planned nor finished: \\['single_task/missing__mnli__s0'\\]"):
        run_waves([orphan])
    assert run_waves([orphan], finished={"single_task/missing__mnli__s0"}) == [[orphan]]


def test_plan_prints_every_run_with_its_steps_and_gpu_hours(capsys):
    runs = recipe_runs(None, PAPER)
    assert len(runs) == 5 * 58  # every recipe at the 5 default seeds
    assert main(["reproduce", "--scale", "paper", "--plan"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == len(runs)
    mrpc = next(line for line in lines if "single_task | LoRA r=8 | mrpc | seed 3 |" in line)
    steps = 20 * math.ceil(ps.ranklab_train_size("mrpc") / 32)  # 20 epochs of 32 on ranklab's train split
    assert f"init-from single_task/lora_r8__mnli__s3 | {steps:,} steps" in mrpc
    assert "lr 0.0003 batch 32 20 ep len 512 wd 0.1 warmup 0.06" in mrpc and "alpha=16" in mrpc
    rows = plan_rows(runs)
    assert all(r["gpu_h"] > 0 and r["steps"] > 0 for r in rows)
    total = sum(r["gpu_h"] for r in rows)
    assert f"total | {len(runs)} | {sum(r['steps'] for r in rows):,.0f} | {total:,.1f}" in out
    assert "BLOCKED: needs" not in out and "4 P FLOPs per training token" in out
    mor = next(r for r in rows if r["recipe"] == "mor" and r["method_id"] == "mor_e8_r32")
    assert mor["tasks"].startswith("mnli_lm+") and mor["gpu_h"] > 1  # 7B parameters: a causal LM's real cost
    assert "single_task | 80 |" in plan_text(runs_of("single_task", PAPER.seeds), "paper")


def test_the_plan_of_a_searched_scale_lists_the_search_first_and_leaves_unknown_costs_open(capsys):
    from ranklab.experiments.protocol.recipes import tuning_runs

    assert main(["reproduce", "--scale", "embedded", "--plan"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    search, reported = tuning_runs(None, "embedded"), recipe_runs(None, "embedded")
    assert len(lines) == len(search) + len(reported) and "(lr search)" in lines[0]
    assert f"total | {len(lines)} |" in out and out.rstrip().splitlines()[-3].endswith("| ?")  # offline tasks: no estimate


def test_recipes_are_named_per_scale_and_a_hub_recipe_offline_is_one_clear_error(tmp_path, capsys, monkeypatch):
    assert main(["reproduce", "--scale", "embedded", "--recipes", "table2", "--plan"]) == 2
    assert ("unknown recipe(s) ['table2'] at the embedded scale; valid recipes: single_task, emd_sweep, multi_task"
            in capsys.readouterr().err)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # LLaMA-7B and GLUE come from the hub
    assert main(["reproduce", "--scale", "paper", "--recipes", "mor", "--results", str(tmp_path / "r")]) == 2
    assert "backbone 'llama-7b' needs the Hugging Face hub" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing trained or written


# --- every paper recipe in miniature -------------------------------------------------------------
@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """Every run of every paper recipe at the first seed, 3 steps each on tiny random models with GLUE
    fixture files, through the runner; ``loads``: (run folder, adapter folder loaded, whether that
    source run had finished when it was loaded) for every run that starts from another's adapter."""
    from ranklab.experiments.run.miniature import run_miniature
    from ranklab.train import runtime

    results = tmp_path_factory.mktemp("paper-miniature")
    loads = []
    original = runtime.AdapterRuntime.init_from

    def spy(self, path):
        loads.append((Path(self.config.output), Path(path), is_finished(Path(path).parent)))
        original(self, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime.AdapterRuntime, "init_from", spy)
        folders = run_miniature(None, "paper", results)
    return results, folders, loads


def test_every_paper_recipe_trains_in_miniature_in_order(miniature):
    results, folders, loads = miniature
    planned = recipe_runs(None, PAPER, (0,))
    assert [run_folder(results, r) for r in planned] == folders and len(folders) == 58
    for run, folder in zip(planned, folders):
        record = json.loads((folder / "record.json").read_text())
        assert is_finished(folder) and record["steps"] == 3, run.run_id
        assert record["backbone"] == ("tiny-llama" if run.config.backbone == "llama-7b" else "tiny-random")
        assert record["method"] == run.config.method and record["tasks"] == run.config.tasks
        assert record["config"]["init_from"] == (str(results / run.init_from / "adapter") if run.init_from else None)
    expected = {(results / r.run_id, results / r.init_from / "adapter") for r in planned if r.init_from}
    assert {(out, path) for out, path, _ in loads} == expected and len(expected) == 10
    assert all(done for _, _, done in loads)  # every source had finished before its adapter was loaded
    mor_run = next(r for r in planned if r.recipe == "mor" and r.method_id == "mor_e8_r32")
    mor = json.loads((run_folder(results, mor_run) / "record.json").read_text())
    assert mor["adapter_config"]["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    assert mor["config"]["objective"] == "causal-lm" and mor["tasks"][0] == "mnli_lm"  # next-token loss on answers
    assert set(mor["test"]["mnli_lm"]) >= {"exact_match", "perplexity"}


def test_the_paper_scale_report_shows_medians_and_the_papers_claims(miniature):
    from ranklab.experiments.results.derived import derive
    from ranklab.experiments.results.summary import collect
    from ranklab.experiments.results.tables import results_markdown

    results, _, _ = miniature
    summary = collect("paper", results, seeds=(0,))
    derived = derive(summary, n_boot=50)
    table2 = derived["scores"]["table2"]
    assert {"dylora_r8", "adalora_r8", "emd_a4_b12"} <= set(table2)
    cell = table2["dylora_r8"]["scores"]["avg"]
    assert cell["median"] == cell["min"] == cell["max"] == pytest.approx(cell["per_seed"][0])  # one seed
    judged = {c["key"]: c for c in derived["claims"]}
    assert judged["adalora_vs_dylora"]["recipe"] == "table2" and judged["adalora_vs_dylora"]["a"] == "dylora_r8"
    assert judged["mor_llm_vs_moelora"]["recipe"] == "mor"
    markdown = results_markdown(summary, derived)
    assert "## table2: median [min, max] over seeds, test x 100" in markdown
    assert "## mor_rank: median [min, max] over seeds" in markdown and "| Table 2 | AdaLoRA 12->8 | 86.11 |" in markdown


def test_the_docs_page_shows_exactly_the_settings_the_recipes_run():
    from ranklab.experiments.results.paper_docs import settings_markdown

    page = (Path(__file__).resolve().parents[1] / "docs" / "paper_scale.md").read_text()
    assert settings_markdown() in page  # regenerate the block with ranklab.experiments.results.paper_docs if this fails
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "docs/paper_scale.md" in readme
