"""Every bad input a user can give gets one line `error: ...` naming the problem and the fix, exit
status 2, and changes nothing on disk. CLI cases run the scripts in this process as their `__main__` does
(run_cli), or in a subprocess where only a real process shows it (a lock held by another process, the command
line itself)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, run_cli, tiny_args


def run(script, *args, env=None, stdin=None):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, input=stdin, timeout=300)


def files_of(folder):
    """Every file below folder with its size and modification time (to show nothing changed)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def assert_one_line_error(r, *fragments):
    err = r.stderr.strip()
    assert r.returncode == 2, r.stderr[-2000:]
    assert err.startswith("error: ") and "\n" not in err, err
    for f in fragments:
        assert f in err, err


@pytest.mark.parametrize("script,args,message", [
    ("fine_tuning_teacher.py", ["--epochs=-1"], "--epochs=-1.0: must be > 0"),
    ("distill_student.py", ["--epochs=-1"], "--epochs=-1.0: must be > 0"),
    ("fine_tuning_teacher.py", ["--batch_size=0"], "--batch_size=0: must be >= 1"),
    ("fine_tuning_teacher.py", ["--learning_rate=0"], "--learning_rate=0.0: must be > 0"),
    ("fine_tuning_teacher.py", ["--max_length=4"], "--max_length=4: must be >= 8"),
    ("fine_tuning_teacher.py", ["--val_size=0"], "--val_size=0: must be >= 1"),
    ("fine_tuning_teacher.py", ["--train_size=-5"], "--train_size=-5: must be >= 0"),
    ("fine_tuning_teacher.py", ["--truncation=middle"], "--truncation=middle: must be one of head, tail, head+tail"),
    ("fine_tuning_teacher.py", ["--head_tokens=63"], "--head_tokens=63: must be below max_length = 64 in"),
    ("distill_student.py", ["--alpha=1.5"], "--alpha=1.5: must be between 0 and 1"),
    ("distill_student.py", ["--transfer_size=-1"], "--transfer_size=-1: must be >= 0"),
    # more than there are: refused before any training (it failed when the student's data was built)
    ("distill_student.py", ['--students=[{name = "x", layers = [0], transfer_size = 13}]'],
     "student 'x': transfer_size = 13, but there are 12 transfer texts; set it to at most 12"),
    # a global flag is named as such, not as the first student that inherits it
    ("distill_student.py", ["--temperature=0", "--only=cut"], "--temperature=0.0: must be > 0"),
    ("distill_student.py", ['--students=[{name = "x", layers = [0], alpha = 2.0}]'],
     "student 'x': alpha = 2.0: must be between 0 and 1"),
    ("distill_student.py", ["--only=nobody"], "--only=nobody: no student 'nobody'; students: cut, roberta (one trained from --students"),
    ("distill_student.py", ["--only=cut-baseline"], "--only=cut-baseline: cut-baseline is the labels-only baseline of cut, "
                                                    "trained beside it: --only=cut trains the two (a finished one is kept)"),
    ("distill_student.py", ["--only=cut-baseline", '--students=[{name = "cut", layers = [0], baseline = false}]'],
     "--only=cut-baseline: cut trains no labels-only baseline (baseline = false); set baseline = true for it, then --only=cut"),
    ("distill_student.py", ['--students=[{name = "x", layers = [0, 5]}]'], "student 'x': layers = [0, 5]: need increasing indices in 0..1"),
    ("distill_student.py", ['--students=[{name = "x", layers = [0], max_length = 12}]'],
     "head_tokens = 16 in "),      # the shared setting as it was set, then the student's own max_length
    ("distill_student.py", ['--students=[{name = "x", layers = [0], max_length = 12}]'],
     "tiny.toml: must be below the max_length = 12 of student 'x' minus the special tokens"),
    ("distill_student.py", ["--max_length=600"], "max_length 600: student 'cut' takes at most 512 tokens"),
    ("distill_student.py", ['--students=[{name = "x", model = "tiny:roberta", hidden_weight = 1.0}]'],
     "student 'x': hidden_weight / attention_weight need the teacher's tokenizer"),
    ("fine_tuning_teacher.py", ["--max_length=600"], "max_length 600: tiny:bert takes at most 512 tokens"),
    ("fine_tuning_teacher.py", ["--warmup_ratio=1.0"], "--warmup_ratio=1.0: must be at least 0 and below 1"),
    ("evaluate_models.py", ["--test_size=-1"], "--test_size=-1: must be >= 0"),
    ("export.py", ["--model=no/such/folder"], "--model no/such/folder: no such folder; finished models in "),
    ("evaluate_models.py", ["--device=tpu"], "--device=tpu: must be one of auto, cpu, cuda"),
    ("fine_tuning_teacher.py", ["--experiment="], "--experiment='': must be one folder name under --output_dir ("),
    ("distill_student.py", ["--experiment=tiny/students"], "--experiment='tiny/students': must be one folder name"),
    ("fine_tuning_teacher.py", ["--experiment=students"], "--experiment=students: a name an experiment's own folders use"),
    ("distill_student.py", ["--choose_by=luck"], "--choose_by=luck: must be one of accuracy, gain"),
    ("evaluate_models.py", ["--output_dir="], "--output_dir is empty; give the folder that holds the experiments"),
])
def test_bad_settings_change_nothing(tiny_experiment, imdb_parquet, script, args, message, capsys):
    # in this process, as `python script ...` runs it (run_main): a new process would spend ~8 s importing
    # transformers for the checks that load a model's config (the command line itself: the test below)
    import importlib
    from configurator import run_main
    module = importlib.import_module(script.removesuffix(".py"))
    before = files_of(tiny_experiment)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: module.main([*tiny_args(imdb_parquet, tiny_experiment, cache=script != "evaluate_models.py"), *args]))
    assert_one_line_error(SimpleNamespace(returncode=stop.value.code, stderr=capsys.readouterr().err), message)
    assert files_of(tiny_experiment) == before


