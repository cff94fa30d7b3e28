"""inference.py's command line: every input mode and every bad input. Most cases run it in this process, as its
`__main__` does (run_cli); a subprocess checks what only a real process shows."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, run_cli


def run(*args, stdin=b""):
    return run_cli("inference.py", *args, stdin=stdin)


def run_process(*args):
    """inference.py in a new Python process (outputs as bytes)."""
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), *args], capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def outputs(tiny_experiment):
    return str(tiny_experiment)


def lines(r):
    return [l for l in r.stdout.splitlines() if l.strip()]


def test_texts_as_arguments(outputs):
    r = run_process(f"--output_dir={outputs}", "I loved it", "Worst film ever", "Two\n\nparagraphs,\tone line")
    assert r.returncode == 0, r.stderr.decode()              # the command as a user types it, in its own process
    r = SimpleNamespace(stdout=r.stdout.decode(), stderr=r.stderr.decode())
    out = lines(r)
    assert len(out) == 3 and out[0].split()[0] in ("positive", "negative") and out[0].endswith("I loved it")
    assert out[2].endswith("  Two paragraphs, one line")          # the table shows each text on its one line
    assert 0.5 <= float(out[0].split()[1]) <= 1.0
    # the default model: the best student of the newest experiment
    assert "/tiny/students/" in r.stderr
    # a setting of another script (one command line for every step) is noted and ignored; no script's is an error
    r = run(f"--output_dir={outputs}", "--epochs=3", "I loved it")
    assert r.returncode == 0 and "note: ignored --epochs (settings of other scripts)" in r.stderr
    # --config FILE (a space, as the README writes it) names the experiment whose best student predicts
    r = run(f"--output_dir={outputs}", "--config", str(ROOT / "configs" / "tiny.toml"), "I loved it")
    assert r.returncode == 0 and len(lines(r)) == 1 and lines(r)[0].endswith("I loved it"), r.stderr
    assert "/tiny/students/" in r.stderr
    r = run(f"--output_dir={outputs}", "--epochz=3", "I loved it")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown constant '--epochz' (no script has it)")
    r = run(f"--output_dir={outputs}", "--5 stars, would watch again")
    assert r.returncode == 2 and "a text that starts with -- goes after a lone --" in r.stderr


def test_json_file_and_stdin_agree(outputs, tmp_path):
    f = tmp_path / "reviews.txt"
    f.write_text("a great film\nthe worst movie\n")
    model = f"{outputs}/tiny/teacher"
    a = json.loads(run(f"--output_dir={outputs}", "--model", model, "--json", "--file", str(f)).stdout)
    b = json.loads(run(f"--output_dir={outputs}", f"--model={model}", "--json", "-", stdin=f.read_bytes()).stdout)
    assert a == b and a["model"] == model and [p["text"] for p in a["predictions"]] == ["a great film", "the worst movie"]
    (tmp_path / "reviews.csv").write_text('id,text\n1,a great film\n2,"the worst movie"\n')    # a table's text column
    r = run(f"--output_dir={outputs}", "--model", model, "--json", "--file", str(tmp_path / "reviews.csv"))
    assert json.loads(r.stdout) == a and "Generating" not in r.stderr      # no progress bar of the reader
    assert r.stderr.startswith(f"model: {model} (validation accuracy")     # the model line with --json too
    assert all(p["label"] in ("positive", "negative") and 0.5 <= p["score"] <= 1 for p in a["predictions"])
    # "-" beside --file or other texts reads standard input there, not the text "-"; stdin twice is refused
    c = json.loads(run(f"--output_dir={outputs}", "--model", model, "--json", "--file", str(f), "first", "-", "last",
                       stdin=b"from stdin\n").stdout)
    assert [p["text"] for p in c["predictions"]] == ["a great film", "the worst movie", "first", "from stdin", "last"]
    assert c["predictions"][:2] == a["predictions"]
    table = tmp_path / "reviews.csv"                     # a table's file too
    d = json.loads(run(f"--output_dir={outputs}", "--model", model, "--json", "--file", str(table), "-",
                       stdin=b"from stdin\n").stdout)
    assert [p["text"] for p in d["predictions"]] == ["a great film", "the worst movie", "from stdin"]
    r = run(f"--output_dir={outputs}", "--model", model, "--file=-", "-", stdin=b"x\n")
    assert r.returncode == 2 and r.stderr == 'error: standard input is given twice (--file=- and "-" as a text); it ' \
        'can be read once: give "-" once\n'
    # a review that is a yes/no word after --json is a review, not the flag's value (--json=false turns it off)
    r = run(f"--output_dir={outputs}", "--model", model, "--json", "No", "Yes")
    assert [p["text"] for p in json.loads(r.stdout)["predictions"]] == ["No", "Yes"]
    r = run(f"--output_dir={outputs}", "--model", model, "--json=false", "No")
    assert r.returncode == 0 and len(lines(r)) == 1 and lines(r)[0].endswith("No")
    r = run(f"--output_dir={outputs}", "--model", model, "--json", "--overwrite", "No")    # another script's flag
    assert [p["text"] for p in json.loads(r.stdout)["predictions"]] == ["No"] and "ignored --overwrite" in r.stderr


def test_builtin_examples_without_input(outputs):
    r = run(f"--output_dir={outputs}")
    assert r.returncode == 0 and len(lines(r)) == 4
    assert r.stderr.startswith("note: no text given: 4 built-in movie reviews (give texts, --file=PATH, or - for "
                               "standard input)\n")


def test_blank_texts_skipped_with_a_note(outputs, tmp_path):
    r = run(f"--output_dir={outputs}", "good", "   ", "", "bad")
    assert r.returncode == 0 and len(lines(r)) == 2
    assert "skipped 2 empty text(s) (#2, #3)" in r.stderr
    r = run(f"--output_dir={outputs}", " ")
    assert r.returncode == 2 and "no non-empty text" in r.stderr
    (tmp_path / "empty.txt").write_text("\n  \n")        # a file, or standard input, of nothing: named
    r = run(f"--output_dir={outputs}", f"--file={tmp_path / 'empty.txt'}")
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path / 'empty.txt'} holds no text to predict (empty, or blank " \
        "lines only); give it one text per line\n"
    r = run(f"--output_dir={outputs}", "-", stdin=b"")
    assert r.returncode == 2 and r.stderr.startswith("error: standard input holds no text to predict")


def test_missing_and_incomplete_model_folders(outputs, tmp_path):
    r = run(f"--output_dir={outputs}", "--model", str(tmp_path / "nope"), "hi")
    err = r.stderr.strip()
    assert r.returncode == 2 and err.count("\n") == 0
    assert "does not exist; saved models:" in err and "tiny/teacher" in err and "tiny/students/cut" in err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    r = run(f"--output_dir={outputs}", "--model", str(tmp_path / "half"), "hi")
    assert r.returncode == 2 and "is incomplete" in r.stderr
    students = Path(outputs) / "tiny" / "students"
    r = run(f"--output_dir={outputs}", "--model", str(students), "hi")                       # a folder of models
    assert r.returncode == 2 and r.stderr.strip().endswith(f"{students} is not a model folder (no config.json or model "
        f"weights); the models in it: {students / 'cut'}, {students / 'cut-baseline'}, {students / 'roberta'}"), r.stderr
    r = run(f"--output_dir={outputs}", "--model", str(tmp_path), "hi")                      # no model's at all
    assert r.returncode == 2 and "is not a model folder (no config.json or model weights); saved models: " in r.stderr
    r = run(f"--output_dir={tmp_path}", "hi")
    assert r.returncode == 2 and "no saved model" in r.stderr


def test_unreadable_and_non_utf8_files(outputs, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"fine line\nalso fine\nbad \xff\xfe byte\n")
    r = run(f"--output_dir={outputs}", "--file", str(f))
    assert r.returncode == 2 and "line 3 is not valid UTF-8" in r.stderr
    r = run(f"--output_dir={outputs}", "--file", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and f"error: --file={tmp_path}/missing.txt: no such file or folder; give a CSV/TSV/JSON " \
        "Lines/parquet file, or a text file (one text per line)" in r.stderr, r.stderr
    f.chmod(0o000)                                           # there, but not readable: why, from the system
    if not os.access(f, os.R_OK):                            # (root reads it anyway)
        r = run(f"--output_dir={outputs}", "--file", str(f))
        assert r.returncode == 2 and "bad.txt: cannot read it (Permission denied); give a UTF-8 text file" in r.stderr


def test_non_utf8_argument_is_one_line(outputs):
    r = run_process(f"--output_dir={outputs}", "fine", b"bad \xff\xfe byte")    # the bytes as the system passes them
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and err == "error: text argument #2 is not valid UTF-8 (the terminal's encoding?); " \
        "pass it in a UTF-8 file with --file=PATH", err


def test_labels_named_like_transformers_placeholders(outputs, tmp_path):
    """A model of this project trained on labels LABEL_0 / LABEL_1 (transformers then leaves id2label out of
    config.json, its default for 2 classes) predicts them; a classifier from elsewhere with only those
    placeholder names is refused (its classes are unknown)."""
    import shutil
    from configurator import UsageError
    from inference import predict
    folder = tmp_path / "placeholder"
    shutil.copytree(f"{outputs}/tiny/students/cut", folder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("id2label", "label2id"):
        config.pop(key)
    (folder / "config.json").write_text(json.dumps(config))
    out = predict(["a great film", "awful"], model=str(folder))
    assert [sorted(o["probs"]) for o in out] == [["LABEL_0", "LABEL_1"]] * 2 and out[0]["label"] in ("LABEL_0", "LABEL_1")
    config.pop("sentiment_kd")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="is a classifier without label names \\(LABEL_0, LABEL_1\\)"):
        predict(["a great film"], model=str(folder))


def test_a_classifier_of_one_label_is_refused(outputs, tmp_path):
    import shutil
    from configurator import UsageError
    from inference import predict
    folder = tmp_path / "one"
    shutil.copytree(f"{outputs}/tiny/students/cut", folder, ignore=shutil.ignore_patterns("onnx"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"id2label": {"0": "positive"}, "label2id": {"positive": 0}}))
    with pytest.raises(UsageError, match=r"is a classifier without label names \(positive\)"):
        predict(["x"], model=str(folder))


def test_scores_and_probabilities_are_rounded_alike_and_the_table_cuts_long_texts(capsys):
    import numpy as np
    from inference import labelled, print_table
    assert labelled(np.array([[0.123456, 0.876544]]), {0: "negative", 1: "positive"}) == \
        [{"label": "positive", "score": 0.8765, "probs": {"negative": 0.1235, "positive": 0.8765}}]
    print_table(["x" * 100, "y" * 70], [{"label": "positive", "score": 0.9}] * 2)
    assert capsys.readouterr().out.splitlines() == ["positive  0.900  " + "x" * 67 + "...", "positive  0.900  " + "y" * 70]


def test_predict_importable(outputs):
    from inference import predict
    out = predict(["a great film", "awful"], model=f"{outputs}/tiny/students/cut")
    assert len(out) == 2 and {o["label"] for o in out} <= {"positive", "negative"}
    assert all(0.5 <= o["score"] <= 1 for o in out)
    # the texts as training saw them: IMDb's <br /> line breaks are spaces there
    raw, clean = predict(["a great film<br /><br />truly great<BR>", "a great film  truly great "], model=f"{outputs}/tiny/teacher")
    assert raw == clean
    # without a model, the newest experiment's best student: named, since it changes as experiments are trained
    with pytest.warns(UserWarning, match=rf"^predict\(\): no model given, so {outputs}/tiny/students/\S+ \(the best distilled "
                                         r"student of the newest experiment(; its labels-only baseline did (better than it|as well) "
                                         r"on validation \(\S+ against \S+\): --model=\S+ takes it)?; validation "
                                         r"accuracy \d\.\d{4}[^)]*\); pass model=\.\.\. to choose$"):
        default = predict(["a great film", "awful"], output_dir=str(outputs))
    assert len(default) == 2


def test_predict_takes_the_constants_edited_at_the_top_of_inference_py(outputs, monkeypatch):
    # README: "Without model=, predict takes the command line's default"; its keyword defaults were its own
    import copy

    import configurator
    import inference
    from configurator import UsageError
    ns, teacher = vars(inference), f"{outputs}/tiny/teacher"
    base = copy.deepcopy(configurator.defined_constants(ns, "inference"))
    for name in ("MODEL", "OUTPUT_DIR", "EXPERIMENT", "ONNX_FILE"):      # main() below sets them: restored after
        monkeypatch.setattr(inference, name, getattr(inference, name))

    def edit(**values):             # as if the file's constants block were edited so
        monkeypatch.setattr(configurator, "_DEFAULTS", {id(ns): (ns, base | values)})
    edit(MODEL=teacher, ONNX_FILE="model_quantized.onnx")          # a torch folder: refused if it is read
    with pytest.raises(UsageError, match=r"^--onnx_file=model_quantized.onnx picks a file of an ONNX export, but "):
        inference.predict(["a great film"])
    edit(MODEL=teacher)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # a model set (as MODEL) is no default to warn about
        assert inference.predict(["a great film"]) == inference.predict(["a great film"], model=teacher)
    edit(MODEL="", OUTPUT_DIR=str(outputs), EXPERIMENT="tiny")
    with pytest.warns(UserWarning, match=rf"^predict\(\): no model given, so {outputs}/tiny/students/\S+ \(the best "
                                         r"distilled student of experiment tiny(; its labels-only baseline did as well on "
                                         r"validation \(1\.0000 against 1\.0000\): --model=\S+ takes it)?; validation "
                                         r"accuracy 1\.0000\); pass "):
        inference.predict(["a great film"])
    # main() sets the module's constants to its command line; a later predict() takes them as edited, not so
    inference.main([f"--model={teacher}", "a great film"])
    assert inference.MODEL == teacher
    with pytest.warns(UserWarning, match=r"^predict\(\): no model given"):
        inference.predict(["a great film"])


def test_a_torch_model_where_torch_is_missing_is_one_line(outputs, monkeypatch, tmp_path):
    # a deploy machine with onnxruntime alone: the torch folder gave ModuleNotFoundError's traceback
    import shutil
    from inference import predict
    from configurator import UsageError
    folder = tmp_path / "cut"                              # not exported (other tests export the shared one)
    shutil.copytree(Path(outputs) / "tiny" / "students" / "cut", folder, ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setitem(sys.modules, "torch", None)        # `import torch` fails as where it is not installed
    with pytest.raises(UsageError, match=rf"^{folder} is a torch model and torch is not installed here; run its ONNX "
                                         rf"export instead: python export.py --model={folder} where torch is, then "
                                         rf"--model={folder / 'onnx'}$"):
        predict(["a great film"], model=str(folder))


def test_without_torch_the_default_model_runs_its_onnx_export(outputs, tmp_path, monkeypatch):
    # a deploy machine with onnxruntime alone: `inference.py "text"` refused the default model beside its export
    import shutil

    import export
    import inference
    out = tmp_path / "out"
    shutil.copytree(Path(outputs) / "tiny", out / "tiny")
    folder = inference.default_model(str(out))
    export.main([f"--output_dir={out}", "--experiment=tiny", f"--model={folder}"])     # kept if exported already
    monkeypatch.setitem(sys.modules, "torch", None)        # `import torch` fails as where it is not installed
    r = run(f"--output_dir={out}", "a great film")
    assert r.returncode == 0 and f"note: torch is not installed here: {folder}'s ONNX export runs instead" in r.stderr
    assert f"model: {folder / 'onnx'} (ONNX Runtime, model.onnx; exported from a model of validation accuracy" in r.stderr
    assert lines(r)[0].endswith("a great film") and "the default: the best distilled student" in r.stderr
    monkeypatch.undo()
    assert inference.runnable(folder) == folder                                        # with torch: the model itself


def test_a_hub_classifier_is_read_from_the_hub_cache(outputs, tmp_path, monkeypatch, capsys):
    # --model=<hub id> said "model folder ... does not exist" even with the model in the cache
    import shutil
    from huggingface_hub import constants
    from inference import predict
    from configurator import UsageError
    snapshot = tmp_path / "hub" / "models--me--tiny-sentiment" / "snapshots" / ("0" * 40)
    shutil.copytree(Path(outputs) / "tiny" / "students" / "cut", snapshot, ignore=shutil.ignore_patterns("onnx"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert predict(["a great film"], model="me/tiny-sentiment") == predict(["a great film"], model=str(snapshot))
    with pytest.raises(UsageError, match=r"^--model=me/nothing: no such folder here, and not a hub model at hand "
                                         r"\(LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder"):
        predict(["a great film"], model="me/nothing")
    # the offline flag left unset on a machine without network: turned on, with a note, not retried for minutes
    import socket
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    from configurator import PROXY_VARIABLES
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))])
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError(101, "Network is unreachable")))
    capsys.readouterr()
    assert predict(["a great film"], model="me/tiny-sentiment") == predict(["a great film"], model=str(snapshot))
    assert capsys.readouterr().err == ("note: the Hugging Face hub is not reachable (huggingface.co: Network is unreachable): "
                                       "--model=me/tiny-sentiment from the local cache (HF_HUB_OFFLINE=1 skips this check)\n")


def test_a_classifier_trained_elsewhere_reads_no_more_tokens_than_its_positions(tmp_path):
    # no sentiment_kd record, a tokenizer without a length limit (1e30) and 24 position embeddings: a long text is cut
    # to 24 tokens (it indexed past them before), the limit RoBERTa-style models count after their padding index
    from transformers import BertConfig, BertForSequenceClassification

    from inference import predict
    from models import build_tiny, default_max_length, position_limit
    model, tok = build_tiny("bert")
    small = BertForSequenceClassification(BertConfig(**(model.config.to_dict() | {"max_position_embeddings": 24})))
    small.save_pretrained(tmp_path / "elsewhere")
    tok.save_pretrained(tmp_path / "elsewhere")
    assert tok.model_max_length > 10**6
    long = " ".join(["great film"] * 100)
    (r,) = predict([long], model=str(tmp_path / "elsewhere"))
    assert r["label"] in ("negative", "positive") and (r,) == tuple(predict([long + " awful"], model=str(tmp_path / "elsewhere")))
    assert default_max_length(10**30, small.config) == 24 and default_max_length(128, small.config) == 24
    assert default_max_length(10**30, None) == 512 == default_max_length(10**30, {"model_type": "bert", "max_position_embeddings": 512})
    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert position_limit({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert position_limit({"model_type": "bert"}) is None
    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 0}) == 513
    assert default_max_length(4096, {"model_type": "bert", "max_position_embeddings": 4096}) == 512   # at most 512


def test_predict_reads_a_model_replaced_in_place_again(outputs, tmp_path):
    # predict() keeps a loaded model for the next call, but one retrained in place (--overwrite=true) is read afresh
    import shutil

    from inference import predict
    texts = ["a great film", "awful", "not bad at all"]
    folder = tmp_path / "model"
    shutil.copytree(f"{outputs}/tiny/students/cut", folder, copy_function=shutil.copy)
    before = predict(texts, model=str(folder))
    assert predict(texts, model=str(folder)) == before
    shutil.rmtree(folder)
    shutil.copytree(f"{outputs}/tiny/teacher", folder, copy_function=shutil.copy)
    after, teacher = predict(texts, model=str(folder)), predict(texts, model=f"{outputs}/tiny/teacher")
    assert after == teacher and after != before


def test_a_table_file_gives_its_text_column(outputs, tmp_path, capsys, monkeypatch):
    import pandas as pd

    import inference
    from configurator import UsageError
    table = tmp_path / "new.csv"
    pd.DataFrame({"id": [1, 2], "review": ["a great film", "Two\n\nparagraphs: the worst"]}).to_csv(table, index=False)
    texts, rows = inference.gather_texts([], str(table), "review")
    assert texts == ["a great film", "Two\n\nparagraphs: the worst"] and list(rows["id"]) == [1, 2]
    with pytest.raises(UsageError, match=r"new.csv: no column 'text' \(found id, review\); set --text_column"):
        inference.gather_texts([], str(table), "text")
    with pytest.raises(UsageError, match=r"^--file=.*old.csv: no such file or folder[^;]*; give a CSV/TSV/JSON Lines/"
                                         r"parquet file, or a text file \(one text per line\)$"):   # a folder is none
        inference.gather_texts([], str(tmp_path / "old.csv"), "review")
    with pytest.raises(UsageError, match=rf"^--file={tmp_path} is a folder; give a file in it: a CSV/TSV/JSON Lines/"
                                         r"parquet table, or a text file \(one text per line\)$"):
        inference.gather_texts([], str(tmp_path), "review")
    with pytest.raises(UsageError, match=r"new.csv: column 'id' holds numbers, not texts \(1 at data row 1, a header "
                                         r"line not counted\); set --text_column to the column that holds the texts "
                                         r"\(found id, review\)$"):    # the id column named as the texts'
        inference.gather_texts([], str(table), "id")
    pd.DataFrame({"review": ["ok", None]}).to_csv(tmp_path / "gap.csv", index=False)   # rows stay the table's: refused
    with pytest.raises(UsageError, match=r"gap.csv: column 'review' has 1 empty or missing text\(s\) \(first at data row 2"):
        inference.gather_texts([], str(tmp_path / "gap.csv"), "review")
    # literal escapes come as written, and predict decodes them once, as training did (\u005c is a backslash)
    pd.DataFrame({"review": ["awful \\u2019", "odd \\u005cu2019"]}).to_parquet(tmp_path / "new.parquet")
    texts, _ = inference.gather_texts(["more"], str(tmp_path / "new.parquet"), "review")
    assert texts == ["awful \\u2019", "odd \\u005cu2019", "more"]
    own = {"run_config": {"data": str(tmp_path / "new.parquet")}}
    assert inference.as_trained(texts, own) == ["awful \u2019", "odd \\u2019", "more"]
    (tmp_path / "notes.txt").write_text("review\nplain line\n")                     # a text file: every line a text
    assert inference.gather_texts([], str(tmp_path / "notes.txt"), "review") == (["review", "plain line"], None)
    capsys.readouterr()
    monkeypatch.setattr(inference, "TEXT_COLUMN", "review")              # asked for: said it does not apply
    inference.gather_texts([], str(tmp_path / "notes.txt"), "review")
    assert f"note: --text_column=review is for tables (.csv, .tsv, .jsonl, .json, .parquet); every line of " \
        f"{tmp_path / 'notes.txt'} is a text" in capsys.readouterr().err
    monkeypatch.undo()
    out = tmp_path / "predicted.csv"
    results = inference.main([f"--output_dir={outputs}", f"--file={table}", "--text_column=review", "--json", f"--output={out}"])
    assert len(results) == 2
    assert [p["text"] for p in json.loads(capsys.readouterr().out)["predictions"]] == ["a great film", "Two\n\nparagraphs: the worst"]
    # --output: the table's own columns (its ids) beside the predictions, in its order; never over a file
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "review", "label", "score", "p_negative", "p_positive"]
    assert list(written["id"]) == [1, 2] and list(written["label"]) == [r["label"] for r in results]
    assert out.read_text().splitlines()[1].startswith("1,a great film,")            # as written: 1, not 1.0
    assert list(written["p_positive"]) == [r["probs"]["positive"] for r in results]
    inference.main([f"--output_dir={outputs}", f"--file={table}", "--text_column=review", f"--output={tmp_path / 'more.csv'}", "more"])
    assert [row[0] for row in csv.reader(open(tmp_path / "more.csv"))] == ["id", "1", "2", ""]   # not 1.0, 2.0
    with pytest.raises(UsageError, match=rf"^--output={out} exists; remove it or give another path"):
        inference.main([f"--output_dir={outputs}", f"--file={table}", "--text_column=review", f"--output={out}"])
    # the suffix says the format: each reads back as the CSV's table; one it does not know is refused before predicting
    for suffix, read in ((".tsv", lambda p: pd.read_csv(p, sep="\t")), (".jsonl", lambda p: pd.read_json(p, lines=True)),
                         (".json", pd.read_json), (".parquet", pd.read_parquet)):
        inference.main([f"--output_dir={outputs}", f"--file={table}", "--text_column=review", f"--output={out.with_suffix(suffix)}"])
        pd.testing.assert_frame_equal(read(out.with_suffix(suffix)), written, check_dtype=False)
    assert json.loads(out.with_suffix(".json").read_text())[0]["review"] == "a great film"          # rows, not columns
    monkeypatch.setattr(inference, "predict", None)
    with pytest.raises(UsageError, match=r"^--output=.*predicted.txt: its suffix says no format written here; end it in "
                                         r"\.csv, \.tsv, \.jsonl, \.json, \.parquet$"):
        inference.main([f"--output_dir={outputs}", f"--file={table}", "--text_column=review", f"--output={out.with_suffix('.txt')}"])
    monkeypatch.undo()
    # without --text_column, the column the model was trained on (this one: IMDb's text; a tweets model: its own)
    with pytest.raises(UsageError, match=r"new.csv: no column 'text' \(found id, review\)"):
        inference.main([f"--output_dir={outputs}", f"--file={table}"])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"sentiment_kd": {"run_config": {"text_column": "tweet"}}}))
    assert inference.trained_setting(tmp_path / "m", "text_column") == "tweet"
    assert inference.trained_setting(tmp_path / "m", "label_column") == ""
    monkeypatch.setattr(inference, "trained_setting",            # a model trained on a review column
                        lambda folder, name: "review" if name == "text_column" else "")
    assert len(inference.main([f"--output_dir={outputs}", f"--file={table}"])) == 2


def test_a_reader_that_stops_early_ends_it_quietly(outputs, tmp_path):
    # `inference.py --json --file big.txt | head -1`: no traceback when the pipe closes
    f = tmp_path / "many.txt"
    f.write_text("".join(f"review {i}: a great film\n" for i in range(3000)))
    p = subprocess.Popen([sys.executable, str(ROOT / "inference.py"), f"--output_dir={outputs}", "--json", "--file", str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"{"
    p.stdout.close()                                  # the reader goes away with most of the output unread
    err = p.stderr.read().decode()
    assert p.wait(timeout=180) == 1 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_config_names_the_experiment_of_the_default_model(outputs, tmp_path, capsys):
    # --config configs/mine.toml took another experiment's model, the config's experiment dropped without a word
    import inference
    from configurator import UsageError
    config = tmp_path / "mine.toml"
    config.write_text(f'experiment = "mine"\noutput_dir = "{outputs}"\nmax_length = 64\n')
    with pytest.raises(UsageError, match=r"^no saved model under \S+/mine/; .*; experiments with saved models: tiny$"):
        inference.main([f"--config={config}", "I loved it"])
    config.write_text(f'experiment = "tiny"\noutput_dir = "{outputs}"\n')
    capsys.readouterr()
    assert len(inference.main([f"--config={config}", "I loved it"])) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"model: {outputs}/tiny/students/") and "student of experiment tiny" in err, err
    # a path for an experiment (as the other scripts refuse it): said so, not "no saved model under outputs/outputs/"
    with pytest.raises(UsageError, match=r"^--experiment='outputs/tiny': must be one folder name under --output_dir "):
        inference.main(["--experiment=outputs/tiny", "I loved it"])


def test_a_student_of_a_teacher_retrained_since_is_named_so(outputs, tmp_path, capsys, monkeypatch):
    import shutil

    import inference
    shutil.copytree(f"{outputs}/tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns(".lock", "checkpoints", "cache"))
    r = run(f"--output_dir={tmp_path}", "I loved it")
    assert r.returncode == 0 and "retrained since" not in r.stderr
    metrics = json.loads((tmp_path / "tiny" / "teacher" / "metrics.json").read_text())      # the teacher trained again
    (tmp_path / "tiny" / "teacher" / "metrics.json").write_text(json.dumps(metrics | {"train_time_s": metrics["train_time_s"] + 1000}))
    r = run(f"--output_dir={tmp_path}", "I loved it")
    assert r.returncode == 0 and "WARNING: it learned from an earlier training of the teacher beside it (retrained since" in r.stderr
    # and its ONNX export (the model line reads the folder it was exported from)
    export = tmp_path / "tiny" / "students" / "cut" / "onnx"                # (the copy may hold a real export)
    export.mkdir(exist_ok=True)
    for f in ("model.onnx", "config.json", "tokenizer.json"):
        (export / f).write_text("{}")
    monkeypatch.setattr(inference, "MODEL", str(export))
    inference.print_model_line(export)
    assert "retrained since" in capsys.readouterr().err
    # a student of another experiment's teacher (--teacher_dir), that teacher retrained since: said too, naming it
    shutil.copytree(f"{outputs}/tiny", tmp_path / "mine", ignore=shutil.ignore_patterns(".lock", "checkpoints", "cache"))
    shutil.rmtree(tmp_path / "mine" / "teacher")
    shutil.copytree(f"{outputs}/tiny/teacher", tmp_path / "other" / "teacher")
    student = tmp_path / "mine" / "students" / "cut"
    config = json.loads((student / "config.json").read_text())
    config["sentiment_kd"]["run_config"]["teacher_dir"] = str(tmp_path / "other" / "teacher")
    (student / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(inference, "MODEL", str(student))
    inference.print_model_line(student)
    assert "retrained since" not in capsys.readouterr().err
    (tmp_path / "other" / "teacher" / "metrics.json").write_text(json.dumps(metrics | {"train_time_s": 1.5}))
    inference.print_model_line(student)
    assert f"WARNING: it learned from an earlier training of its teacher {tmp_path / 'other' / 'teacher'} (retrained " \
        "since; evaluate_models.py refuses it until it is retrained)" in capsys.readouterr().err
    # the path as a run in the checkout wrote it (relative to it), read from another working folder: found there too
    import os
    from conftest import ROOT
    relative = os.path.relpath(tmp_path / "other" / "teacher", ROOT)
    config["sentiment_kd"]["run_config"]["teacher_dir"] = relative
    (student / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path / "mine")
    inference.print_model_line(student)
    assert f"WARNING: it learned from an earlier training of its teacher {relative} (retrained" in capsys.readouterr().err


def test_output_columns_taken_twice_are_refused_before_predicting(outputs, tmp_path, monkeypatch):
    import pandas as pd

    import inference
    table = tmp_path / "scored.csv"                  # a table scored before: its label and predicted_label columns
    pd.DataFrame({"text": ["a great film", "awful"], "label": [1, 0], "predicted_label": ["positive", "negative"]}).to_csv(table, index=False)
    monkeypatch.setattr(inference, "predict", lambda *a, **k: pytest.fail("predicted before the columns were checked"))
    r = run(f"--output_dir={outputs}", f"--file={table}", f"--output={tmp_path / 'out.csv'}")
    assert r.returncode == 2 and "--file's table has columns 'label' and 'predicted_label', which the predictions would " \
        "be written over; rename one of them" in r.stderr
    assert not (tmp_path / "out.csv").exists()
    assert inference.output_columns(None, ["neg", "neutral", "pos"]) == ["label", "score", "p_neg", "p_neutral", "p_pos"]
    # a table with the labels column the model was trained on (a tweets model's `sentiment`): a plain `label` beside
    # it would read as the truth
    mine = pd.DataFrame({"tweet": ["so happy"], "sentiment": ["positive"]})
    assert inference.output_columns(mine, ["neg", "pos"], "sentiment") == ["predicted_label", "predicted_score",
                                                                           "predicted_p_neg", "predicted_p_pos"]
    assert inference.output_columns(mine, ["neg", "pos"], "label") == ["label", "score", "p_neg", "p_pos"]


def test_a_labelled_table_keeps_its_labels_and_a_bom_only_cell_is_refused(outputs, tmp_path):
    import pandas as pd

    import inference
    from configurator import UsageError
    table = tmp_path / "labelled.csv"
    pd.DataFrame({"text": ["a great film", "awful", "loved it"], "label": [1, 0, 1]}).to_csv(table, index=False)
    r = run(f"--output_dir={outputs}", f"--file={table}", f"--output={tmp_path / 'out.csv'}")
    assert r.returncode == 0 and "note: the table has a column 'label', kept as it is; the predictions are written as " \
        "predicted_label, predicted_score, predicted_p_negative, predicted_p_positive" in r.stderr
    written = pd.read_csv(tmp_path / "out.csv")
    assert "loved it" not in r.stdout and "wrote 3 predictions to" in r.stderr      # in the file, not printed as well
    assert list(written["label"]) == [1, 0, 1] and set(written["predicted_label"]) <= {"negative", "positive"}
    assert list(written.columns) == ["text", "label", "predicted_label", "predicted_score", "predicted_p_negative", "predicted_p_positive"]
    # a cell holding only a byte-order mark is an empty text, refused naming its row (it was kept, then dropped as
    # blank while the table kept its row: the predictions below it shifted onto the wrong rows)
    (tmp_path / "bom.csv").write_text("text\na great film\n\ufeff\nawful\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"bom.csv: column 'text' has 1 empty or missing text\(s\) \(first at data row 2"):
        inference.gather_texts([], str(tmp_path / "bom.csv"), "text")
