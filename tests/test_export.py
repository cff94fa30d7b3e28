"""export.py / onnx_runtime.py: tiny BERT and RoBERTa students exported to ONNX, run by ONNX Runtime
without torch, inference.py on an ONNX folder, and the onnx rows of evaluate_models.py."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tiny_args

pytest.importorskip("onnxruntime")

# the first is longer than the tiny models' 64 tokens, with a tail unlike its head: head+tail truncation matters
TEXTS = ["a great film, the best movie with great acting and a good plot " * 3 + "worst awful boring waste " * 8,
         "bad", "worst awful boring waste",
         "the story was not good but the acting was excellent"]


@pytest.fixture(scope="module")
def exported(tiny_experiment):
    """{name: model folder} of the tiny cut (BERT) and roberta students, exported by the command."""
    import export
    root = tiny_experiment / "tiny"
    folders = {n: root / "students" / n for n in ("cut", "roberta")}
    for folder in folders.values():
        export.main([f"--output_dir={tiny_experiment}", "--experiment=tiny", f"--model={folder}"])
    return folders


def torch_logits(folder, texts):
    from data_utils import read_json
    from models import batched_logits, load_classifier, truncation_settings
    model, tok = load_classifier(str(folder))
    kd = read_json(folder / "config.json").get("sentiment_kd", {})
    return batched_logits(model.eval(), tok, texts, truncation_settings(kd, tok), 3, "cpu")


@pytest.mark.parametrize("name", ["cut", "roberta"])
def test_onnx_logits_equal_torch_and_int8_is_smaller(exported, name):
    from onnx_runtime import FP32_FILE, INT8_FILE, onnx_logits
    onnx = exported[name] / "onnx"
    ref = torch_logits(exported[name], TEXTS)
    # the tokenization (head+tail truncation, special tokens, padding) and the graph, both without torch;
    # the tiny random models' logits differ little between texts, so the tolerance is far below that spread
    assert np.ptp(ref[:, 0]) > 1e-5
    np.testing.assert_allclose(onnx_logits(onnx, TEXTS, batch_size=3), ref, atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(onnx_logits(onnx, TEXTS, batch_size=1), ref, atol=1e-6, rtol=1e-4)
    int8 = onnx_logits(onnx, TEXTS, file=INT8_FILE)
    assert np.abs(int8 - ref).max() < 0.1
    assert (onnx / INT8_FILE).stat().st_size < 0.6 * (onnx / FP32_FILE).stat().st_size


def test_an_export_is_checked_against_torch(exported, tmp_path, monkeypatch):
    import onnx_runtime
    from configurator import UsageError
    assert 0 <= json.loads((exported["cut"] / "onnx" / "export.json").read_text())["max_abs_logit_diff"] < 1e-4
    diff = json.loads((exported["cut"] / "onnx" / "export.json").read_text())["max_abs_logit_diff"]
    assert f"its fp32 logits within {diff:.1e} of the torch model's (of 0.001 allowed)" in \
        (exported["cut"].parent.parent / "logs" / "export.log").read_text()           # said, not only recorded
    copy = tmp_path / "cut"
    shutil.copytree(exported["cut"], copy, ignore=shutil.ignore_patterns("onnx"))
    real = onnx_runtime.onnx_logits
    monkeypatch.setattr(onnx_runtime, "onnx_logits", lambda *a, **k: real(*a, **k) + 0.01)    # a graph that is off
    with pytest.raises(UsageError, match=r"its ONNX export gives logits 0.01 away from the torch model's"):
        onnx_runtime.export_model(copy, quantize=False)
    assert sorted(p.name for p in copy.iterdir() if "onnx" in p.name) == []               # nothing left behind
    monkeypatch.setattr(onnx_runtime, "onnx_logits", lambda *a, **k: real(*a, **k) + np.nan)   # a graph giving NaN
    with pytest.raises(UsageError, match=r"its ONNX export gives logits nan away from the torch model's"):
        onnx_runtime.export_model(copy, quantize=False)
    assert sorted(p.name for p in copy.iterdir() if "onnx" in p.name) == []


def test_export_keeps_a_finished_export(exported):
    from onnx_runtime import export_model
    f = exported["cut"] / "onnx" / "model.onnx"
    before = f.stat().st_mtime_ns
    export_model(exported["cut"])
    assert f.stat().st_mtime_ns == before


@pytest.mark.parametrize("name", ["cut", "roberta"])
def test_the_onnx_cards_plain_onnxruntime_code_predicts_as_inference_does(exported, name, capsys, monkeypatch):
    import inference
    import onnxruntime as ort
    real = ort.InferenceSession

    def gpu_build(path, *args, providers=None, **kw):      # as onnxruntime-gpu since 1.9: no session without providers
        if providers is None:
            raise ValueError("This ORT build has ['CUDAExecutionProvider', 'CPUExecutionProvider'] enabled; set providers")
        return real(path, *args, providers=providers, **kw)
    monkeypatch.setattr(ort, "InferenceSession", gpu_build)
    card = (exported[name] / "onnx" / "README.md").read_text()
    code = card.split("Without this repository (onnxruntime and tokenizers only):\n\n```python\n", 1)[1].split("\n```", 1)[0]
    assert not [line for line in code.splitlines() if line.startswith(("import", "from")) and ("torch" in line or "transformers" in line or "inference" in line)]
    space = {}
    exec(code, space)                               # the block as a user pastes it: it prints one prediction
    assert capsys.readouterr().out.startswith("('")
    texts = TEXTS + ["a great film<br /><br />the best acting"]      # the same tokens as inference.py, the long
    ours = inference.predict(texts, model=str(exported[name] / "onnx"))     # one cut as trained, IMDb's breaks as spaces
    for text, r in zip(texts, ours):
        label, score = space["classify"](text)
        assert label == r["label"] and score == pytest.approx(r["score"], abs=1e-4)     # predict rounds to 4 places
    assert_classifies_as_inference(space, exported[name] / "onnx", texts)
    from onnx_runtime import OnnxTokenizer
    assert space["token_ids"](TEXTS[0]) == OnnxTokenizer(exported[name] / "onnx").encode(TEXTS[:1])[0]   # head+tail
    assert len(space["token_ids"](TEXTS[0])) == 64                       # a long text is cut to the trained length
    # the session line names the int8 file beside it: swapped in as it says, the block runs the int8 model
    assert '"CPUExecutionProvider"])  # int8: "model_quantized.onnx"' in code
    int8 = {}
    exec(code.replace('f"{folder}/model.onnx"', 'f"{folder}/model_quantized.onnx"'), int8)
    assert int8["session"]._model_path.endswith("model_quantized.onnx") and int8["classify"](TEXTS[0])[0] in int8["labels"]


def assert_classifies_as_inference(space: dict, folder, texts: list[str]) -> None:
    """The snippet's classify(text) gives the label and probability of inference.py's path (texts prepared as in
    training, then ONNX Runtime), to 1e-6: tighter than the tiny models' spread between a prepared and a raw text."""
    from data_utils import as_trained, read_json
    from onnx_runtime import onnx_logits
    kd = read_json(folder / "config.json")["sentiment_kd"]
    prepared, raw = (onnx_logits(folder, t, batch_size=1) for t in (as_trained(texts, kd), texts))
    assert np.abs(prepared - raw).max(axis=1)[-1] > 1e-5                # the last text needs preparing: it shows
    probs = np.exp(prepared - prepared.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for text, p in zip(texts, probs):
        label, score = space["classify"](text)
        assert (label, score) == (space["labels"][int(p.argmax())], pytest.approx(float(p.max()), abs=1e-6))


def test_the_plain_onnxruntime_code_prepares_own_data_texts_as_training_did(exported, tmp_path):
    # a model of one's own data (literal \uXXXX escapes decoded in training): the snippet decodes them as inference.py does
    import inference
    from model_card import plain_onnx_lines
    mine = shutil.copytree(exported["cut"] / "onnx", tmp_path / "onnx")
    config = json.loads((mine / "config.json").read_text())
    config["sentiment_kd"]["run_config"]["data"] = "mine.csv"
    (mine / "config.json").write_text(json.dumps(config))
    lines = plain_onnx_lines(mine)
    space = {}
    exec("\n".join(lines[lines.index("```python") + 1:lines.index("```", lines.index("```python"))]), space)
    texts = ["bad", r"worst \ud83d\ude02 awful boring", r"a great film\u002c the best acting"]
    assert space["prepare"](texts[1]) == "worst \U0001f602 awful boring"
    for text, r in zip(texts, inference.predict(texts, model=str(mine))):
        assert space["classify"](text)[0] == r["label"]
    assert_classifies_as_inference(space, mine, texts)
    # a head as long as the whole budget (an older record): the block cuts as the runtime does, to the trained length
    from onnx_runtime import OnnxTokenizer
    config["sentiment_kd"]["head_tokens"] = 63
    (mine / "config.json").write_text(json.dumps(config))
    lines, space = plain_onnx_lines(mine), {}
    exec("\n".join(lines[lines.index("```python") + 1:lines.index("```", lines.index("```python"))]), space)
    assert space["token_ids"](TEXTS[0]) == OnnxTokenizer(mine).encode(TEXTS[:1])[0] and len(space["token_ids"](TEXTS[0])) == 64
    assert plain_onnx_lines(tmp_path) == []                              # no export there: no block


def test_models_picks_the_experiments_models_to_export(exported, tiny_experiment, monkeypatch):
    import export
    from configurator import UsageError
    done = []
    monkeypatch.setattr(export, "export_model", lambda folder, *a: done.append(folder.name) or folder)
    export.main([f"--output_dir={tiny_experiment}", "--experiment=tiny", "--models=roberta,cut"])
    assert done == ["cut", "roberta"]                          # in the experiment's order, nothing else
    with pytest.raises(UsageError, match=r"--models: no finished model 'L9' in .*tiny; finished: teacher, cut, "):
        export.main([f"--output_dir={tiny_experiment}", "--experiment=tiny", "--models=L9"])
    with pytest.raises(UsageError, match=r"--model=.* and --models=cut: give one folder with --model, or names"):
        export.main([f"--model={exported['cut']}", "--models=cut"])


def test_one_model_exports_under_its_own_experiment(exported, tiny_experiment, tmp_path, monkeypatch):
    """--model alone: the log and the lock are its experiment's (evaluate_models.py exports into the same
    folders), not those of the default experiment under the current folder."""
    import export
    monkeypatch.chdir(tmp_path)
    log = tiny_experiment / "tiny" / "logs" / "export.log"
    before = log.read_text()
    (exported["cut"] / "onnx.partial").mkdir()        # an --overwrite export stopped midway: not left in the folder
    (exported["cut"] / "onnx.partial" / "model.onnx").write_bytes(b"half")
    assert export.main([f"--model={exported['cut']}"]) == [exported["cut"] / "onnx"]
    new = log.read_text()[len(before):]
    assert "'experiment': 'tiny'" in new and f"kept {exported['cut'] / 'onnx'}" in new, new
    assert not (exported["cut"] / "onnx.partial").exists() and "left by an export that was stopped" in new
    assert not (tmp_path / "outputs").exists()      # no outputs/paper/logs/export.log, no outputs/paper/.lock
    from configurator import UsageError
    with pytest.raises(UsageError) as e:           # a typo: the models of the experiment it points into
        export.main([f"--model={exported['cut'].parent / 'cutt'}"])
    assert f"no such folder; finished models in {tiny_experiment / 'tiny'}: " in str(e.value) and \
        str(exported["cut"]) in str(e.value)
    for folder in (exported["cut"].parent, exported["cut"].parent.parent):     # students/, or the experiment itself
        with pytest.raises(UsageError, match=rf"not a finished model folder .*; finished models in {tiny_experiment / 'tiny'}: "):
            export.main([f"--model={folder}"])
    with pytest.raises(UsageError, match=rf"not a finished model folder .*; finished models in {tiny_experiment / 'tiny'}: "):
        export.main([f"--model={tiny_experiment / 'tiny' / 'logs'}"])        # a folder of the experiment's, no model
    monkeypatch.chdir(tiny_experiment / "tiny" / "logs")                    # typed relative: listed relative
    with pytest.raises(UsageError, match=r"not a finished model folder .*; finished models in \.\.: \.\./teacher, "
                                         r"\.\./students/cut, "):
        export.main(["--model=."])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=rf"^--model {exported['cut'] / 'onnx'} is already an ONNX export, of "
                                         rf"{exported['cut']}; --model={exported['cut']} --overwrite=true exports that "
                                         r"model again$"):
        export.main([f"--model={exported['cut'] / 'onnx'}"])
    # no flag: the default experiment (paper) has nothing; the ones that do are named, with how to pick one
    with pytest.raises(UsageError, match=rf"^no finished model under {tiny_experiment}/paper/; train first "
                                         r"\(run_experiment.sh\), or name one of the experiments with finished models "
                                         r"\(tiny\) with --config=configs/<it>.toml or --experiment=<it>, or one model "):
        export.main([f"--output_dir={tiny_experiment}"])


