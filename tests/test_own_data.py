"""Your own data: files of every format, any number of classes, the splits and leak checks, a 3-class
experiment end to end (teacher, distilled student, baseline, evaluation, inference), and each bad-data
case through the command line (one line, exit status 2, nothing written)."""
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FILLER, NEG, POS, ROOT

import data_utils as du

NEUTRAL = ["but", "or", "this", "is", "an"]     # words of tiny:bert's vocabulary that no other class uses
WORDS = {"negative": NEG, "neutral": NEUTRAL, "positive": POS}


def tweets(n: int, seed: int, labels=("negative", "neutral", "positive")) -> list[dict]:
    """n short texts, classes in turn, each class carried by two of its words among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = labels[i % len(labels)]
        words = rng.choices(FILLER, k=rng.randint(2, 6)) + rng.choices(WORDS[y], k=2)
        rng.shuffle(words)
        rows.append({"tweet": " ".join(words) + f" #{seed}x{i}", "sentiment": y})   # the tag keeps texts distinct
    return rows


def write(folder, fmt: str, splits: dict) -> None:
    """splits {name: rows} as files <name>.<fmt> in folder."""
    import pandas as pd
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        df = pd.DataFrame(rows)
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "tsv":
            df.to_csv(path, index=False, sep="\t")
        elif fmt == "jsonl":
            df.to_json(path, orient="records", lines=True)
        else:
            df.to_parquet(path, index=False)


SPLITS = {"train": tweets(60, 1), "validation": tweets(15, 2), "test": tweets(15, 3)}


def spec(data, **kw):
    return du.DataSpec(data=str(data), text_column="tweet", label_column="sentiment", val_size=kw.pop("val_size", 15),
                       **kw)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_gives_the_same_splits(tmp_path, fmt):
    write(tmp_path / fmt, fmt, SPLITS)
    s = du.load_splits(spec(tmp_path / fmt))
    assert s.label_names == ("negative", "neutral", "positive")
    assert list(s.train["text"]) == [r["tweet"] for r in SPLITS["train"]]
    assert list(s.test["label"]) == [["negative", "neutral", "positive"].index(r["sentiment"]) for r in SPLITS["test"]]
    assert len(s.validation) == 15 and sorted(np.bincount(s.validation["label"])) == [5, 5, 5]


def test_one_file_gets_validation_and_test_carved_stratified(tmp_path):
    write(tmp_path, "csv", {"reviews": SPLITS["train"]})       # no split word: a file given by name is train
    s = du.load_splits(spec(tmp_path / "reviews.csv", val_size=9))
    assert (len(s.train), len(s.validation), len(s.test)) == (42, 9, 9)
    assert list(np.bincount(s.validation["label"])) == [3, 3, 3] and list(np.bincount(s.test["label"])) == [3, 3, 3]
    texts = [set(d["text"]) for d in (s.train, s.validation, s.test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    again = du.load_splits(spec(tmp_path / "reviews.csv", val_size=9, seed=7))
    assert list(again.test["text"]) != list(s.test["text"])          # the seed picks them
    # 60 rows cannot give 30 to test and 30 to validation: one line says how many can
    with pytest.raises(du.UsageError, match=r"has 60 train rows and no test or validation file: --val_size=30 .* "
                                         r"set --val_size to at most 28 \(or add a test file\)"):
        du.load_splits(spec(tmp_path / "reviews.csv", val_size=30))
    assert len(du.load_splits(spec(tmp_path / "reviews.csv", val_size=28)).train) == 4     # a row per class, and one


def test_a_split_file_beside_the_one_named_is_pointed_out(tmp_path, caplog):
    # --data=reviews-train.jsonl with reviews-test.jsonl beside it: the test split is carved from train, silently
    write(tmp_path, "jsonl", {"reviews-train": SPLITS["train"], "reviews-test": SPLITS["test"], "notes": SPLITS["test"]})
    with caplog.at_level("WARNING", logger="kd"):
        s = du.load_splits(spec(tmp_path / "reviews-train.jsonl", val_size=9))
    assert len(s.train) + len(s.validation) + len(s.test) == 60            # one file read, as asked
    assert [r.getMessage() for r in caplog.records] == [
        f"--data={tmp_path / 'reviews-train.jsonl'}: this one file is read, its validation and test splits carved from "
        f"it; reviews-test.jsonl beside it is not read: --data={tmp_path} reads each file named after a split as that split"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):
        s = du.load_splits(spec(tmp_path, val_size=9))                   # the folder: each file its split
    assert len(s.test) == 15 and [r.getMessage().split("name: ")[-1] for r in caplog.records] == [
        "notes.jsonl; name a file after its split (train, validation, test or unlabeled: test.csv, my_test.csv) to read it"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_integers_written_as_text_are_integer_labels_in_every_format(tmp_path, fmt):
    # JSON Lines / parquet "1", "2", "10" were strings ("10" sorted before "2", label_names refused); a CSV's, integers
    rows = [{"tweet": r["tweet"], "sentiment": {"negative": "1", "neutral": "2", "positive": "10"}[r["sentiment"]]}
            for r in SPLITS["train"]]
    write(tmp_path, fmt, {"train": rows, "test": rows[:9]})
    s = du.load_splits(spec(tmp_path, val_size=9))
    assert s.label_names == ("1", "2", "10")
    named = du.load_splits(spec(tmp_path, val_size=9, label_names=("neg", "neu", "pos")))
    assert [named.label_names[y] for y in named.test["label"]] == [r["sentiment"][:3] for r in SPLITS["train"][:9]]


def test_integer_labels_take_names_in_sorted_order(tmp_path):
    rows = [{"tweet": r["tweet"], "sentiment": {"negative": 4, "neutral": 7, "positive": 9}[r["sentiment"]]}
            for r in SPLITS["train"]]
    write(tmp_path, "jsonl", {"train": rows, "test": rows[:9]})
    s = du.load_splits(spec(tmp_path, val_size=9, label_names=("neg", "neu", "pos")))
    assert s.label_names == ("neg", "neu", "pos")
    first = rows[0]["tweet"]
    i = list(s.test["text"]).index(first)
    assert s.test["label"][i] == 0                                    # 4 -> id 0 -> "neg"
    assert du.load_splits(spec(tmp_path, val_size=9)).label_names == ("4", "7", "9")
    # a name too few: said as such; a value on a row or two beside the common ones is named, with its row (a slip?)
    with pytest.raises(du.UsageError, match=r"^label_names = \['neg', 'neu'\]: 2 names for the 3 label values 4, 7, 9 of "
                                         r"\S+train.jsonl; give one name per value, in sorted order$"):
        du.load_splits(spec(tmp_path, val_size=9, label_names=("neg", "neu")))
    with pytest.raises(du.UsageError, match=r"^label_names = \['neg', 'neg', 'pos'\]: 'neg' is given twice; give each "
                                         r"label value its own name$"):
        du.load_splits(spec(tmp_path, val_size=9, label_names=("neg", "neg", "pos")))
    slip = rows[:20] + [rows[20] | {"sentiment": 8}] + rows[21:]
    write(tmp_path / "slip", "jsonl", {"train": slip, "test": rows[:9]})
    with pytest.raises(du.UsageError, match=r"^label_names = \['neg', 'neu', 'pos'\]: 3 names for the 4 label values 4, 7, 8, 9 "
                                         r"of \S+train.jsonl; 8 is on 1 train row only \(data row 21\): fix such rows if "
                                         r"they are slips, else give one name per value, in sorted order$"):
        du.load_splits(spec(tmp_path / "slip", val_size=9, label_names=("neg", "neu", "pos")))


@pytest.mark.parametrize("files", ["one file", "train and validation files"])
def test_label_names_reorder_the_ids_not_the_splits(tmp_path, files):
    """--label_names in another order gives other ids, but the same rows in each carved split (results stay comparable):
    validation and test carved from one file; a validation file's subset kept, test carved from train."""
    data = {"reviews": SPLITS["train"] + tweets(30, 4)} if files == "one file" else \
        {"train": SPLITS["train"] + tweets(30, 4), "validation": tweets(45, 5)}
    write(tmp_path, "csv", data)
    where = tmp_path / "reviews.csv" if files == "one file" else tmp_path
    plain = du.load_splits(spec(where, val_size=9, train_size=30))
    order = ("positive", "negative", "neutral")
    mine = du.load_splits(spec(where, val_size=9, train_size=30, label_names=order))
    assert plain.label_names == ("negative", "neutral", "positive") and mine.label_names == order
    for split in ("train", "validation", "test"):
        a, b = getattr(plain, split), getattr(mine, split)
        assert list(a["text"]) == list(b["text"])
        assert [order[y] for y in b["label"]] == [plain.label_names[y] for y in a["label"]]
    # each row says where it is in the files (what evaluation's predictions/texts.csv gives): split and position
    read = {"train": data.get("train", data.get("reviews")), "validation": data.get("validation")}
    for split in ("train", "validation", "test"):
        d = getattr(mine, split)
        assert [(read[s][r]["tweet"], read[s][r]["sentiment"]) for s, r in zip(d["source"], d["row"])] == \
            [(t, order[y]) for t, y in zip(d["text"], d["label"])]
    assert set(mine.test["source"]) == {"train"} and len(set(mine.test["row"])) == 9
    assert set(mine.validation["source"]) == {"train" if files == "one file" else "validation"}