def test_a_model_path_that_is_no_model_is_one_line_before_anything_is_written(tiny_experiment, imdb_parquet, tmp_path,
                                                                              capsys):
    # a teacher's model_name or a student's model that is a folder but no saved model (an experiment's folder, its
    # students/, config.json alone), a file, or missing: one line naming it, before a folder is made (it was a
    # transformers traceback or the hub's repo-id error; run_experiment.sh's check before the teacher: test_pipeline)
    import importlib
    from configurator import run_main
    exp = tiny_experiment / "tiny"
    (tmp_path / "cfgonly").mkdir()
    shutil.copy(exp / "teacher" / "config.json", tmp_path / "cfgonly")
    out = tmp_path / "out"
    out.mkdir()
    cases = [(tmp_path / "nothere", "no such folder; give a saved model folder (config.json and weights"),
             (exp, f"is a folder without config.json, not a saved model; the models in it: {exp / 'teacher'}, "),
             (exp / "students", f"not a saved model; the models in it: {exp / 'students' / 'cut'}, "),
             (tmp_path / "cfgonly", "has no weights (model.safetensors or pytorch_model.bin); give a saved model"),
             (exp / "teacher" / "config.json", f"is a file; give its folder: {exp / 'teacher'}")]
    before = files_of(tiny_experiment)
    for path, message in cases:          # a new teacher; a new student of the finished teacher
        for script, flag, where in (("fine_tuning_teacher", f"--model_name={path}", out),
                                    ("distill_student", f'--students=[{{name = "x", model = "{path}"}}]', tiny_experiment)):
            module = importlib.import_module(script)
            capsys.readouterr()
            with pytest.raises(SystemExit) as stop:
                run_main(lambda: module.main([*tiny_args(imdb_parquet, where), flag]))
            assert_one_line_error(SimpleNamespace(returncode=stop.value.code, stderr=capsys.readouterr().err),
                                  f"error: model '{path}'", message)
    assert list(out.iterdir()) == [] and files_of(tiny_experiment) == before