def test_excluding_every_quantizable_operator_is_refused(exported, tmp_path, monkeypatch):
    import export
    from configurator import UsageError
    monkeypatch.chdir(tmp_path)               # were it not refused, nothing lands in the checkout
    with pytest.raises(UsageError, match="--quantize_exclude=Gather,MatMul leaves no operator to quantize"):
        export.main([f"--model={exported['cut']}", "--quantize_exclude=Gather,MatMul", "--overwrite=true"])
    with pytest.raises(UsageError, match="^--quantize_exclude: 'Gathr' is no ONNX operator type"):
        export.main([f"--model={exported['cut']}", "--quantize_exclude=Gathr", "--overwrite=true"])
    # the export there was made without exclusions (its export.json): kept, it would pass for one made with them
    made = json.loads((exported["cut"] / "onnx" / "export.json").read_text())
    assert made == {"quantize": True, "quantize_exclude": [], "per_channel": True, "reduce_range": True} | \
        {"max_abs_logit_diff": made["max_abs_logit_diff"]}
    before = (exported["cut"] / "onnx" / "model_quantized.onnx").stat().st_mtime_ns
    with pytest.raises(UsageError, match=r"onnx was exported with quantize_exclude = none, now Gather; --overwrite=true"):
        export.main([f"--model={exported['cut']}", "--quantize_exclude=Gather"])
    with pytest.raises(UsageError, match=r"onnx was exported with per_channel = true, now false; --overwrite=true"):
        export.main([f"--model={exported['cut']}", "--quantize_per_channel=false"])
    assert (exported["cut"] / "onnx" / "model_quantized.onnx").stat().st_mtime_ns == before
    older = shutil.copytree(exported["cut"], tmp_path / "older")       # an export from before export.json: per tensor
    (older / "onnx" / "export.json").unlink()
    from onnx_runtime import export_model
    with pytest.raises(UsageError, match=r"onnx was exported with per_channel = false, now true; --overwrite=true"):
        export_model(older)
    # a scale per output channel of each int8 matrix (the embedding tables, looked up: one per table)
    import onnx
    graph = onnx.load(str(exported["cut"] / "onnx" / "model_quantized.onnx")).graph
    scales = {t.name: list(t.dims) for t in graph.initializer if t.name.endswith("_scale") and "embeddings" not in t.name}
    assert len(scales) >= 6 and all(dims and dims[0] > 1 for dims in scales.values()), scales
    from onnx_runtime import quantize_int8
    with pytest.raises(UsageError, match="leaves no operator of .* to quantize"):   # what the graph has, whatever it has
        quantize_int8(exported["cut"] / "onnx" / "model.onnx", tmp_path / "int8.onnx", ["MatMul", "Gather", "Attention"])
    assert not (tmp_path / "int8.onnx").exists()


