"""data_utils: every IMDb source, splits, the three truncation strategies token by token, the cache."""
import numpy as np
import torch
import pytest

import data_utils as du
import models
from configurator import UsageError


@pytest.mark.parametrize("fixture", ["imdb_parquet", "imdb_hub_named", "imdb_aclimdb"])
def test_load_local_sources(request, fixture, no_imdb_env):
    root = request.getfixturevalue(fixture)
    data = du.load_imdb(("train", "test", "unsupervised"), data_dir=str(root))
    assert set(data) == {"train", "test", "unsupervised"}
    assert data["train"].column_names == ["text", "label"]
    assert sorted(set(data["train"]["label"])) == [0, 1]
    assert set(data["unsupervised"]["label"]) == {-1}
    assert all("<br" not in t for t in data["train"]["text"])      # HTML breaks replaced
    assert len(data["test"]) == (24 if fixture != "imdb_aclimdb" else 8)


def test_imdb_dir_env(imdb_parquet, monkeypatch):
    monkeypatch.setenv("IMDB_DIR", str(imdb_parquet))
    assert len(du.load_imdb(("train",))["train"]) == 48


def test_missing_dir_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IMDB_DIR", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"IMDB_DIR=.*nope: no such folder; point it at"):
        du.load_imdb(("train",))


def test_hub_failure_says_what_was_tried(no_imdb_env, monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UsageError, match=r"no IMDB_DIR.*'stanfordnlp/imdb' failed \(offline\).*IMDB_DIR"):
        du.load_imdb(("train",))


def test_clean_text():
    assert du.clean_text("a<br />b<br/>c<BR>d") == "a b c d"


def test_make_splits_stratified_seeded_disjoint(imdb_parquet):
    data = du.load_imdb(("train", "test"), data_dir=str(imdb_parquet))
    s1 = du.make_splits(data, val_size=8, train_size=20, test_size=10, seed=3)
    s2 = du.make_splits(data, val_size=8, train_size=20, test_size=10, seed=3)
    assert (len(s1["train"]), len(s1["validation"]), len(s1["test"])) == (20, 8, 10)
    for s in ("train", "validation", "test"):
        assert s1[s]["text"] == s2[s]["text"]                       # seeded
        assert sum(s1[s]["label"]) == len(s1[s]) // 2                 # stratified (balanced data)
    assert not set(s1["train"]["text"]) & set(s1["validation"]["text"])
    s3 = du.make_splits(data, val_size=8, seed=4)
    assert s3["validation"]["text"] != s1["validation"]["text"]
    assert len(s3["train"]) == 40
    with pytest.raises(UsageError, match="val_size"):
        du.make_splits(data, val_size=0)


def test_stratified_indices_at_the_edges():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    assert sorted(labels[du.stratified_indices(labels, 3, 0)]) == [0, 1, 2]      # n = classes: one of each, allowed
    assert du.stratified_indices([0, 1, 0, 1], 4, 0).tolist() == [0, 1, 2, 3]   # all rows: every row
    assert (np.diff(du.stratified_indices([0, 1] * 20, 8, 3)) > 0).all()           # in the data's order
    with pytest.raises(UsageError, match=r"set the sample size between 3 and 27$"):
        du.stratified_indices(labels, 2, 0)


@pytest.mark.parametrize("strategy,expected", [
    ("head", [0, 1, 2, 3, 4, 5]),
    ("tail", [4, 5, 6, 7, 8, 9]),
    ("head+tail", [0, 1, 6, 7, 8, 9]),
])
def test_truncate_ids(strategy, expected):
    assert models.truncate_ids(list(range(10)), 6, strategy, head_tokens=2) == expected
    assert models.truncate_ids([1, 2], 6, strategy, head_tokens=2) == [1, 2]      # short: untouched
    assert len(models.truncate_ids(list(range(10)), 4, strategy, head_tokens=6)) == 4   # never past the budget


def test_head_and_tail_at_the_budget_keep_the_head():
    assert models.truncate_ids(list(range(10)), 4, "head+tail", head_tokens=6) == [0, 1, 2, 3]
    assert models.truncate_ids(list(range(10)), 4, "head+tail", head_tokens=4) == [0, 1, 2, 3]
    assert models.truncate_ids(list(range(10)), 4, "head+tail", head_tokens=0) == [6, 7, 8, 9]