def test_local_model_paths_as_a_user_types_them(tiny_experiment, tmp_path, monkeypatch):
    # ~ is expanded (neither bash inside --name=~/m nor TOML does, and transformers would take it for a hub id); a
    # missing outputs/... path is a folder, not a hub id (which has one '/' at most); an ONNX export names its model
    import models
    from configurator import UsageError
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_experiment / "tiny" / "teacher", tmp_path / "m")
    assert models.model_config("~/m").num_labels == 2 and models.load_tokenizer("~/m").padding_side == "right"
    assert models.load_classifier("~/m")[0].config.num_labels == 2
    monkeypatch.chdir(tmp_path)
    for name in ("outputs/nothere/teacher", "m/nothere"):
        with pytest.raises(UsageError, match=f"^model '{name}': no such folder; give a saved model folder"):
            models.model_config(name)
    assert models.local_path("sentence-transformers/all-MiniLM-L6-v2") is None and models.local_path("m") == Path("m")
    onnx = tmp_path / "m" / "onnx"
    onnx.mkdir()
    for f in ("model.onnx", "config.json", "tokenizer.json"):
        shutil.copy(tmp_path / "m" / "config.json", onnx / f)      # the three files an export holds (contents unread)
    for name in ("m/onnx", "m/onnx/model.onnx"):
        with pytest.raises(UsageError, match=f"^model '{name}' is an ONNX export, which torch does not load; give the "
                                             f"model folder it was exported from: m$"):
            models.model_config(name)


def test_a_student_of_the_teacher_still_to_train_is_checked_once_it_exists(imdb_parquet, tmp_path):
    # run_experiment.sh's check before the teacher trains: a student whose model is that teacher's folder (cut from it
    # by `layers`, or the whole of it) cannot be read yet, and is not refused for it; any other folder is checked
    import distill_student
    from configurator import UsageError, configure
    def check(model):
        distill_student.check_models_before_teacher(configure(vars(distill_student), tiny_args(
            imdb_parquet, tmp_path, f'--students=[{{name = "x", model = "{model}", layers = [0]}}]')))
    check(tmp_path / "tiny" / "teacher")
    with pytest.raises(UsageError, match=f"^model '{tmp_path / 'tiny' / 'other'}': no such folder"):
        check(tmp_path / "tiny" / "other")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_on_the_command_line_is_one_line_and_status_2(tiny_experiment, imdb_parquet, tmp_path):
    # a copy without the lock this test process holds on the shared experiment (another process would be refused)
    shutil.copytree(tiny_experiment / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns(".lock", "cache"))
    before = files_of(tmp_path)
    r = run("distill_student.py", *tiny_args(imdb_parquet, tmp_path), '--students=[{name = "x", layers = [0, 5]}]')
    assert_one_line_error(r, "student 'x': layers = [0, 5]: need increasing indices in 0..1")
    assert files_of(tmp_path) == before


def test_imdb_copy_with_other_column_names(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    data = tmp_path / "imdb"
    data.mkdir()
    pq.write_table(pa.table({"review": ["good"] * 4, "sentiment": [1] * 4}), data / "train.parquet")
    out = tmp_path / "out"
    out.mkdir()
    r = run("fine_tuning_teacher.py", *tiny_args(data, out))
    assert_one_line_error(r, "train.parquet: has the columns review, sentiment, IMDb needs text and label")
    assert list(out.iterdir()) == []


def test_inference_refuses_a_folder_without_tokenizer(tiny_experiment, tmp_path):
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_experiment / "tiny" / "teacher", folder,
                    ignore=shutil.ignore_patterns("tokenizer*", "vocab*", "special_tokens*", "merges*"))
    before = files_of(folder)
    r = run_cli("inference.py", "--model", str(folder), "a great film")
    assert_one_line_error(r, "has no tokenizer", "tokenizer.save_pretrained")
    assert files_of(folder) == before


def test_inference_refuses_a_base_encoder_without_head(tmp_path):
    from transformers import BertConfig, BertModel

    from models import build_tiny
    _, tok = build_tiny("bert")
    folder = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=max(tok.get_vocab().values()) + 1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tok.save_pretrained(folder)
    r = run_cli("inference.py", "--model", str(folder), "a great film")
    assert_one_line_error(r, "holds a BertModel without a trained classification head",
                          "fine_tuning_teacher.py --model_name=")


