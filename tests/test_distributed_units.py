"""How a global batch is shared between processes and micro-batches (ranklab.distributed), and
gradient accumulation and bf16 on one CPU process."""
import pytest

from ranklab.distributed import micro_batches, padded_share, share

from .distributed_jobs import run_job


@pytest.mark.parametrize("n, world", [(16, 2), (15, 2), (5, 4), (1, 2), (7, 3)])
def test_shares_cover_every_item_once_in_order(n, world):
    items = list(range(100, 100 + n))
    shares = [share(items, k, world) for k in range(world)]
    assert sum(shares, []) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("n, world", [(10, 4), (5, 4), (8, 2), (1, 3)])
def test_padded_eval_shares_gather_back_to_the_rows_once(n, world):
    shares = [padded_share(n, k, world) for k in range(world)]
    assert len({len(s) for s in shares}) == 1  # equal sizes: gather can concatenate them
    assert sum(shares, [])[:n] == list(range(n))  # the first n gathered rows are the rows, in order


def test_micro_batch_weights_make_the_global_mean():
    indices = list(range(10))
    for world in (1, 2, 3):
        for steps in (1, 2, 4):
            total = 0.0
            for k in range(world):
                for rows, weight in micro_batches(share(indices, k, world), len(indices), world, steps):
                    assert weight == pytest.approx(len(rows) * world / len(indices))
                    total += weight / world  # DDP averages over processes
            assert total == pytest.approx(1.0)
    assert micro_batches([], 4, 2, 2) == [([], 0.0)]  # an empty share still runs one (zero-weight) pass
    sizes = [5, 1, 2, 7, 3, 1, 4, 2, 6, 1]  # target tokens per row (a causal LM's completions)
    for world in (1, 2, 3):
        for steps in (1, 2, 4):
            total = 0.0
            for k in range(world):
                for rows, weight in micro_batches(share(indices, k, world), sum(sizes), world, steps, sizes=sizes):
                    assert weight == pytest.approx(sum(sizes[i] for i in rows) * world / sum(sizes))
                    total += weight / world
            assert total == pytest.approx(1.0)  # with per-token mean losses: the global per-token mean
    assert micro_batches(list(range(6)), 6, 1, 1) == [(list(range(6)), 1.0)]  # exactly 1: plain mean loss


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    job = dict(method="lora", adapter={"r": 4}, max_steps=6, eval_every=3)
    whole = run_job({**job, "out": str(tmp_path / "whole")})["record"]
    accumulated = run_job({**job, "accum": 4, "out": str(tmp_path / "accum")})["record"]
    assert [e["step"] for e in accumulated["evals"]] == [e["step"] for e in whole["evals"]]
    for a, b in zip(accumulated["evals"], whole["evals"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_bf16_mixed_precision_trains_on_the_cpu(tmp_path):
    record = run_job({"method": "lora", "adapter": {"r": 4}, "max_steps": 4, "mixed_precision": "bf16",
                      "out": str(tmp_path / "bf16")})["record"]
    assert record["status"] == "completed" and all(e["train_loss"] == e["train_loss"] for e in record["evals"])