def test_a_head_that_leaves_no_tail_after_this_tokenizers_special_tokens_is_refused(monkeypatch):
    _, tok = models.build_tiny("bert")
    assert models.encode(tok, ["good"], max_length=12, strategy="head+tail", head_tokens=9)[0]      # 12 - 2: a tail of 1
    monkeypatch.setattr(models, "special_tokens", lambda tokenizer: ([tok.cls_token_id, tok.cls_token_id], [tok.sep_token_id]))
    with pytest.raises(UsageError, match=r"^--head_tokens=9: must be below 9, what --max_length=12 leaves after this "
                                         r"tokenizer's 3 special tokens \(head\+tail would keep no tail\)$"):
        models.encode(tok, ["good"], max_length=12, strategy="head+tail", head_tokens=9)
    assert models.encode(tok, ["good"], max_length=12, strategy="head", head_tokens=9)[0]          # no tail asked for


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("strategy", ["head", "tail", "head+tail"])
def test_encode_token_by_token(kind, strategy):
    _, tok = models.build_tiny(kind)
    text = "the movie was great and the acting was awful but the plot was the best"
    body = tok(text, add_special_tokens=False)["input_ids"]
    full = tok(text)["input_ids"]
    ids, lengths = models.encode(tok, [text, "good"], max_length=12, strategy=strategy, head_tokens=3)
    budget = 12 - (len(full) - len(body))
    want = {"head": body[:budget], "tail": body[-budget:], "head+tail": body[:3] + body[-(budget - 3):]}[strategy]
    assert ids[0] == [full[0]] + want + [full[-1]]                   # specials around the kept tokens
    assert len(ids[0]) == 12 and ids[0][0] == tok.cls_token_id and ids[0][-1] == tok.sep_token_id
    assert ids[1] == tok("good")["input_ids"]                        # short text: same as the tokenizer
    assert lengths[0] == len(full)


def test_tokenize_dataset_cache(tmp_path, imdb_parquet, caplog):
    data = du.load_imdb(("train",), data_dir=str(imdb_parquet))["train"]
    _, tok = models.build_tiny("bert")
    a = models.tokenize_dataset(data, tok, 32, "head+tail", 8, tmp_path, "train")
    assert a.column_names == ["input_ids", "length", "label"]
    assert max(a["length"]) <= 32 and a["length"] == [len(x) for x in a["input_ids"]]
    with caplog.at_level("INFO", logger="kd"):
        b = models.tokenize_dataset(data, tok, 32, "head+tail", 8, tmp_path, "train")
    assert "reused cache" in caplog.text and a["input_ids"] == b["input_ids"]
    models.tokenize_dataset(data, tok, 24, "head+tail", 8, tmp_path, "train")   # new setting, new entry
    assert len(list((tmp_path / "tokenized").iterdir())) == 2


