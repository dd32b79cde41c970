"""The causal-LM objective: completion tokenisation, loss, scoring and per-token normalisation."""
import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from ranklab.backbones import minilm_tokenizer
from ranklab.data import get_task, make_collator, tokenize_task
from ranklab.data.completion import IGNORE_INDEX, CompletionCollator, tokenize_completions
from ranklab.distributed import micro_batches
from ranklab.train.causal_lm import completion_loss, completion_metrics, completion_predictions, row_scores

from .conftest import build_tiny_decoder, build_tiny_gpt2


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def movie_rows(texts, labels):
    return DatasetDict(train=Dataset.from_dict({"text": texts, "label": labels}))


def test_completion_rows_mask_the_prompt_and_end_with_eos(tokenizer):
    data = movie_rows(["a truly wonderful film", "dull"], [1, 0])
    rows = tokenize_task(data, tokenizer, "movie_lm", max_length=32)["train"]
    first = rows[0]
    word = tokenizer(" positive", add_special_tokens=False)["input_ids"]
    completion = word + [tokenizer.sep_token_id]
    assert first["input_ids"][0] == tokenizer.cls_token_id  # BOS
    assert first["input_ids"][-len(completion):] == completion
    assert first["labels"] == [IGNORE_INDEX] * (len(first["input_ids"]) - len(completion)) + completion
    prompt = tokenizer.decode(first["input_ids"][1:-len(completion)])
    assert prompt == "review : a truly wonderful film sentiment :"
    assert rows[1]["labels"][-2:] == tokenizer(" negative", add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert rows[0]["label"] == 1 and set(rows.column_names) == {"input_ids", "attention_mask", "labels", "label"}


def test_long_texts_are_cut_never_the_frame_or_the_completion(tokenizer):
    data = movie_rows([" ".join(["word"] * 100)], [1])
    row = tokenize_task(data, tokenizer, "movie_lm", max_length=16)["train"][0]
    assert len(row["input_ids"]) == 16
    kept = tokenizer.decode(row["input_ids"])
    assert kept.startswith("[CLS] review : word") and kept.endswith("word sentiment : positive [SEP]")
    assert row["labels"][-2:] == row["input_ids"][-2:] and row["labels"][-3] == IGNORE_INDEX
    assert len(tokenize_completions(data, tokenizer, "movie_lm", max_length=8)["train"][0]["input_ids"]) == 8
    with pytest.raises(ValueError, match=r"max_length=7 leaves no room for the text of task 'movie_lm' \(prompt and "
                                         r"completion take 7 tokens\)"):
        tokenize_completions(data, tokenizer, "movie_lm", max_length=7)


def test_collator_pads_right_with_pad_zero_and_ignore(tokenizer):
    collate = make_collator(tokenizer, objective="causal-lm")
    assert isinstance(collate, CompletionCollator)
    batch = collate([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7], "label": 1},
                     {"input_ids": [5], "attention_mask": [1], "labels": [-100], "label": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, tokenizer.pad_token_id, tokenizer.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch["label"].tolist() == [1, 0]


def padded_batch(seed=0, vocab=100):
    """Three rows of different prompt and completion lengths, right-padded."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 9), generator=generator)
    labels = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.ones_like(ids)
    for row, (prompt, end) in enumerate([(4, 9), (6, 7), (3, 5)]):  # completion = ids[prompt:end]
        labels[row, prompt:end] = ids[row, prompt:end]
        mask[row, end:] = 0
        ids[row, end:] = 0
    return ids, mask, labels


@pytest.mark.parametrize("build", [build_tiny_gpt2, build_tiny_decoder], ids=["gpt2", "llama"])
def test_completion_loss_is_transformers_own_causal_lm_loss(build):
    model = build()
    ids, mask, labels = padded_batch()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(completion_loss(out.logits, labels), out.loss, rtol=1e-6, atol=1e-6)


def test_row_scores_by_hand():
    logits = torch.full((2, 4, 5), -5.0)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 1], [IGNORE_INDEX, 2, 4, IGNORE_INDEX]])
    logits[0, 1, 3] = logits[0, 2, 1] = 5.0  # row 0: both completion tokens right
    logits[1, 0, 2] = logits[1, 1, 0] = 5.0  # row 1: first right, second wrong
    scores = row_scores(logits, labels).numpy()
    assert scores[:, 1:].tolist() == [[2, 2, 1], [2, 1, 0]]
    nll = torch.nn.functional.cross_entropy(logits[1, :2], torch.tensor([2, 4]), reduction="sum")
    assert scores[1, 0] == pytest.approx(float(nll))
    metrics = completion_metrics(scores)
    assert metrics["exact_match"] == 0.5 and metrics["token_accuracy"] == 0.75
    assert metrics["loss"] == pytest.approx(scores[:, 0].sum() / 4) and metrics["perplexity"] == pytest.approx(
        np.exp(metrics["loss"]))
    assert completion_predictions(scores, np.array([1, 0])).tolist() == [1, -1]


def test_exact_match_is_greedy_generation():
    """A completion is exact under teacher forcing exactly when greedy decoding writes it."""
    model = build_tiny_decoder(seed=3)
    prompts = torch.randint(3, 100, (4, 5), generator=torch.Generator().manual_seed(0))
    greedy = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=3, do_sample=False,
                            pad_token_id=0)
    wrong = greedy.clone()
    wrong[2:, -1] = (wrong[2:, -1] + 1) % 100  # rows 2 and 3: last completion token is not the greedy one
    sequences = torch.cat([greedy[:2], wrong[2:]])
    labels = sequences.clone()
    labels[:, :5] = IGNORE_INDEX
    with torch.no_grad():
        scores = row_scores(model(input_ids=sequences).logits, labels)
    assert scores[:, 3].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert scores[:, 2].tolist() == [3.0, 3.0, 2.0, 2.0]


def test_micro_batches_weighted_by_tokens_give_the_whole_batch_gradient():
    """Accumulating per-token means weighted by their token share = one pass over the whole batch;
    weighting by rows (the classification rule) would not be."""
    model = build_tiny_gpt2()
    ids, mask, labels = padded_batch(seed=1)
    params = [p for p in model.parameters() if p.ndim == 2][:4]

    def grads(rows):
        model.zero_grad()
        loss = completion_loss(model(input_ids=ids[rows], attention_mask=mask[rows]).logits, labels[rows])
        return loss, torch.autograd.grad(loss, params)

    _, whole = grads([0, 1, 2])
    sizes = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).tolist()  # 5, 1, 2 target tokens
    for weighted_by_tokens in (True, False):
        chunks = micro_batches([0, 1, 2], sum(sizes) if weighted_by_tokens else 3, 1, 3,
                               sizes=sizes if weighted_by_tokens else None)
        summed = [torch.zeros_like(p) for p in params]
        for rows, weight in chunks:
            for total, g in zip(summed, grads(rows)[1]):
                total += weight * g
        close = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(summed, whole))
        assert close == weighted_by_tokens


def test_causal_lm_task_registry():
    from ranklab.data import available_tasks

    assert available_tasks(objective="causal-lm") == ["movie_lm", "trec_lm", "cola_lm", "sst2_lm", "mrpc_lm", "qqp_lm",
                                                      "mnli_lm", "qnli_lm", "rte_lm"]
    assert available_tasks("glue", objective="causal-lm") == ["cola_lm", "sst2_lm", "mrpc_lm", "qqp_lm", "mnli_lm",
                                                              "qnli_lm", "rte_lm"]
    assert "movie_lm" not in available_tasks("offline")  # classification lists are unchanged
    spec = get_task("trec_lm")
    assert spec.is_causal_lm and not spec.is_regression and spec.main_metric == "exact_match"
    assert spec.base_task == "trec" and len(spec.label_names) == get_task("trec").num_labels



def test_glue_pairs_become_completions_with_both_texts_and_cut_longest_first(tmp_path):
    """A GLUE pair task as text completion: both texts in the prompt, the answer word as the
    completion, the same rows and labels as the classification task; an over-long pair loses
    tokens from its longer text, never the prompt's frame or the answer."""
    from ranklab.backbones import minilm_tokenizer
    from ranklab.data import load_task, write_glue_fixture
    from ranklab.data.completion import IGNORE_INDEX, tokenize_completions

    fixture = write_glue_fixture(tmp_path / "glue", names=["mnli"], rows=12, seed=0)
    base = load_task("mnli", data_dir=fixture)
    data = load_task("mnli_lm", data_dir=fixture)
    row, base_row = data["train"][0], base["train"][0]
    assert row["prompt"] == f"Premise: {base_row['premise']}\nHypothesis: {base_row['hypothesis']}\nEntailed:"
    assert row["completion"] == " " + ("yes", "maybe", "no")[base_row["label"]]
    assert data["train"]["label"] == base["train"]["label"]
    tokenizer = minilm_tokenizer()
    long = data["train"].select([0]).map(lambda r: {"premise": "word " * 200, "hypothesis": "short one"})
    from datasets import DatasetDict

    tokens = tokenize_completions(DatasetDict({"train": long}), tokenizer, "mnli_lm", max_length=48)["train"][0]
    text = tokenizer.decode(tokens["input_ids"])
    assert len(tokens["input_ids"]) == 48 and "hypothesis : short one" in text and "entailed :" in text
    answer = [t for t, y in zip(tokens["input_ids"], tokens["labels"]) if y != IGNORE_INDEX]
    assert tokenizer.decode(answer[:-1]).strip() == ("yes", "maybe", "no")[long[0]["label"]]
    assert answer[-1] == tokenizer.sep_token_id
    with pytest.raises(ValueError, match="holds \\{text2\\} exactly when the task has two text fields"):
        from ranklab.data.tasks import TaskSpec

        TaskSpec("x_lm", "glue", ("a", "b"), 2, ("exact_match",), ("no", "yes"), objective="causal-lm",
                 base_task="mrpc", prompt="A: {text}\nSame:")