def test_onnx_folder_without_id2label_takes_the_default_names(exported, tmp_path):
    """transformers leaves a 2-class id2label out of config.json when it is LABEL_0, LABEL_1 (a user's data
    with those label names): the ONNX path reads the same default."""
    import shutil
    from inference import predict
    folder = tmp_path / "onnx"
    shutil.copytree(exported["cut"] / "onnx", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in ("id2label", "label2id")}))
    out = predict(["a great film", "awful"], model=str(folder))
    assert [sorted(o["probs"]) for o in out] == [["LABEL_0", "LABEL_1"]] * 2


def test_predict_on_an_onnx_folder_starts_its_session_once(exported):
    """predict() in a loop pays ONNX Runtime's start-up once; a re-export (a newer file) is read afresh."""
    import os
    from inference import predict
    from onnx_runtime import runner
    onnx = exported["cut"] / "onnx"
    runner.cache_clear()
    first = [predict(["a great film"], model=str(onnx)) for _ in range(3)]
    assert runner.cache_info().misses == 1 and runner.cache_info().hits == 2 and first[0] == first[2]
    t = (onnx / "model.onnx").stat().st_mtime_ns
    os.utime(onnx / "model.onnx", ns=(t + 10**9, t + 10**9))
    assert predict(["a great film"], model=str(onnx)) == first[0] and runner.cache_info().misses == 2