def test_a_text_labelled_two_ways_in_train_is_named(tmp_path, caplog):
    assert du.conflicting_labels(["a", "b", "a", "c", "b", "a"], [0, 1, 2, 1, 1, 0]) == {"a": [0, 2]}
    first = SPLITS["train"][0]
    other = next(lab for lab in ("negative", "neutral", "positive") if lab != first["sentiment"])
    long = {"tweet": "x" * 70, "sentiment": "neutral"}
    train = SPLITS["train"] + [first | {"sentiment": other}, SPLITS["train"][1], long, long | {"sentiment": "positive"}]
    write(tmp_path, "csv", {"train": train, "validation": SPLITS["validation"], "test": SPLITS["test"]})
    splits = du.load_splits(spec(tmp_path, val_size=16))
    with caplog.at_level("WARNING", logger="kd"):
        du.log_splits(splits, spec(tmp_path, val_size=16))
    both = " and ".join(sorted([first["sentiment"], other]))
    assert caplog.text.count("WARNING") == 1 and (
        f"2 train texts appear with different labels ({first['tweet'][:60]!r}" in caplog.text)
    assert f"as {both}; '{'x' * 60}'... as neutral and positive): fix those rows if they are slips" in caplog.text
    assert len(splits.train) == len(train)          # kept: a duplicate with one label (train[1]) is not named


def test_leaks_are_counted_and_dropped(tmp_path, caplog):
    train = SPLITS["train"] + [SPLITS["test"][0], SPLITS["validation"][0], SPLITS["train"][0]]
    validation = SPLITS["validation"] + [SPLITS["test"][1]]          # would choose checkpoints by a test text
    write(tmp_path, "csv", {"train": train, "validation": validation, "test": SPLITS["test"]})
    kept = du.load_splits(spec(tmp_path, drop_leaks=False, val_size=16))
    r = kept.report
    assert (r["train_duplicate_rows"], r["train_rows_in_validation"], r["train_rows_in_test"]) == (1, 1, 1)
    assert r["validation_texts_in_test"] == 1
    assert len(kept.train) == 63 and len(kept.validation) == len(validation)
    dropped = du.load_splits(spec(tmp_path, val_size=16))
    assert len(dropped.train) == 61 and not set(dropped.train["text"]) & set(dropped.test["text"])
    assert list(dropped.validation["text"]) == [r["tweet"] for r in SPLITS["validation"]]
    # the sizes logged say why they are smaller than asked for; with nothing dropped they say nothing of it
    with caplog.at_level("INFO", logger="kd"):
        du.log_splits(dropped, spec(tmp_path, val_size=16))
        du.log_splits(kept, spec(tmp_path, drop_leaks=False, val_size=16))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("data ", "duplicates"))]
    assert said[0].startswith("data ") and said[0].endswith(
        ": train 61, validation 15, test 15 (after dropping the texts also in a later split: duplicates below; "
        "--drop_leaks=false keeps them); labels negative, neutral, positive")
    assert said[2].endswith(": train 63, validation 16, test 15; labels negative, neutral, positive")


def test_a_label_that_looks_mistyped_is_warned_of(tmp_path, caplog):
    # "grate" on 1 row beside 40 "great": a class of its own, as written, but most likely a typo: said once loaded
    assert du.alike_labels({"bad": 40, "ok": 40, "great": 40, "grate": 2}) == [("grate", "great")]
    assert du.alike_labels({"bad": 40, "ok": 40, "great": 40, "grate": 3}) == []          # not that lopsided
    assert du.alike_labels({"LABEL_0": 40, "LABEL_1": 1}) == [("LABEL_1", "LABEL_0")]
    assert du.alike_labels({"negative": 40, "neutral": 40, "positive": 1}) == []          # names not alike
    names = {"negative": "bad", "neutral": "ok", "positive": "great"}
    rows = [r | {"sentiment": names[r["sentiment"]]} for r in tweets(270, 1)]
    for i in (2, 5, 8):
        rows[i]["sentiment"] = "grate"
    write(tmp_path, "csv", {"train": rows, "test": [r | {"sentiment": names[r["sentiment"]]} for r in tweets(15, 3)]})
    s = du.load_splits(spec(tmp_path, val_size=10))
    with caplog.at_level("INFO", logger="kd"):
        du.log_splits(s, spec(tmp_path, val_size=10))
    assert "label 'grate' (3 train rows) looks like 'great' (84) mistyped" in caplog.text and \
        ") mistyped: a class of its own here; fix those rows if it is a typo" in caplog.text


def test_transfer_texts_from_the_rest_of_validation_skip_held_out_texts(tmp_path):
    val = tweets(30, 2)
    test = SPLITS["test"] + val[20:]                                  # ten validation texts are also test texts
    write(tmp_path, "parquet", {"train": SPLITS["train"], "validation": val, "test": test})
    s = du.load_splits(spec(tmp_path, val_size=12, transfer_data="validation"), transfer=True)
    kept, in_test = set(s.validation["text"]), {r["tweet"] for r in val[20:]}
    dropped = s.report["validation_texts_in_test"]                   # chosen for validation, but test texts
    leaked = s.report["transfer_texts_in_validation_or_test"]        # in the rest of validation, and in test
    assert dropped and leaked and dropped + leaked == 10             # (with this seed, some of each)
    assert len(kept) == 12 - dropped and not kept & in_test
    assert not (kept | in_test) & set(s.transfer) and len(s.transfer) == 30 - 12 - leaked