def test_pad_collator_dynamic_padding():
    _, tok = models.build_tiny("bert")
    rows = [{"input_ids": [2, 50, 51, 3], "label": 1, "length": 4},
            {"input_ids": [2, 50, 3], "label": 0, "length": 3, }]
    batch = models.PadCollator(tok)(rows)
    assert batch["input_ids"].tolist() == [[2, 50, 51, 3], [2, 50, 3, tok.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0] and "length" not in batch


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_collator_pads_as_the_tokenizer_does(side):
    _, tok = models.build_tiny("roberta")
    tok.padding_side = side
    rows = [{"input_ids": [0, 50, 51, 52, 2], "label": 1, "teacher_logits": [0.5, -1.0]},
            {"input_ids": [0, 50, 2], "label": 0, "teacher_logits": [2.0, 3.0]}]
    ours, theirs = models.PadCollator(tok)(rows), tok.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert ours["attention_mask"].tolist() == theirs["attention_mask"].tolist()
    assert ours["input_ids"].dtype == torch.long and ours["teacher_logits"].tolist() == [[0.5, -1.0], [2.0, 3.0]]


def test_a_tokenizer_saved_to_pad_on_the_left_pads_on_the_right(tmp_path):
    # a BERT model numbers positions from the first token: left padding would change a text's logits with its batch
    import json
    model, tok = models.build_tiny("bert")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())      # as a hub model may say
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config | {"padding_side": "left"}))
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(tmp_path).padding_side == "left"
    _, loaded = models.load_classifier(str(tmp_path))
    assert loaded.padding_side == "right"
    batch = models.PadCollator(loaded)([{"input_ids": [2, 50, 51, 3]}, {"input_ids": [2, 50, 3]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_classification_metrics_by_hand():
    m = du.classification_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert m["accuracy"] == 0.75
    # class 0: P=2/2 R=2/3 F1=0.8; class 1: P=1/2 R=1 F1=2/3
    assert m["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx((2 / 3 + 1) / 2)


def test_tokenizer_fingerprint_ignores_call_state():
    _, tok = models.build_tiny("bert")
    before = models.tokenizer_fingerprint(tok)
    tok(["some text here"], truncation=True, max_length=4, padding="max_length")
    assert models.tokenizer_fingerprint(tok) == before
    _, other = models.build_tiny("roberta")
    assert models.tokenizer_fingerprint(other) != before


@pytest.mark.parametrize("damage", ["truncate", "same size", "checksum file"])
def test_a_damaged_tokenized_cache_is_set_aside_and_recomputed(tmp_path, imdb_parquet, caplog, damage):
    data = du.load_imdb(("train",), data_dir=str(imdb_parquet))["train"]
    _, tok = models.build_tiny("bert")
    expected = models.tokenize_dataset(data, tok, 32, "head+tail", 8, tmp_path, "train")["input_ids"]   # read before the
    (cache,) = (tmp_path / "tokenized").iterdir()                                 # file it maps is damaged
    arrow = next(cache.glob("*.arrow"))
    body = bytearray(arrow.read_bytes())
    damaged = arrow.with_name("damaged")     # a new file put in place: this process still maps the old one
    if damage == "truncate":
        damaged.write_bytes(bytes(body[:len(body) // 2]))
        damaged.replace(arrow)
    elif damage == "same size":              # token ids overwritten: readable, but wrong
        body[-600:-500] = bytes(100)
        damaged.write_bytes(bytes(body))
        damaged.replace(arrow)
    else:
        (cache / models.CHECKSUMS).unlink()      # e.g. written before checksums were
    with caplog.at_level("INFO", logger="kd"):
        b = models.tokenize_dataset(data, tok, 32, "head+tail", 8, tmp_path, "train")
    assert f"cache {cache} is damaged" in caplog.text and "reused cache" not in caplog.text
    assert b["input_ids"] == expected and cache.with_name(cache.name + ".damaged").is_dir()
    assert models.read_tokenized(cache, len(data), 200)[1] is None                         # the new cache checks out


def test_a_cache_with_ids_outside_the_vocabulary_is_refused(tmp_path, imdb_parquet):
    data = du.load_imdb(("train",), data_dir=str(imdb_parquet))["train"]
    _, tok = models.build_tiny("bert")
    models.tokenize_dataset(data, tok, 32, "head+tail", 8, tmp_path, "train")
    (cache,) = (tmp_path / "tokenized").iterdir()
    assert models.read_tokenized(cache, len(data), 10)[1] == "48 rows of ids 2..139, expected 48 rows of ids below 10"
    assert models.read_tokenized(cache, 47, 200)[1].endswith("expected 47 rows of ids below 200")
    assert models.read_tokenized(cache, 48, 200)[1] is None


def test_atomic_path_replaces_whole_or_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    du.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with du.atomic_path(path) as tmp:
            tmp.write_text('{"a": 2, "b"')        # half written, then a crash
            raise RuntimeError("crash")
    assert du.read_json(path) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    with du.atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path   # the format follows the suffix (savefig, np.savez)
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png" and not tmp.exists()
    # replace=False (inference.py --output): a file made meanwhile by another command is not written over
    with du.atomic_path(tmp_path / "new.csv", replace=False) as tmp:
        tmp.write_text("ours")
    assert (tmp_path / "new.csv").read_text() == "ours" and not tmp.exists()
    with pytest.raises(FileExistsError):
        with du.atomic_path(tmp_path / "taken.csv", replace=False) as tmp:
            tmp.write_text("ours")
            (tmp_path / "taken.csv").write_text("theirs")
    assert (tmp_path / "taken.csv").read_text() == "theirs" and not tmp.exists()


def test_default_device():
    assert models.default_device("cpu") == "cpu"
    assert models.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match=r"^--device=cuda: no GPU is visible"):
            models.default_device("cuda")


def test_leaks_counts_and_drops_every_kind_of_overlap():
    from datasets import Dataset
    train = Dataset.from_dict({"text": ["a", "b", "b", "c", "v1"]})
    validation, test = Dataset.from_dict({"text": ["v1", "v2", "t1"]}), Dataset.from_dict({"text": ["t1", "t2"]})
    transfer = ["u1", "v2", "t2", "a", "u2", "u1"]     # one in validation, one in test, a train text, one twice
    report, tr, val, kept = du.leaks(train, validation, test, transfer, drop=False)
    assert report == {"train_duplicate_rows": 1, "train_rows_in_validation": 1, "train_rows_in_test": 0,
                      "validation_texts_in_test": 1, "transfer_texts_in_validation_or_test": 2,
                      "transfer_duplicate_texts": 1, "transfer_texts_in_train": 1, "dropped": False}
    assert (tr, val, kept) == (train, validation, transfer)                    # counted only
    report, tr, val, kept = du.leaks(train, validation, test, transfer, drop=True)
    assert list(tr["text"]) == ["a", "b", "b", "c"] and list(val["text"]) == ["v1", "v2"] and kept == ["u1", "u2"]
    assert report["dropped"] is True


def test_a_transfer_size_past_the_texts_left_says_what_was_dropped():
    from types import SimpleNamespace
    import distill_student as ds
    report = {"transfer_texts_in_validation_or_test": 296, "transfer_duplicate_texts": 488, "transfer_texts_in_train": 0,
              "dropped": True}
    data = SimpleNamespace(transfer=("x",) * 48_887, report=report)
    run = SimpleNamespace(name="L6-t50k", distilled=True, settings={"transfer_size": 49_704})
    with pytest.raises(UsageError, match=r"^student 'L6-t50k': transfer_size = 49704, but there are 48,887 transfer texts "
                                         r"\(dropped: 296 in validation or test, 488 repeats\); set it to at most 48887$"):
        ds.check_transfer_size([run], data)
    ds.check_transfer_size([SimpleNamespace(name="b", distilled=False, settings={"transfer_size": 49_704})], data)  # a baseline
    with pytest.raises(UsageError, match=r"48,887 transfer texts; set it"):          # kept with --drop_leaks=false
        ds.check_transfer_size([run], SimpleNamespace(transfer=data.transfer, report=report | {"dropped": False}))