def test_an_onnx_folder_of_links_reads_its_own_files(exported, tmp_path):
    """A folder whose files link elsewhere (a hub cache snapshot links into blobs/): read as the folder says."""
    from inference import predict
    onnx, blobs, folder = exported["cut"] / "onnx", tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir(), folder.mkdir()
    for f in onnx.iterdir():
        (blobs / f"blob-{f.name}").write_bytes(f.read_bytes())
        (folder / f.name).symlink_to(blobs / f"blob-{f.name}")
    assert predict(["a great film"], model=str(folder)) == predict(["a great film"], model=str(onnx))


def test_three_classes_through_onnx(tmp_path):
    # any number of classes: the ONNX logits have the model's width and equal torch's
    from models import build_tiny
    from onnx_runtime import export_model, onnx_logits
    model, tok = build_tiny("bert", seed=1, labels=("negative", "neutral", "positive"))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    out = export_model(tmp_path, quantize=False)
    logits = onnx_logits(out, TEXTS, batch_size=2)
    assert logits.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(logits, torch_logits(tmp_path, TEXTS), atol=1e-6, rtol=1e-4)


def run_inference(*args):
    """inference.main in a fresh interpreter; returns (predictions, modules torch/transformers imported)."""
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import inference; "
            "r = inference.main(sys.argv[2:]); "
            "print(json.dumps([r, 'torch' in sys.modules, 'transformers' in sys.modules]))")
    p = subprocess.run([sys.executable, "-c", code, str(ROOT), *args], capture_output=True, timeout=180, cwd=ROOT)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def test_inference_on_onnx_folder_same_output_without_torch(exported, tiny_experiment, tmp_path):
    import shutil
    folder = exported["cut"]
    onnx, onnx_torch, onnx_tf = run_inference(f"--model={folder / 'onnx'}", *TEXTS)
    ref, ref_torch, _ = run_inference(f"--model={folder}", *TEXTS)
    assert onnx == ref and ref_torch
    assert not onnx_torch and not onnx_tf
    shipped = shutil.copytree(folder / "onnx", tmp_path / "deploy")        # shipped alone, away from its model folder
    assert run_inference(f"--model={shipped}", *TEXTS)[0] == onnx
    int8, _, _ = run_inference(f"--model={folder / 'onnx'}", "--onnx_file=model_quantized.onnx", *TEXTS)
    assert len(int8) == len(TEXTS) and all(abs(a["score"] - b["score"]) < 0.05 for a, b in zip(int8, ref)
                                           if a["label"] == b["label"])