def test_literal_unicode_escapes_are_decoded():
    assert du.decode_escapes(r"I\u2019m here\u002c ok") == "I’m here, ok"
    assert du.decode_escapes("no escapes") == "no escapes"
    # an emoji is two escapes (a UTF-16 surrogate pair); a lone half names no character and stays as written
    assert du.decode_escapes(r"so funny \ud83d\ude02\uD83D\uDE02 lol") == "so funny \U0001F602\U0001F602 lol"
    assert du.decode_escapes(r"cut \ud83d here, \ude02 there") == r"cut \ud83d here, \ude02 there"
    assert du.decode_escapes(r"\U00e9 is not an escape") == r"\U00e9 is not an escape"


def test_json_files_of_rows_are_read_and_one_of_columns_is_refused(tmp_path):
    """A JSON array of row objects reads a row per text (it crashed the column check); pandas' default to_json, a
    file of columns, is refused naming the fix; a row of JSON Lines is named without a header line, and across
    several files of one split as counted on through them."""
    import pandas as pd
    rows = tweets(60, 1)
    (tmp_path / "rows").mkdir()
    pd.DataFrame(rows).to_json(tmp_path / "rows" / "train.json", orient="records")       # one line: [{...}, ...]
    raw, _ = du.read_files(str(tmp_path / "rows"), "--data")
    assert list(raw["train"]["tweet"]) == [r["tweet"] for r in rows]
    for name, write_columns in (("cols", lambda df, f: df.to_json(f)),
                                ("lists", lambda df, f: f.write_text(json.dumps(df.to_dict("list"))))):
        (tmp_path / name).mkdir()
        write_columns(pd.DataFrame(rows), tmp_path / name / "train.json")
        with pytest.raises(du.UsageError, match=r"train.json: column 'tweet' holds objects or lists, not values: a JSON file "
                                                r"of columns \(pandas' to_json default\) rather than of rows; write one row per line"):
            du.read_files(str(tmp_path / name), "--data")
    (tmp_path / "two").mkdir()
    write(tmp_path / "two", "jsonl", {"train": rows, "train_extra": rows[:5] + [rows[5] | {"tweet": " "}]})
    with pytest.raises(du.UsageError, match=r"train_extra.jsonl: column 'tweet' has 1 empty or missing text\(s\) \(first at "
                                            r"data row 66, counted on through the files in the order named\);"):
        du.load_splits(spec(tmp_path / "two", val_size=9))


def test_csv_and_tsv_as_pandas_writes_them_and_what_it_reads_as_missing(tmp_path):
    """Quoted fields (pandas, csv.writer) read back as written; NA / None are missing to the reader (R writes
    missing values as NA): refused, naming it; a TSV field opening with an unmatched quote, which makes the
    reader join the lines after it, is refused instead of losing those rows."""
    import pandas as pd
    rows = tweets(60, 1)
    rows[3]["tweet"], rows[5]["tweet"] = 'He said "wow", loudly', '"Quoted" at the start'
    rows[9]["tweet"] = "Two paragraphs.\n\nThe second, \"quoted\"."                  # quoted line breaks
    rows[11]["tweet"] = "column A\tcolumn B"                                      # a quoted tab
    for sep, name in ((",", "ok.csv"), ("\t", "ok.tsv")):
        pd.DataFrame(rows).to_csv(tmp_path / name, index=False, sep=sep)
        raw, _ = du.read_files(str(tmp_path / name), "--data")
        assert list(raw["train"]["tweet"]) == [r["tweet"] for r in rows], name
    (tmp_path / "na").mkdir()
    pd.DataFrame([r | {"sentiment": "NA"} if i == 7 else r for i, r in enumerate(rows)]).to_csv(tmp_path / "na" / "train.csv", index=False)
    with pytest.raises(du.UsageError, match=r"train.csv: column 'sentiment' has 1 missing label\(s\) \(first at data row 8, "
                                            r"a header line not counted\) \(CSV/TSV readers take NA, null, None as missing too\)"):
        du.load_splits(spec(tmp_path / "na", val_size=9))
    lines = ["tweet\tsentiment"] + [f"{r['tweet']}\t{r['sentiment']}" for r in tweets(60, 1)]
    lines[7] = '"Best film ever, and\tpositive'
    (tmp_path / "eof.tsv").write_text("\n".join(lines) + "\n")                   # no quote after it
    with pytest.raises(du.UsageError, match=r"eof.tsv: cannot read it as TSV \(Error tokenizing data. C error: EOF inside "
                                            r"string starting at row 7\); check the file's format; a field that opens "
                                            r"with a \" is read to the next \" \(line breaks included\): close it, write it "
                                            r"twice \(\"\"\) inside a quoted field, or remove it$"):
        du.read_files(str(tmp_path / "eof.tsv"), "--data")
    lines[20] = 'a "fine" film\tpositive'                                          # a quote further on
    (tmp_path / "bad.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(du.UsageError, match=r"bad.tsv: column 'tweet' at data row 7, a header line not counted, spans tabs "
                                            r"and line breaks, "
                                            r"most likely from a field opening with an unmatched"):
        du.read_files(str(tmp_path / "bad.tsv"), "--data")
    texts = ["text"] + [r["tweet"] for r in tweets(20, 2)]                      # one column: transfer texts
    texts[4], texts[12] = '"An opening quote, unmatched', 'a "fine" film'
    (tmp_path / "unlabeled.tsv").write_text("\n".join(texts) + "\n")
    with pytest.raises(du.UsageError, match=r"unlabeled.tsv: column 'text' at data row 4, a header line not counted, spans "
                                            r"a tab or line break, most likely"):
        du.read_files(str(tmp_path / "unlabeled.tsv"), "--transfer_data")


def test_a_transfer_table_is_read_as_training_texts_are(tmp_path, imdb_parquet, caplog):
    # prepared as the data's own texts (du.prepared); read_table gives them as written (inference prepares per model)
    (tmp_path / "unlabeled.csv").write_text("id,text\n1,I\\u2019m in\n2,plain\n")
    own = du.DataSpec(data=str(tmp_path / "train.csv"), val_size=2, transfer_data=str(tmp_path / "unlabeled.csv"))
    assert du.transfer_texts(own, {}, [], {}) == ["I\u2019m in", "plain"]                 # your data: escapes decoded
    texts, parts = du.read_table(str(tmp_path / "unlabeled.csv"), "text", "--file")
    assert texts == ["I\\u2019m in", "plain"] and [d.column_names for d in parts] == [["id", "text"]]
    # IMDb: <br /> as spaces, as IMDb's own splits, so a test review in the file is found and dropped, not kept
    import pandas as pd
    review = pd.read_parquet(imdb_parquet / "test.parquet")["text"][0]
    assert "<br />" in review
    pd.DataFrame({"text": [review, "a film<br />unlike any other"]}).to_csv(tmp_path / "reviews.csv", index=False)
    s = du.load_splits(du.DataSpec(data_dir=str(imdb_parquet), val_size=8, transfer_data=str(tmp_path / "reviews.csv")), transfer=True)
    assert s.report["transfer_texts_in_validation_or_test"] == 1 and list(s.transfer) == ["a film unlike any other"]
    with caplog.at_level("INFO", logger="kd"):     # the one dropped is said where the sizes are
        du.log_splits(s, du.DataSpec(data_dir=str(imdb_parquet)))
    assert ", transfer 1 (after dropping the texts also in a later split: duplicates below; --drop_leaks=false keeps " \
           "them); labels negative, positive" in caplog.text