def test_inference_refuses_a_classifier_without_label_names(tiny_experiment, tmp_path):
    # a classifier trained elsewhere (no sentiment_kd record) with transformers' placeholder names
    folder = tmp_path / "labels"
    shutil.copytree(tiny_experiment / "tiny" / "teacher", folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("sentiment_kd")
    config["id2label"], config["label2id"] = {"0": "LABEL_0", "1": "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    (folder / "config.json").write_text(json.dumps(config))
    r = run_cli("inference.py", "--model", str(folder), "a great film")
    assert_one_line_error(r, "is a classifier without label names (LABEL_0, LABEL_1)")


def test_an_unfinished_save_is_not_a_model(tiny_experiment, tmp_path, monkeypatch):
    import evaluate_models
    import inference
    out = tmp_path / "out"
    shutil.copytree(tiny_experiment / "tiny", out / "tiny", ignore=shutil.ignore_patterns("checkpoints", "teacher_logits"))
    import export
    from data_utils import replace_dir
    students = out / "tiny" / "students"
    for name in ("cut.partial", "cut.replaced"):       # a save in progress; a replaced model on its way out
        shutil.copytree(students / "cut", students / name)
    names = {"teacher", "cut", "cut-baseline", "roberta"}
    assert {n for n, _ in evaluate_models.find_models(out / "tiny", out / "tiny" / "teacher")} == names
    assert {p.name for p in inference.saved_models(str(out))} == {p.name for p in export.finished_models(out / "tiny")} == names
    # replacing a model: the old one is renamed aside first and removed last, a stale aside copy dropped
    (students / "cut.partial" / "new").write_text("the new model")
    replace_dir(students / "cut.partial", students / "cut")
    assert (students / "cut" / "new").is_file() and not (students / "cut.partial").exists()
    assert not (students / "cut.replaced").exists()
    import os
    rename, calls = os.replace, []

    def crash_on_the_second(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError("killed")
        rename(a, b)
    shutil.copytree(students / "cut-baseline", students / "cut.partial")
    monkeypatch.setattr(os, "replace", crash_on_the_second)
    with pytest.raises(OSError):
        replace_dir(students / "cut.partial", students / "cut")
    assert (students / "cut.replaced" / "new").is_file() and (students / "cut.partial" / "metrics.json").is_file()


def test_inference_file_with_byte_order_mark(tiny_experiment, tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbfa great film\n\xef\xbb\xbf\nawful\n")
    r = run_cli("inference.py", f"--output_dir={tiny_experiment}", "--json", "--file", str(f))
    assert r.returncode == 0, r.stderr
    assert [p["text"] for p in json.loads(r.stdout)["predictions"]] == ["a great film", "awful"]
    assert "skipped 1 empty text(s) (#2)" in r.stderr


def test_predict_api_inputs(tiny_experiment):
    from configurator import UsageError
    from inference import predict
    model = str(tiny_experiment / "tiny" / "students" / "cut")
    one = predict("a great film", model=model)
    assert len(one) == 1 and one == predict(["a great film"], model=model)      # a string is one text
    assert predict([], model=model) == []
    with pytest.raises(ValueError, match=r"text #2 is blank"):
        predict(["good", " \ufeff "], model=model)
    with pytest.raises(UsageError, match=r"text #1 is a int, not a str"):
        predict([3], model=model)


def test_predict_rows_follow_the_input_order(tiny_experiment):
    from inference import predict
    model = str(tiny_experiment / "tiny" / "teacher")
    texts = ["the worst film, a waste of time and a boring plot", "great", "it was ok", "loved the acting and story"]
    together = predict(texts, model=model, batch_size=3)
    assert together == [predict([t], model=model)[0] for t in texts]


def test_pipeline_truncates_a_long_review_to_the_trained_length(tiny_experiment):
    from transformers import AutoTokenizer, pipeline
    folder = str(tiny_experiment / "tiny" / "students" / "cut")
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 64          # tiny.toml's max_length
    clf = pipeline("text-classification", model=folder, device=-1, truncation=True)
    out = clf(["a great film " * 400])                                          # ~1,200 tokens
    assert out[0]["label"] in ("negative", "positive")


def test_a_second_run_of_the_same_experiment_is_refused(imdb_parquet, tmp_path):
    # a run in progress: its lock names a live process; when that process is gone the lock is stale
    lock = tmp_path / "tiny" / ".lock"
    lock.parent.mkdir(parents=True)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": running.pid, "script": "fine_tuning_teacher", "since": "2026-01-01 00:00:00"}))
        # refused before the checks that load data and models (a missing data folder is not even looked at)
        r = run("fine_tuning_teacher.py", *tiny_args(imdb_parquet, tmp_path), "--epochs=0.2", f"--data_dir={tmp_path}/none")
        assert_one_line_error(r, f"{tmp_path / 'tiny'} is in use by fine_tuning_teacher.py (pid {running.pid}",
                              "wait for it to finish or stop it")
        assert not (tmp_path / "tiny" / "teacher").exists() and json.loads(lock.read_text())["pid"] == running.pid
    finally:
        running.kill()
        running.wait()
    r = run("fine_tuning_teacher.py", *tiny_args(imdb_parquet, tmp_path), "--epochs=0.2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the run that locked it" in r.stderr and "is gone; taking its lock over" in r.stderr
    assert (tmp_path / "tiny" / "teacher" / "metrics.json").exists() and not lock.exists()   # released on exit


def test_an_output_folder_that_cannot_be_written(tiny_experiment, imdb_parquet, tmp_path, monkeypatch, capsys):
    import errno
    import logging

    import distill_student
    import fine_tuning_teacher
    from configurator import UsageError, run_main

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(logging, "FileHandler", read_only)   # root ignores permissions: simulate the mount
    for main in (fine_tuning_teacher.main, distill_student.main):
        with pytest.raises(UsageError, match=rf"^cannot write to {tiny_experiment / 'tiny' / 'logs'}/\w+\.log "
                                             r"\(Read-only file system\); give an --output_dir you can write to"):
            main(tiny_args(imdb_parquet, tiny_experiment))
    monkeypatch.undo()
    # and as `python fine_tuning_teacher.py` ends (run_main, in this process: a new one spends ~8 s importing), with a
    # folder that is a file: one line, exit 2
    (tmp_path / "tiny").write_text("")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: fine_tuning_teacher.main(tiny_args(imdb_parquet, tmp_path)))
    assert_one_line_error(SimpleNamespace(returncode=stop.value.code, stderr=capsys.readouterr().err), "cannot write to")


def test_torchs_short_write_is_a_full_disk_only_when_less_is_free_than_a_save(tmp_path, monkeypatch):
    # torch.save's zip writer says "unexpected pos" with no OS error: a full disk when a save no longer fits
    import shutil as sh
    from collections import namedtuple

    import configurator
    save = tmp_path / "tiny" / "checkpoints" / "teacher" / "checkpoint-5"
    save.mkdir(parents=True)
    (save / "model.safetensors").write_bytes(b"0" * 3_000_000)
    monkeypatch.setattr(configurator, "_RUN_ROOT", [tmp_path / "tiny"])
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 203968 vs 203860")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda path: usage(10**9, 10**9, 1_000_000))
    assert configurator.disk_full(error).startswith(f"disk full while writing to {tmp_path / 'tiny'} (1 MB free; a save "
                                                    f"here takes about 3 MB)")
    monkeypatch.setattr(sh, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    assert configurator.disk_full(error) is None                 # room enough: some other failure, left as it is
    assert configurator.disk_full(RuntimeError("unexpected pos")) is None


def test_a_file_where_the_run_saves_is_refused_before_it_trains(imdb_parquet, tmp_path, monkeypatch):
    # found before training, not when the trained model is saved (root ignores permissions: a file in the way)
    import fine_tuning_teacher
    import training
    from configurator import UsageError
    monkeypatch.setattr(training, "train_and_save", lambda *a, **k: pytest.fail("trained"))
    ckpt = tmp_path / "tiny" / "checkpoints" / "teacher"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("")
    with pytest.raises(UsageError, match=rf"^cannot write to {ckpt} \(File exists\), where this run saves; make it "):
        fine_tuning_teacher.main(tiny_args(imdb_parquet, tmp_path))
    ckpt.unlink()
    (tmp_path / "tiny" / "models").write_text("")                # where its published record goes
    with pytest.raises(UsageError, match=rf"^cannot write to {tmp_path / 'tiny' / 'models'} \(File exists\), where this run"):
        fine_tuning_teacher.main(tiny_args(imdb_parquet, tmp_path))
    (tmp_path / "tiny" / "models").unlink()
    (tmp_path / "tiny" / "teacher.replaced").write_text("")
    with pytest.raises(UsageError, match=rf"^{tmp_path / 'tiny' / 'teacher.replaced'} is a file where the run saves"):
        fine_tuning_teacher.main(tiny_args(imdb_parquet, tmp_path))