def test_an_onnx_file_the_folder_lacks_or_a_torch_folder_is_one_line(exported, capsys):
    import inference
    from configurator import UsageError
    folder = exported["cut"]
    with pytest.raises(UsageError, match=rf"^--onnx_file=model_int8.onnx: no such file in {folder / 'onnx'} \(it holds "
                                         r"model.onnx, model_quantized.onnx\)$"):
        inference.predict(TEXTS, model=str(folder / "onnx"), onnx_file="model_int8.onnx")   # a traceback before
    with pytest.raises(UsageError, match=rf"^--onnx_file=model_quantized.onnx picks a file of an ONNX export, but "
                                         rf"{folder} is a torch model folder; pass --model={folder / 'onnx'}"):
        inference.predict(TEXTS, model=str(folder), onnx_file="model_quantized.onnx")     # torch ran, silently
    with pytest.raises(UsageError, match=rf"^--device=cuda: {folder / 'onnx'} is an ONNX export, which runs on the CPU "
                                         rf"here .*; leave --device out, or pass --model={folder} to run the torch model"):
        inference.predict(TEXTS, model=str(folder / "onnx"), device="cuda")               # the CPU ran, silently
    inference.main([f"--model={folder / 'onnx'}", "--onnx_file=model_quantized.onnx", TEXTS[0]])
    accuracy = json.loads((folder / "metrics.json").read_text())["val_accuracy"]
    assert capsys.readouterr().err.strip() == \
        f"model: {folder / 'onnx'} (ONNX Runtime, model_quantized.onnx; exported from a model of validation accuracy {accuracy:.4f})"
    # the .onnx file itself, or a file of a torch folder: the folder is named (it said "does not exist")
    with pytest.raises(UsageError, match=rf"^--model={folder / 'onnx' / 'model_quantized.onnx'} is a file; give its folder: "
                                         rf"--model={folder / 'onnx'} --onnx_file=model_quantized.onnx$"):
        inference.main([f"--model={folder / 'onnx' / 'model_quantized.onnx'}", TEXTS[0]])
    with pytest.raises(UsageError, match=rf"is a file; give its folder: --model={folder}$"):
        inference.predict(TEXTS, model=str(folder / "config.json"))