def test_transfer_texts_from_a_text_file_or_a_table_column_of_their_own(tmp_path, caplog, monkeypatch):
    # unlabeled texts as users have them: a .txt file, one per line, or a table whose text column is not named as the
    # labelled data's (here `tweet`): TRANSFER_TEXT_COLUMN names it, and an error names that setting, not --text_column
    write(tmp_path / "data", "csv", {"train": tweets(60, 1)})
    (tmp_path / "more.txt").write_bytes("\ufeffI\\u2019m in\n\n   \nplain one\r\nthird\n".encode())
    s = du.load_splits(spec(tmp_path / "data", transfer_data=str(tmp_path / "more.txt")), transfer=True)
    assert list(s.transfer) == ["I\u2019m in", "plain one", "third"]        # blank lines skipped; BOM off; escapes decoded
    (tmp_path / "more.csv").write_text("id,body\n1,first\n2,second\n")
    with pytest.raises(du.UsageError, match=r"more.csv: no column 'tweet' \(found id, body\); set --transfer_text_column to the "
                                            r"column that holds the texts$"):
        du.load_splits(spec(tmp_path / "data", transfer_data=str(tmp_path / "more.csv")), transfer=True)
    s = du.load_splits(spec(tmp_path / "data", transfer_data=str(tmp_path / "more.csv"), transfer_text_column="body"),
                       transfer=True)
    assert list(s.transfer) == ["first", "second"]
    # a header's trailing space does not show in the list: the message names the column it differs from
    (tmp_path / "spaced.csv").write_text("id,Tweet \n1,first\n")
    with pytest.raises(du.UsageError, match=r"spaced.csv: no column 'tweet' \(found id, Tweet \); set --transfer_text_column "
                                            r"to the column that holds the texts; 'Tweet ' differs from it only in case or "
                                            r"spaces: --transfer_text_column='Tweet '$"):
        du.load_splits(spec(tmp_path / "data", transfer_data=str(tmp_path / "spaced.csv")), transfer=True)
    (tmp_path / "typo.csv").write_text("id,tweets\n1,first\n")
    with pytest.raises(du.UsageError, match=r"; did you mean 'tweets'\? --transfer_text_column=tweets$"):
        du.load_splits(spec(tmp_path / "data", transfer_data=str(tmp_path / "typo.csv")), transfer=True)
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(du.UsageError, match=r"^--transfer_data=\S+blank.txt: no text in it; give a file of unlabeled texts"):
        du.transfer_file_texts(spec(tmp_path / "data", transfer_data=str(tmp_path / "blank.txt")))
    du.check_data(spec(tmp_path / "data", transfer_data=str(tmp_path / "more.txt")))       # there: no error
    unsup = tmp_path / "unsup"                   # aclImdb/train/unsup: a review per file; or files of lines
    (unsup / "b").mkdir(parents=True)
    for name in ("10_0", "2_0", "7_3", "1_9"):
        (unsup / f"{name}.txt").write_text(f"review {name}\n")
    (unsup / "b" / "0_0.txt").write_text("nested one\n\nnested two\n")
    (unsup / ".~2_0.txt").write_text("an editor's copy")
    (unsup / "README.md").write_text("where these came from")
    du.check_data(spec(tmp_path / "data", transfer_data=str(unsup)))
    texts = ["review 10_0", "review 1_9", "review 2_0", "review 7_3", "nested one", "nested two"]   # name order, not hidden
    with caplog.at_level("INFO", logger="kd"):
        assert du.transfer_file_texts(spec(tmp_path / "data", transfer_data=str(unsup))) == texts    # a check: quiet
        assert list(du.load_splits(spec(tmp_path / "data", transfer_data=str(unsup)), transfer=True).transfer) == texts
    assert caplog.text.count(f"--transfer_data={unsup}: 5 .txt files, 6 texts (each non-blank line one); files by "
                             f"folder: ./ 4, b/ 1") == 1
    (unsup / "train.csv").write_text("tweet\na table\n")                # a folder of tables: its .txt files are notes
    assert du.transfer_file_texts(spec(tmp_path / "data", transfer_data=str(unsup))) == ["a table"]
    with pytest.raises(du.UsageError, match=r"^--transfer_data=\S+gone.txt: no such file or folder; .*, or a .txt file"):
        du.check_data(spec(tmp_path / "data", transfer_data=str(tmp_path / "gone.txt")))
    with pytest.raises(du.UsageError, match=r"^--transfer_data=\S+gone.txt: no such file or folder; .*, or a .txt file"):
        du.transfer_file_texts(spec(tmp_path / "data", transfer_data=str(tmp_path / "gone.txt")))  # not "cannot read it"
    (tmp_path / "more.docx").write_text("x")
    with pytest.raises(du.UsageError, match=r"unknown file format '.docx'; use one of .csv, .tsv, .jsonl, .json, .parquet or "
                                            r"\.txt \(one text per line\)$"):
        du.check_data(spec(tmp_path / "data", transfer_data=str(tmp_path / "more.docx")))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "NOTES.md").write_text("no texts here")
    with pytest.raises(du.UsageError, match=r"^--transfer_data=\S+nothing: no .csv/.tsv/.jsonl/.json/.parquet file named "
                                            r"train, validation, test or unlabeled in this folder \(found 0 data files\); "
                                            r"name the files by split; or put .txt files of texts in it \(one per line\) "
                                            r"and no table$"):
        du.check_data(spec(tmp_path / "data", transfer_data=str(tmp_path / "nothing")))
    (tmp_path / "folder.txt").mkdir()                                   # a folder, whatever its name
    (tmp_path / "folder.txt" / "a.txt").write_text("in a folder\n")
    assert du.lines_files(str(tmp_path / "folder.txt")) == [tmp_path / "folder.txt" / "a.txt"]
    monkeypatch.setattr(du, "visible_files", lambda folder: pytest.fail(f"walked {folder}"))
    assert du.lines_files("") == [] and du.lines_files("validation") == []      # the data's own splits: no walk of "."


