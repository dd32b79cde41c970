"""GLUE through datasets.load_dataset on local fixture files in the hub layout; hub-unreachable errors."""
import pytest

from ranklab.data import HubUnreachableError, load_task, write_glue_fixture
from ranklab.data import glue as glue_module


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glue")
    write_glue_fixture(folder, names=["sst2", "stsb", "mnli", "mrpc"], rows=20, seed=0)
    return folder


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf"))


def test_fixture_loads_through_load_dataset_with_split_convention(fixture_dir, hf_cache):
    data = load_task("sst2", data_dir=fixture_dir, cache_dir=hf_cache)
    assert list(data) == ["train", "validation", "test"]
    assert len(data["train"]) == 18 and len(data["validation"]) == 2  # 10% of GLUE train held out
    assert len(data["test"]) == 10  # GLUE validation becomes our test split
    assert data["train"].column_names == ["sentence", "label"]  # idx dropped
    assert data["train"].features["label"].names == ["negative", "positive"]
    held_out = set(data["validation"]["sentence"])
    again = load_task("sst2", data_dir=fixture_dir, cache_dir=hf_cache)
    assert set(again["validation"]["sentence"]) == held_out  # fixed seed, independent of the run seed


def test_mnli_uses_matched_validation_and_pairs(fixture_dir, hf_cache):
    data = load_task("mnli", data_dir=fixture_dir, cache_dir=hf_cache)
    assert data["test"].column_names == ["premise", "hypothesis", "label"]
    assert set(data["test"]["label"]) <= {0, 1, 2} and -1 not in data["test"]["label"]


def test_stsb_labels_are_floats(fixture_dir, hf_cache):
    data = load_task("stsb", data_dir=fixture_dir, cache_dir=hf_cache)
    assert data["train"].features["label"].dtype == "float32"
    assert all(0.0 <= v <= 5.0 for v in data["test"]["label"])


def test_max_examples_is_a_seeded_subsample(fixture_dir, hf_cache):
    a = load_task("mrpc", data_dir=fixture_dir, cache_dir=hf_cache, max_examples=5, seed=1)
    b = load_task("mrpc", data_dir=fixture_dir, cache_dir=hf_cache, max_examples=5, seed=1)
    c = load_task("mrpc", data_dir=fixture_dir, cache_dir=hf_cache, max_examples=5, seed=2)
    assert [len(a[s]) for s in a] == [5, 2, 5]
    assert a["train"]["sentence1"] == b["train"]["sentence1"] != c["train"]["sentence1"]


def test_missing_task_in_fixture_is_an_error(fixture_dir, hf_cache):
    with pytest.raises(ValueError):
        load_task("cola", data_dir=fixture_dir, cache_dir=hf_cache)


def test_offline_mode_gives_a_clear_hub_error(monkeypatch, hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="offline tasks .*minilm-l6"):
        load_task("rte", cache_dir=hf_cache)


def test_unreachable_hub_fails_fast_without_network(monkeypatch, hf_cache):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(glue_module, "hub_reachable", lambda: False)
    monkeypatch.setattr(glue_module, "load_dataset", lambda *a, **k: pytest.fail("must not call the hub"))
    with pytest.raises(HubUnreachableError, match="cannot be reached"):
        load_task("cola", cache_dir=hf_cache)


def test_a_rewritten_or_renamed_local_folder_is_never_read_stale(tmp_path, hf_cache):
    first = write_glue_fixture(tmp_path / "a" / "glue", ["sst2"], rows=20, seed=0)
    before = load_task("sst2", data_dir=first, cache_dir=hf_cache)["test"]["sentence"]
    write_glue_fixture(first, ["sst2"], rows=20, seed=1)  # the same folder, rewritten
    rewritten = load_task("sst2", data_dir=first, cache_dir=hf_cache)["test"]["sentence"]
    assert rewritten != before
    other = write_glue_fixture(tmp_path / "b" / "glue", ["sst2"], rows=24, seed=2)  # another folder named glue
    assert len(load_task("sst2", data_dir=other, cache_dir=hf_cache)["test"]) != len(rewritten)
    assert load_task("sst2", data_dir=first, cache_dir=hf_cache)["test"]["sentence"] == rewritten


def test_a_missing_data_dir_is_a_clear_error(tmp_path, hf_cache):
    with pytest.raises(ValueError, match="is not a folder"):
        load_task("sst2", data_dir=tmp_path / "nope", cache_dir=hf_cache)