def test_an_export_made_by_evaluation_has_its_card_at_once(tiny_experiment, tmp_path):
    # a validation run, or one stopped before its test results, otherwise left an onnx/ folder without a card
    import evaluate_models as ev
    folder = shutil.copytree(tiny_experiment / "tiny" / "students" / "cut", tmp_path / "cut",
                             ignore=shutil.ignore_patterns("onnx"))
    ev.onnx_variant(folder, None, "onnx-fp32")
    card = (folder / "onnx" / "README.md").read_text()
    assert f"python inference.py --model {folder / 'onnx'}" in card and "## Test results and speed" in card
    assert "python export.py" not in (folder / "README.md").read_text()         # the model's card: exported already


@pytest.fixture(scope="module")
def onnx_evaluated(exported, tiny_experiment, imdb_parquet, tmp_path_factory):
    """(outputs root, result): a copy of the exported tiny experiment (ONNX rows stay out of the shared one, whose
    later evaluations would measure them again: keep_onnx_rows), evaluated with ONNX rows of cut."""
    import evaluate_models as ev
    out = shutil.copytree(tiny_experiment, tmp_path_factory.mktemp("onnx") / "out")
    return out, ev.main(tiny_args(imdb_parquet, out, "--onnx=true", '--onnx_kinds=["distilled"]', "--quantize=false",
                                  "--models=cut", cache=False))