def test_a_folders_files_need_the_same_columns_and_extra_ones_are_named(tmp_path, caplog):
    import pandas as pd
    write(tmp_path, "csv", {"train": tweets(30, 1), "unlabeled": [{"tweet": r["tweet"]} for r in tweets(6, 4)]})
    pd.DataFrame({"id": range(6), "tweet": [r["tweet"] for r in tweets(6, 3)]}).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(du.UsageError, match=r"^--data: \S+/test.csv has the columns id, tweet, but \S+/train.csv has tweet, "
                                            r"sentiment; give the files the same columns \(an unsupervised one may leave out"):
        du.read_files(str(tmp_path), "--data")                # was: "column 'sentiment' has 6 missing label(s)"
    write(tmp_path, "csv", {"test": tweets(6, 3), "train_backup": tweets(12, 5)})
    with caplog.at_level("INFO", logger="kd"):
        raw, _ = du.read_files(str(tmp_path), "--data")
    assert len(raw["train"]) == 42 and "train: train.csv, train_backup.csv; test: test.csv; unsupervised: unlabeled.csv" in caplog.text
    assert "2 files read as its train split (train.csv, train_backup.csv); move any that are not train data out" in caplog.text
    assert "not read" not in caplog.text
    write(tmp_path / "more", "csv", {"mytest": tweets(6, 3)})           # a name that says no split: not read, but said
    (tmp_path / "dataset_info.json").write_text("{}")                     # another format: metadata, not named
    caplog.clear()
    with caplog.at_level("INFO", logger="kd"):
        assert set(du.read_files(str(tmp_path), "--data")[0]) == {"train", "test", "unsupervised"}
    assert f"--data={tmp_path}: not read, as no split is in the name: more/mytest.csv; name a file after its split " \
        f"(train, validation, test or unlabeled: test.csv, my_test.csv) to read it" in caplog.text
    # labels as integers in one file and names in another; a header naming a column twice: each file named
    # (the reader said "Failed to parse string: 'pos' as a scalar of type int64", "Couldn't cast")
    mixed = tmp_path / "mixed"
    write(mixed, "csv", {"train": [r | {"sentiment": i % 3} for i, r in enumerate(tweets(30, 1))], "test": tweets(6, 3)})
    with pytest.raises(du.UsageError, match=r"^--data=\S+mixed: column 'sentiment' holds texts in \S+/test.csv, numbers in "
                                            r"\S+/train.csv; write it the same way in every file \(labels: all names, or "
                                            r"all integers\)$"):
        du.read_files(str(mixed), "--data")
    (mixed / "test.csv").write_text("tweet,sentiment,tweet\na,1,b\n")
    with pytest.raises(du.UsageError, match=r"^--data: \S+/test.csv names the column 'tweet' twice in its header; give each "
                                            r"column its own name$"):
        du.read_files(str(mixed), "--data")
    trailing = tmp_path.parent / f"{tmp_path.name}-trailing.csv"          # a spreadsheet's empty trailing columns: read
    trailing.write_text("tweet,sentiment,,\n" + "".join(f"{r['tweet']},{r['sentiment']},,\n" for r in tweets(30, 1)))
    assert len(du.read_files(str(trailing), "--data")[0]["train"]) == 30


def test_a_semicolon_csv_gets_a_hint_and_one_line(tmp_path, capfd):
    # as spreadsheets save "CSV" in many locales; a comma in a text makes pandas' tokenizer fail
    (tmp_path / "a.csv").write_text("id;review;sentiment\n1;great film;positive\n2;bad, really bad;negative\n")
    with pytest.raises(du.UsageError, match=r"cannot read it as CSV \(Error tokenizing data.*; its header reads as one column "
                                            r"with ';' in it: save the file with commas, or tabs as .tsv$"):
        du.read_files(str(tmp_path / "a.csv"), "--data")
    assert "Failed to read file" not in capfd.readouterr().err                      # the reader's own line: not shown
    (tmp_path / "b.csv").write_text("id;review;sentiment\n1;great film;positive\n2;bad;negative\n")
    raw, where = du.read_files(str(tmp_path / "b.csv"), "--data")
    with pytest.raises(du.UsageError, match=r"no column 'review' \(found id;review;sentiment\); set --text_column .*; its header "
                                            r"reads as one column with ';' in it"):
        du.columns(raw["train"], du.DataSpec(data=str(tmp_path / "b.csv"), text_column="review", label_column="sentiment"),
                   where["train"], "train")


def test_transfer_from_validation_needs_a_validation_file(tmp_path):
    write(tmp_path, "csv", {"train": tweets(60, 1)})
    with pytest.raises(du.UsageError, match=r"^--transfer_data=nowhere.tsv: no such file or folder in .*; give a CSV/TSV/JSON Lines/"
                                            r"parquet file or folder, or a .txt file or folder of them \(one text per line\)$"):   # the setting
        du.check_data(spec(tmp_path, transfer_data="nowhere.tsv"))
    with pytest.raises(du.UsageError, match="transfer_data = validation, but .* has no validation split"):
        du.load_splits(spec(tmp_path, val_size=9, transfer_data="validation"), transfer=True)


def test_a_missing_relative_path_names_the_folder_it_was_looked_for_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(du.UsageError, match=rf"^--data=mine.csv: no such file or folder in {tmp_path}; give a CSV"):
        du.data_files("mine.csv", "--data")


def test_a_file_name_says_its_split(tmp_path):
    assert [du.file_split(tmp_path / n) for n in ("train.csv", "my-dev.csv", "train_unlabeled.csv", "notes.csv")] == \
        ["train", "validation", "unsupervised", None]
    with pytest.raises(du.UsageError, match="train_test.csv: its name says both train and test; rename it"):
        du.file_split(tmp_path / "train_test.csv")


@pytest.mark.parametrize("rows,val_size,message", [
    ({"train": tweets(30, 1) + [{"tweet": "one angry text", "sentiment": "angry"}]}, 5,
     "--val_size=5 of 31 rows: class 'angry' has a single row there, too few to split by class; add rows of that class"),
    ({"train": tweets(30, 1)}, 2, "--val_size=2 of 30 rows: each side of the split needs a row of each of the 3 classes; "
                                  "set --val_size between 3 and 27"),
])
def test_splits_that_cannot_be_stratified_name_the_class_or_setting(tmp_path, rows, val_size, message):
    write(tmp_path, "csv", rows)
    with pytest.raises(du.UsageError) as e:
        du.load_splits(spec(tmp_path, val_size=val_size))
    assert message in str(e.value)


def test_labels_are_names_or_integers(tmp_path):
    rows = tweets(30, 1)
    for r in rows[::4]:
        r["sentiment"] += " "                       # a stray space is the same class
    write(tmp_path / "a", "csv", {"train": rows})
    assert du.load_splits(spec(tmp_path / "a", val_size=6)).label_names == ("negative", "neutral", "positive")
    for name, values, says in (("floats", (0.5, 1.5), "holds numbers that are not integers (0.5, ...)"),
                               ("booleans", (True, False), "holds true/false values (True, ...)")):
        write(tmp_path / name, "jsonl", {"train": [r | {"sentiment": values[i % 2]} for i, r in enumerate(tweets(30, 1))]})
        with pytest.raises(du.UsageError, match=r"column 'sentiment' " + re.escape(says) + "; labels are class names"):
            du.load_splits(spec(tmp_path / name, val_size=6))


