"""Pilot for issue 25 (seeds 100-102, never reported): steps to a validation plateau and the
per-seed spread of EMD - LoRA, at lr 1e-3, full validation splits, plateau rule patience 5 x 100
steps with min_delta 0.01, cap 3000 steps.  One thread."""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from ranklab.hardware import native_bf16
from ranklab.train import TrainConfig, train

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/pilot")
METHODS = {"lora": {"r": 8}, "emd": {"a": 4, "b": 12}}
for seed in (100, 101, 102):
    for task in ("movie", "trec"):
        for method, options in METHODS.items():
            folder = OUT / f"{method}__{task}__s{seed}"
            if (folder / "record.json").is_file() and json.loads((folder / "record.json").read_text())["status"] == "completed":
                continue
            config = TrainConfig(method=method, adapter={"alpha": 16.0, **options}, tasks=[task], backbone="minilm-l6",
                                 seed=seed, batch_size=16, max_length=32, max_eval=None, eval_every=100, warmup_steps=100,
                                 group_by_length=True, eval_batch_size=128, lr=1e-3, max_steps=3000, patience=5,
                                 min_delta=0.01, mixed_precision="bf16" if native_bf16() else "no",
                                 attn_implementation="eager", quiet=True, output=str(folder), overwrite=True)
            start = time.time()
            result = train(config)
            r = result.record
            print(json.dumps({"run": folder.name, "steps": r["steps"], "best_step": r["best"]["step"],
                              "best": r["best"]["score"], "test": r["test"], "wall": round(time.time() - start, 1)}), flush=True)