def test_evaluate_onnx_rows(onnx_evaluated):
    out, result = onnx_evaluated
    cut = out / "tiny" / "students" / "cut"
    rows = {(r["model"], r["precision"]): r for r in result["rows"]}
    assert list(rows) == [("teacher", "fp32"), ("cut", "fp32"), ("cut", "onnx-fp32"), ("cut", "onnx-int8"),
                          ("cut-baseline", "fp32")]      # a distilled student brings its baseline (not an ONNX kind)
    fp32, ort32, ort8 = rows["cut", "fp32"], rows["cut", "onnx-fp32"], rows["cut", "onnx-int8"]
    assert ort32["accuracy"] == fp32["accuracy"] and ort32["agreement"] == fp32["agreement"]
    assert ort8["size_mb"] < ort32["size_mb"]
    assert ort32["size_mb"] == pytest.approx((cut / "onnx" / "model.onnx").stat().st_size / 1e6)
    for r in (ort32, ort8):
        assert 0 < r["latency_p50_ms"] <= r["latency_p95_ms"] and r["throughput"] > 0
    assert "onnxruntime" in result["hardware"] and result["hardware"]["cpu_features"]
    md = (out / "tiny" / "results.md").read_text()
    assert "onnx-int8" in md and "CPU features" in md
    # exported before it was evaluated: its card now has the test figures too, and says how to run that folder
    card, torch_card = (cut / "onnx" / "README.md").read_text(), (cut / "README.md").read_text()
    whose = "## Test results and speed\n\nRows onnx-fp32 / onnx-int8 are this folder's files; fp32, int8 and bf16 are " \
        "the torch model's.\n"
    from model_card import onnx_metadata          # its metadata the model's, tagged onnx (test_model_card)
    assert "| onnx-int8 |" in card and card.split("## How to use")[0] == \
        onnx_metadata(torch_card).split("## How to use")[0].replace("## Test results and speed\n", whose)
    assert f"python inference.py --model {cut / 'onnx'} --onnx_file=model_quantized.onnx" in card
    assert "pipeline(" not in card and "pipeline(" in torch_card and card.endswith(torch_card.split("## Limits")[1])
    assert f"(its ONNX export, for ONNX Runtime without torch: `--model {cut / 'onnx'}`)" in torch_card
    assert "python export.py" not in torch_card                       # exported already: not told to export it
    from huggingface_hub import metadata_load
    card = metadata_load(cut / "README.md")        # the card now holds the test metrics
    tests = [m for r in card["model-index"][0]["results"] if r["dataset"]["split"] == "test" for m in r["metrics"]]
    assert {"name": "Test accuracy", "type": "accuracy", "value": round(fp32["accuracy"], 4)} in tests    # the whole (tiny) test split
    assert "onnx-int8" in (cut / "README.md").read_text()


def test_an_evaluation_without_onnx_keeps_the_onnx_rows_it_found(onnx_evaluated, imdb_parquet, tmp_path):
    # by hand after one with --onnx=true (run_experiment.sh with onnx = true): measured again, recorded as on;
    # --onnx=false drops them (warned)
    import evaluate_models as ev
    out = shutil.copytree(onnx_evaluated[0], tmp_path / "out")
    args = ['--onnx_kinds=["distilled"]', "--quantize=false", "--models=cut"]
    result = ev.main(tiny_args(imdb_parquet, out, *args[1:], cache=False))      # onnx_kinds as that evaluation's too
    assert [r["precision"] for r in result["rows"] if r["model"] == "cut"] == ["fp32", "onnx-fp32", "onnx-int8"]
    assert [r["model"] for r in result["rows"] if r["precision"].startswith("onnx")] == ["cut", "cut"]   # not the others
    assert result["config"]["onnx"] is True and result["config"]["onnx_kinds"] == ["distilled"]
    assert "measuring ONNX Runtime rows too, as the previous evaluation did (of cut); --onnx=false leaves them out" in \
        (out / "tiny" / "logs" / "evaluate.log").read_text()
    result = ev.main(tiny_args(imdb_parquet, out, *args, "--onnx=false", cache=False))
    assert [r["precision"] for r in result["rows"] if r["model"] == "cut"] == ["fp32"]


def test_an_onnx_folder_made_elsewhere_is_cut_at_its_positions_from_the_head(exported, tmp_path):
    # no sentiment_kd record (an export not made here): head truncation, as the torch path does, at the positions the
    # model has (roberta: 66 less its padding index + 1 = 64), not a tokenizer's 512
    from onnx_runtime import OnnxTokenizer
    folder = shutil.copytree(exported["roberta"] / "onnx", tmp_path / "onnx")
    config = json.loads((folder / "config.json").read_text())
    config.pop("sentiment_kd")
    (folder / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 66}))
    t = OnnxTokenizer(folder)
    assert (t.max_length, t.truncation) == (64, "head")


def test_the_cards_commands_run_as_pasted_from_a_folder_with_a_space(exported, tmp_path):
    # `--model /tmp/my models/cut/onnx` ran as --model /tmp/my: every path in a card's commands is shell-quoted
    import shlex

    import inference
    from model_card import write_card, write_onnx_card
    folder = shutil.copytree(exported["cut"], tmp_path / "my models" / "cut")
    write_card(folder, "cut")
    write_onnx_card(folder)
    for card in (folder / "README.md", folder / "onnx" / "README.md"):
        used = [line for line in card.read_text().splitlines() if "python inference.py --model" in line]
        command = re.search(r"python inference\.py (--model [^`]+?) \"I loved it\"", used[0]).group(1)
        assert shlex.split(command)[1] in (str(folder), str(folder / "onnx"))
        assert inference.main([*shlex.split(command), "I loved it"])[0]["label"] in ("positive", "negative")
    assert f"its ONNX export, for ONNX Runtime without torch: `--model '{folder}/onnx'`" in (folder / "README.md").read_text()