def test_a_class_label_column_gives_its_names(tmp_path):
    """Hub datasets and parquet saved by `datasets` carry label names in a ClassLabel feature: used, not "0", "1", "2"."""
    from datasets import ClassLabel, Dataset, Features, Value
    order = ["negative", "neutral", "positive"]
    features = Features({"tweet": Value("string"), "sentiment": ClassLabel(names=order)})
    for split, seed in (("train", 1), ("test", 3)):
        rows = tweets(30, seed)
        Dataset.from_dict({"tweet": [r["tweet"] for r in rows], "sentiment": [order.index(r["sentiment"]) for r in rows]},
                          features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    s = du.load_splits(spec(tmp_path, val_size=6))
    assert s.label_names == tuple(order)
    truth = {r["tweet"]: order.index(r["sentiment"]) for r in tweets(30, 1)}
    assert all(truth[t] == y for t, y in zip(s.train["text"], s.train["label"]))
    # label_names orders those names (it renamed the ids by rank: every positive tweet became "negative")
    mine = du.load_splits(spec(tmp_path, val_size=6, label_names=("positive", "negative", "neutral")))
    assert mine.label_names == ("positive", "negative", "neutral")
    assert all(mine.label_names[y] == order[truth[t]] for t, y in zip(mine.train["text"], mine.train["label"]))
    with pytest.raises(du.UsageError, match=r"label_names = \['a', 'b', 'c'\]: the data's labels are negative, neutral, "
                                            r"positive; list exactly those"):
        du.load_splits(spec(tmp_path, val_size=6, label_names=("a", "b", "c")))
    # names that are digits stay string labels (as integers, label_names renamed them by value: labels swapped)
    digits = tmp_path / "digits"
    digits.mkdir()
    features = Features({"tweet": Value("string"), "sentiment": ClassLabel(names=["3", "1", "2"])})
    rows = tweets(30, 1)
    Dataset.from_dict({"tweet": [r["tweet"] for r in rows], "sentiment": [order.index(r["sentiment"]) for r in rows]},
                      features=features).to_parquet(str(digits / "train.parquet"))
    with pytest.raises(du.UsageError, match=r"label_names = \['three', 'one', 'two'\]: the data's labels are 1, 2, 3; "
                                            r"list exactly those"):
        du.load_splits(spec(digits, val_size=6, label_names=("three", "one", "two")))
    named = du.load_splits(spec(digits, val_size=6, label_names=("3", "1", "2")))
    truth = {r["tweet"]: ["3", "1", "2"][order.index(r["sentiment"])] for r in rows}
    assert all(named.label_names[y] == truth[t] for t, y in zip(named.train["text"], named.train["label"]))


def test_hidden_files_in_a_data_folder_are_not_data(tmp_path):
    write(tmp_path, "csv", {"train": tweets(30, 1), "test": tweets(9, 3)})
    (tmp_path / "._train.csv").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    write(tmp_path / ".ipynb_checkpoints", "csv", {"train-checkpoint": tweets(30, 5)})
    assert {s: [f.name for f in fs] for s, fs in du.data_files(str(tmp_path)).items()} == \
        {"train": ["train.csv"], "test": ["test.csv"]}


def test_macro_metrics_and_confusion_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    m = du.classification_metrics(preds, labels)
    # recall per class: 1/2, 2/2, 1/2 -> macro 2/3; precision: 1/2, 2/3, 1/1 -> macro 13/18
    assert m["accuracy"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(13 / 18)
    # a class absent from a split has no figure there (not 0): perfect on the other two is 1
    assert du.classification_metrics(np.array([0, 2, 2]), np.array([0, 2, 2])) == {"accuracy": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    # one never predicted counts 0: recall 1, 0, 1 -> 2/3; precision 1/2 (class 0 also took the 1), 0, 1 -> 1/2
    m = du.classification_metrics(np.array([0, 0, 2]), np.array([0, 1, 2]))
    assert m["recall"] == pytest.approx(2 / 3) and m["precision"] == pytest.approx(1 / 2)
    # one predicted but not in the labels: no recall of its own (recall 1, 1/2 over classes 0 and 1 -> 3/4), and
    # its precision 0 (precision 1, 1, 0 -> 2/3; F1 1, 2/3, 0 -> 5/9)
    m = du.classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1]))
    assert (m["recall"], m["precision"], m["f1"]) == pytest.approx((3 / 4, 2 / 3, 5 / 9))
    per = du.per_class_metrics(preds, labels, ["neg", "neu", "pos"])
    assert per["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert per["per_class"]["neu"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})


# ----------------------------------------------------------------------------------------------
# a 3-class experiment end to end
# ----------------------------------------------------------------------------------------------
def own_args(data, out, *extra):
    return ["--config", str(ROOT / "configs" / "tiny.toml"), f"--data={data}", "--text_column=tweet",
            "--label_column=sentiment", "--val_size=15", f"--output_dir={out}", f"--cache_dir={out}/cache", *extra]


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    import distill_student
    import evaluate_models
    import fine_tuning_teacher
    root = tmp_path_factory.mktemp("own")
    data = root / "data"
    write(data, "csv", {"train": tweets(150, 1), "validation": tweets(30, 2), "test": tweets(30, 3),
                        "unlabeled": [{"tweet": r["tweet"]} for r in tweets(12, 4)]})
    out = root / "out"
    teacher = fine_tuning_teacher.main(own_args(data, out, "--epochs=10"))   # val accuracy 1.0 (6: 0.67, one batch order)
    students = distill_student.main(own_args(data, out, "--students=[{name = \"cut\", layers = [1], transfer_size = 12}]",
                                             "--epochs=4"))
    from matplotlib.figure import Figure
    figures, savefig = [], Figure.savefig
    with pytest.MonkeyPatch.context() as mp:     # the figures, to read their labels
        mp.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), savefig(self, *a, **k))[1])
        result = evaluate_models.main(["--config", str(ROOT / "configs" / "tiny.toml"), f"--output_dir={out}", "--quantize=false"])
    return {"data": data, "out": out, "teacher": teacher, "students": students, "result": result, "figures": figures}


def test_three_classes_end_to_end(three_class):
    out = three_class["out"] / "tiny"
    config = json.loads((out / "teacher" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    for name in ("cut", "cut-baseline"):
        assert json.loads((out / "students" / name / "config.json").read_text())["id2label"] == config["id2label"]
    assert three_class["teacher"]["val_accuracy"] >= 0.6                  # learned: chance is 1/3
    for log in ("teacher.log", "distill.log"):      # the files each split was read from (read before the log existed)
        assert "train: train.csv; validation: validation.csv; test: test.csv; unsupervised: unlabeled.csv" in \
            (out / "logs" / log).read_text(), log
    rows = {r["model"]: r for r in three_class["result"]["rows"]}
    assert set(rows) == {"teacher", "cut", "cut-baseline"}
    t = rows["teacher"]
    assert t["accuracy"] >= 0.6 and len(t["confusion"]) == 3 and sum(map(sum, t["confusion"])) == 30
    assert set(t["per_class"]) == {"negative", "neutral", "positive"}
    assert t["recall_macro"] == pytest.approx(np.mean([c["recall"] for c in t["per_class"].values()]))
    assert three_class["result"]["labels"] == ["negative", "neutral", "positive"]
    truth = np.array(t["confusion"]).sum(axis=1)                       # each class's test texts
    assert three_class["result"]["class_shares"]["test"] == pytest.approx(truth / truth.sum())
    assert sum(three_class["result"]["class_shares"]["validation"]) == pytest.approx(1)
    table = (out / "results.md").read_text()
    assert "| texts/s |" in table and "reviews/s" not in table                      # tweets are not reviews
    assert three_class["figures"][0].axes[3].get_xlabel().startswith("throughput (texts/s, batch 8")   # the dashboard's too
    titles = [a.get_title() for a in three_class["figures"][0].axes]
    assert "teacher: recall per class" in titles and "cut (distilled): recall per class" in titles
    header = (out / "predictions" / "teacher.csv").read_text().splitlines()[0]
    assert header == "index,label,pred,p_negative,p_neutral,p_positive"
    import pandas as pd             # the texts' rows of the user's test file, with their labels
    texts, test = pd.read_csv(out / "predictions" / "texts.csv"), pd.read_csv(three_class["data"] / "test.csv")
    assert list(texts.columns) == ["index", "label", "text", "source", "row"] and set(texts.source) == {"test"}
    assert test.loc[texts.row, ["tweet", "sentiment"]].values.tolist() == texts[["text", "label"]].values.tolist()
    card = (out / "students" / "cut" / "README.md").read_text()
    assert "negative / neutral / positive" in card and "3 labels" in card
    assert "training read them with literal `\\uXXXX` escapes (`I\\u2019m`) decoded, as `inference.py` does" in card
    assert "\nlanguage:" not in card.split("\n---\n")[0]          # the user's data: its language is not known here


def test_inference_prints_the_names_and_every_probability(three_class):
    import inference
    folder = three_class["out"] / "tiny" / "teacher"
    out = inference.predict(["great loved", "awful worst", "but or"], model=str(folder))
    assert [set(r["probs"]) for r in out] == [{"negative", "neutral", "positive"}] * 3
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-3 for r in out)
    assert [r["label"] for r in out] == ["positive", "negative", "neutral"]
    # the texts as training saw them: your data's literal \uXXXX escapes decoded (IMDb's <br /> left as it is)
    escaped, plain = inference.predict(["great <br /> loved \\u00e9t\\u00e9", "great <br /> loved été"], model=str(folder))
    assert escaped == plain


def test_a_student_of_other_data_is_refused(three_class, imdb_parquet):
    import distill_student
    from configurator import UsageError
    with pytest.raises(UsageError, match="trained with data = "):
        distill_student.main(own_args(three_class["data"], three_class["out"], "--data=imdb", f"--data_dir={imdb_parquet}",
                                      "--text_column=text", "--label_column=label"))


def test_the_teachers_data_written_another_way_is_the_same_data(three_class, monkeypatch):
    # records made before data paths were recorded portable keep them as typed, relative to the checkout: the
    # teacher's and its finished students' records rewritten so; a run given the absolute path keeps the students
    import os

    import distill_student
    from data_utils import REPO, read_json, write_json
    data, out = three_class["data"], three_class["out"] / "tiny"
    older = os.path.relpath(data, REPO)                                    # ../../tmp/pytest-.../data
    for folder in (out / "teacher", out / "students" / "cut", out / "students" / "cut-baseline"):
        config = read_json(folder / "config.json")
        kd = config["sentiment_kd"]
        for part in ("run_config", "training_settings"):
            if kd.get(part, {}).get("data"):
                kd[part]["data"] = older
        write_json(folder / "config.json", config)
    monkeypatch.chdir(data.parent.parent)                                  # and run from another folder
    before = {p: p.stat().st_mtime_ns for p in (out / "students").glob("*/model.safetensors")}
    distill_student.main(own_args(data, three_class["out"], "--students=[{name = \"cut\", layers = [1], transfer_size = 12}]",
                                  "--epochs=4"))
    assert len(before) == 2 and {p: p.stat().st_mtime_ns for p in (out / "students").glob("*/model.safetensors")} == before


def test_data_paths_are_recorded_relative_to_the_checkout_when_beside_it(tmp_path, monkeypatch):
    from configurator import public_config
    from data_utils import REPO, DataSpec, is_path_setting, located, portable, same_setting
    monkeypatch.chdir(tmp_path)                                             # records are read from any folder
    assert portable(str(REPO / "data" / "mine")) == "./data/mine"                         # in the checkout: ./ says path
    assert portable(str(REPO.parent / "shared" / "tweets")) == "../shared/tweets"       # beside it, as ../shared
    assert portable(str(tmp_path / "mine.csv")) == str(tmp_path / "mine.csv")           # elsewhere: absolute
    assert located("data/mine.csv") == str(REPO / "data" / "mine.csv") and located(str(tmp_path)) == str(tmp_path)
    assert public_config({"DATA": str(REPO / "data" / "mine.csv"), "SEED": 1}) == {"data": "./data/mine.csv", "seed": 1}
    assert is_path_setting("data", "tests") and located("tests") == str(REPO / "tests")   # an older record, from anywhere
    assert DataSpec.from_settings({"data": "../shared/tweets", "transfer_data": "validation"}) == \
        DataSpec(data=str(REPO.parent / "shared" / "tweets"), transfer_data="validation")
    assert same_setting("data", "../shared/tweets", str(REPO.parent / "shared" / "tweets"))
    assert same_setting("transfer_data", "~/x.csv", str(Path.home() / "x.csv")) and not same_setting("seed", 1, 2)
    assert not same_setting("data", "data", str(REPO / "data" / "train.csv"))
    for key, value in (("data", "imdb"), ("transfer_data", "validation"), ("data", "someone/tweets"), ("data", ""),
                       ("data", "https://example.com/reviews.csv"), ("seed", "./x.csv")):
        assert not is_path_setting(key, value), (key, value)


def test_a_data_file_edited_since_the_teacher_is_refused(three_class):
    # same path, same settings, other contents: the splits' digests recorded with the teacher differ
    import distill_student
    import evaluate_models
    from configurator import UsageError
    teacher = three_class["out"] / "tiny" / "teacher"
    recorded = json.loads((teacher / "config.json").read_text())["sentiment_kd"]["data_digests"]
    assert set(recorded) == {"train", "validation", "test"} and all(len(d) == 16 for d in recorded.values())
    for split, step, args in (("train", distill_student.main, ["--only=cut"]), ("test", evaluate_models.main, []),
                              ("test", distill_student.main, ["--only=cut"])):
        path = three_class["data"] / f"{split}.csv"
        original = path.read_text()
        lines = original.splitlines(keepends=True)
        lines[1] = lines[1].replace(",negative", ",positive")             # one label changed in place
        assert lines[1] != original.splitlines(keepends=True)[1]
        try:
            path.write_text("".join(lines))
            du.load_splits.cache_clear()
            with pytest.raises(UsageError, match=rf"^the data changed since the teacher {teacher} was trained: its "
                                                 rf"{split} split \(\d+ rows now\) is not the one it recorded"):
                step(own_args(three_class["data"], three_class["out"], *args))
        finally:
            path.write_text(original)
            du.load_splits.cache_clear()


def test_the_teachers_data_moved_elsewhere_is_read_there_when_its_contents_match(three_class, tmp_path):
    import distill_student
    import evaluate_models
    from configurator import UsageError
    data, teacher = three_class["data"], three_class["out"] / "tiny" / "teacher"
    moved, aside = tmp_path / "moved", data.with_name("data.aside")
    shutil.copytree(data, moved)
    out2 = tmp_path / "out2"
    common = ["--config", str(ROOT / "configs" / "tiny.toml"), f"--teacher_dir={teacher}", f"--output_dir={out2}",
              "--quantize=false"]
    with pytest.raises(UsageError, match=r"^--data=.*moved, but the teacher .* was trained with data = .*; give it as"):
        distill_student.main(own_args(moved, out2, f"--teacher_dir={teacher}"))     # the recorded data is there: other data
    data.rename(aside)                                                      # the teacher's data is not where it was
    try:
        du.load_splits.cache_clear()
        with pytest.raises(UsageError, match=rf"^the teacher's data \S+ is not there \({data}\); .*give where it lies now: --data=PATH"):
            evaluate_models.main(common)
        students = distill_student.main(own_args(moved, out2, f"--teacher_dir={teacher}", "--epochs=1",
                                                 "--students=[{name = \"cut\", layers = [1]}]"))
        assert set(students["students"]) == {"cut", "cut-baseline"}
        result = evaluate_models.main([*common, f"--data={moved}"])
        assert {r["model"] for r in result["rows"]} == {"teacher", "cut", "cut-baseline"}
        teacher_row = next(r for r in result["rows"] if r["model"] == "teacher")
        assert teacher_row["accuracy"] == next(r for r in three_class["result"]["rows"] if r["model"] == "teacher")["accuracy"]
        lines = (moved / "test.csv").read_text().splitlines(keepends=True)
        (moved / "test.csv").write_text("".join([lines[0], lines[1].replace(",negative", ",positive"), *lines[2:]]))
        du.load_splits.cache_clear()                                        # a copy that differs is not the teacher's data
        with pytest.raises(UsageError, match="the data changed since the teacher .* its test split"):
            evaluate_models.main([*common, f"--data={moved}"])
        with pytest.raises(UsageError, match=r"^--data=imdb, but the teacher was trained with data = "):
            evaluate_models.main([*common, "--data=imdb"])
    finally:
        aside.rename(data)
        du.load_splits.cache_clear()


# ----------------------------------------------------------------------------------------------
# bad data, through the command line
# ----------------------------------------------------------------------------------------------
def bad(tmp_path, name: str):
    """A data folder with one defect (name), or None for cases that need only a flag."""
    folder = tmp_path / "data"
    rows = {"train": tweets(30, 1), "test": tweets(9, 3)}
    if name == "column":
        rows = {s: [{"body": r["tweet"], "sentiment": r["sentiment"]} for r in v] for s, v in rows.items()}
    elif name == "unseen-label":
        rows["test"][0]["sentiment"] = "furious"
    elif name == "one-class":
        rows = {s: [r | {"sentiment": "positive"} for r in v] for s, v in rows.items()}
    elif name == "empty-text":
        rows["train"][4]["tweet"] = "  "
    elif name == "missing-label":
        rows["train"][5]["sentiment"] = None
    elif name == "both":           # a new user's file: two empty texts and a missing label, refused in one run
        rows["train"][4]["tweet"], rows["train"][9]["tweet"], rows["train"][5]["sentiment"] = "  ", "", None
    elif name == "case":           # a typo: one class written two ways
        rows["train"][7]["sentiment"] = rows["train"][7]["sentiment"].capitalize()
    elif name == "mixed":
        rows["train"][0]["sentiment"] = "2"
    elif name == "id-column":      # --label_column names an id
        rows = {s: [r | {"sentiment": f"{s}-{i}"} for i, r in enumerate(v)] for s, v in rows.items()}
    if name == "format":
        folder.mkdir(parents=True)
        (folder / "reviews.xlsx").write_text("x")
        return folder / "reviews.xlsx"
    write(folder, "csv", rows)
    return folder


@pytest.mark.parametrize("case,flags,fragments", [
    ("column", [], ["train.csv: no column 'tweet' (found body, sentiment); set --text_column"]),
    ("format", [], ["unknown file format '.xlsx'"]),
    ("unseen-label", [], ["test.csv: label 'furious' of the test split is not in train"]),
    ("one-class", [], ["has a single class ('positive')"]),
    ("empty-text", [], ["train.csv: column 'tweet' has 1 empty or missing text(s) (first at data row 5, a header line not counted)"]),
    ("missing-label", [], ["train.csv: column 'sentiment' has 1 missing label(s) (first at data row 6, a header line not counted)"]),
    ("both", [], ["train.csv: column 'tweet' has 2 empty or missing text(s) (first at data row 5, a header line not "
                  "counted, then 10) (CSV/TSV readers take NA, null, None as missing too); drop or fill those rows; and "
                  "column 'sentiment' has 1 missing label(s) (first at data row 6, a header line not counted); drop"]),
    ("mixed", [], ["mixes label types", "numbers written as text"]),
    ("case", [], ["differ only in case, so they would be two classes; write them the same way",
                  "'Neutral' (train, first at data row 8, a header line not counted)",       # the rows to fix
                  "'neutral' (train, first at data row 2, a header line not counted)"]),
    ("id-column", [], ["train.csv: column 'sentiment' has 30 different values in 30 rows, too many to be labels; set --label_column"]),
    ("names", ["--label_names=bad,good"], ["label_names = ['bad', 'good']: the data's labels are negative, neutral, positive"]),
    ("missing", [], ["no such file or folder"]),
])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, case, flags, fragments):
    data = bad(tmp_path, case) if case != "missing" else tmp_path / "nowhere.csv"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "fine_tuning_teacher.py"), *own_args(data, out, "--val_size=3"), *flags],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    err = r.stderr.strip()
    assert r.returncode == 2 and err.startswith("error: ") and "\n" not in err, r.stderr[-2000:]
    for f in fragments:
        assert f in err, err
    assert not out.exists()