def test_a_new_export_drops_the_figures_of_the_files_it_replaced(exported, tmp_path):
    # the model's card names its export once there is one; figures measured on replaced ONNX files are dropped, not
    # shown as the new files'; an fp32-only export's card offers no int8 file
    import export
    from model_card import write_card
    root = shutil.copytree(exported["cut"].parent.parent, tmp_path / "tiny")
    folder = root / "students" / "cut"
    shutil.rmtree(folder / "onnx")
    row = {"model": "cut", "precision": "fp32", "accuracy": 0.6, "f1": 0.6, "agreement": 0.9, "size_mb": 0.1,
           "latency_p50_ms": 2.0, "throughput": 500.0}
    rows, hw = [row, row | {"precision": "onnx-int8", "accuracy": 0.55}], {"device": "cpu", "cpu": "x", "torch_threads": 2}

    def card_with_onnx_rows():
        write_card(folder, "cut", rows=rows, hardware=hw, test_size=24)
        return (folder / "README.md").read_text()

    assert f"an ONNX export: `python export.py --model={folder}`, then `--model {folder}/onnx`" in card_with_onnx_rows()
    export.main([f"--model={folder}", "--quantize=false"])
    card, onnx_card = (folder / "README.md").read_text(), (folder / "onnx" / "README.md").read_text()
    assert f"(its ONNX export, for ONNX Runtime without torch: `--model {folder / 'onnx'}`)" in card
    assert "python export.py" not in card and "| onnx-int8 |" not in card and "| fp32 | 0.6000 |" in card
    assert "These files have not been evaluated yet: the figures below are the torch model's" in onnx_card
    assert "model_quantized.onnx" not in onnx_card and "`model.onnx` (fp32), with config.json" in onnx_card
    card_with_onnx_rows()
    export.main([f"--model={folder}", "--quantize=false"])                 # kept: its figures are still its files'
    assert "| onnx-int8 | 0.5500 |" in (folder / "README.md").read_text()
    assert "Rows onnx-fp32 / onnx-int8 are this folder's files" in (folder / "onnx" / "README.md").read_text()
    # results.md keeps its rows until an evaluation: the log says they are of the files replaced, and how to measure
    (root / "results.json").write_text(json.dumps({"rows": rows, "config": {"config_file": "configs/mine.toml"}}))
    export.main([f"--model={folder}", "--quantize=false"])                 # kept: nothing to say
    assert "measured the files exported before" not in (root / "logs" / "export.log").read_text()
    export.main([f"--model={folder}", "--overwrite=true"])                 # new files: the old figures go
    assert f"{root / 'results.json'}: its ONNX rows of cut measured the files exported before; evaluate the experiment " \
        "again to measure these: python evaluate_models.py --config configs/mine.toml --onnx=true" in \
        (root / "logs" / "export.log").read_text()
    card, onnx_card = (folder / "README.md").read_text(), (folder / "onnx" / "README.md").read_text()
    assert "| onnx-int8 |" not in card and "| onnx-int8 |" not in onnx_card
    assert f"python inference.py --model {folder / 'onnx'} --onnx_file=model_quantized.onnx" in onnx_card


def test_the_exporters_chatter_is_held_back_while_exporting():
    # hundreds of INFO lines per model, and four "torchvision is not installed" warnings, told nothing to act on
    import logging

    from onnx_runtime import quiet_exporters
    registration, script = logging.getLogger("torch.onnx._internal.exporter._registration"), logging.getLogger("onnxscript")
    before = (registration.level, script.level)
    with quiet_exporters():
        assert not registration.isEnabledFor(logging.WARNING) and registration.isEnabledFor(logging.ERROR)
        assert not script.isEnabledFor(logging.INFO) and script.isEnabledFor(logging.WARNING)
    assert (registration.level, script.level) == before