TWEETS = ROOT.parent / "shared" / "data" / "tweet-sentiment"


@pytest.mark.skipif(not TWEETS.is_dir(), reason="needs ../shared/data/tweet-sentiment")
def test_real_tweets_load_as_configs_tweets_says():
    """configs/tweets.toml's data: 3 string classes, the SemEval-2017 test split whole, validation cut to 2,000
    with the rest as transfer text, and no train or transfer text that is also in validation or test."""
    s = du.load_splits(du.DataSpec(data=str(TWEETS), val_size=2000, transfer_data="validation"), transfer=True)
    assert s.label_names == ("negative", "neutral", "positive")
    assert len(s.test) == 12_284 and list(np.bincount(s.test["label"])) == [3972, 5937, 2375]   # its README
    assert len(s.validation) == 2000 and len(s.train) + s.report["train_rows_in_validation"] + s.report["train_rows_in_test"] == 29_702
    held = set(s.validation["text"]) | set(s.test["text"])
    assert not held & set(s.train["text"]) and not held & set(s.transfer)
    assert not set(s.train["text"]) & set(s.transfer) and len(set(s.transfer)) == len(s.transfer)   # each once, no train text
    assert len(s.transfer) == 18_514 and s.report["transfer_texts_in_validation_or_test"] == 12     # 20,632 - 2,000 - 12
    assert s.report["transfer_duplicate_texts"] == 67 and s.report["transfer_texts_in_train"] == 39   # 18,620 - 67 - 39
    assert not any("\\u2019" in t for t in s.train["text"][:2000])                 # literal escapes decoded


def test_a_data_file_without_rows_is_named_as_such(tmp_path):
    # the readers' own words ("No columns to parse from file", "corresponds to no data") name neither the file nor why
    import pyarrow as pa
    import pyarrow.parquet as pq
    cases = {"empty.csv": ("", "is empty"), "blank.jsonl": ("\n  \n", "is empty"),
             "header.csv": ("text,label\n\n", "holds a header line and no rows"),
             "header.tsv": ("text\tlabel\n", "holds a header line and no rows"), "array.json": ("[ ]\n", "is empty")}
    for name, (content, what) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(du.UsageError, match=rf"^--data: {tmp_path / name} {what}; give a file with one row per text$"):
            du.read_files(str(tmp_path / name), "--data")
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), tmp_path / "none.parquet")
    with pytest.raises(du.UsageError, match="none.parquet is empty"):
        du.read_files(str(tmp_path / "none.parquet"), "--data")
    (tmp_path / "bad.parquet").write_text("not a parquet file")                 # unreadable: the reader's one-line error
    with pytest.raises(du.UsageError, match=r"bad.parquet: cannot read it as parquet \(.*\); check the file's format$"):
        du.read_files(str(tmp_path / "bad.parquet"), "--data")
    (tmp_path / "one.csv").write_text("text,label\ngood,pos\n")                     # one row is a file (too few: said later)
    assert len(du.read_files(str(tmp_path / "one.csv"), "--data")[0]["train"]) == 1
