"""fine_tuning_teacher.py on the tiny experiment: saves a reloadable model, refuses to overwrite,
resumes an interrupted run; and, with ../shared, a few real steps of the quick teacher."""
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fine_tuning_teacher as ft
from conftest import real_data, stopped_at_save, tiny_args
import runs
import training
from configurator import UsageError


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, imdb_parquet):
    out = tmp_path_factory.mktemp("runs")
    metrics = ft.main(tiny_args(imdb_parquet, out))
    return out / "tiny" / "teacher", metrics


def test_teacher_saves_a_model_that_reloads_and_predicts(tiny_teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    folder, metrics = tiny_teacher
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["val_accuracy"] >= 0.85 and saved["train_examples"] == 40   # the tiny reviews are learnable
    assert saved["val_classes_predicted"] == 2
    assert saved["train_examples_per_s"] > 0 and saved["parameters"] == metrics["parameters"]
    # steady-state speed apart from start-up and evaluation (training.StepTimer)
    assert saved["first_step_s"] > 0 and saved["step_s_median"] > 0
    assert saved["steady_examples_per_s"] == pytest.approx(8 / saved["step_s_median"], rel=0.01)
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    kd = config["sentiment_kd"]
    assert (kd["role"], kd["max_length"], kd["truncation"], kd["head_tokens"]) == ("teacher", 64, "head+tail", 16)
    assert kd["run_config"]["experiment"] == "tiny" and kd["run_config"]["model_name"] == "tiny:bert"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        logits = model(**tok(["a great film", "the worst movie"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    out = pipeline("text-classification", model=str(folder), device=-1)(["loved it"])
    assert out[0]["label"] in ("negative", "positive") and 0.5 <= out[0]["score"] <= 1
    assert not (folder.parent / "checkpoints" / "teacher").exists()       # cleaned after success


def test_saved_weights_are_as_readable_as_the_config(tiny_teacher):
    folder, _ = tiny_teacher
    mask = os.umask(0)
    os.umask(mask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in folder.iterdir() if f.is_file()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~mask   # not safetensors' 0600


def test_keeps_a_finished_run(tiny_teacher, imdb_parquet, monkeypatch):
    folder, metrics = tiny_teacher
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()}
    with monkeypatch.context() as m:     # a kept teacher needs no base model (offline, the hub would be retried)
        m.setattr(ft, "model_config", lambda name: pytest.fail(f"loaded {name}'s config for a kept teacher"))
        again = ft.main(tiny_args(imdb_parquet, folder.parent.parent))
    log = (folder.parent / "logs" / "teacher.log").read_text().splitlines()[-1]
    assert "holds a finished teacher" in log and "kept; --overwrite=true retrains it" in log
    assert again["val_accuracy"] == metrics["val_accuracy"]
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()} == before
    # started with & by a shell without job control, Ctrl-C is ignored (as Python found it): the log says how to stop it
    import signal
    said = (folder.parent / "logs" / "teacher.log").read_text()
    assert "are ignored in this process" not in said
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ft.main(tiny_args(imdb_parquet, folder.parent.parent))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "Ctrl-C and kill -INT are ignored in this process (started with & by a shell without job control); kill PID " \
           "(SIGTERM) stops it as cleanly" in (folder.parent / "logs" / "teacher.log").read_text()[len(said):]
    with pytest.raises(UsageError, match=rf"^{folder} holds a finished run made with learning_rate = 0.003, now 1e-05; "
                                         r"--overwrite=true retrains it \(or set --experiment=<a new name> to keep both\)$"):
        ft.main(tiny_args(imdb_parquet, folder.parent.parent, "--learning_rate=1e-5", "--logging_steps=5"))
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()} == before


def test_published_record_is_not_a_finished_run(tmp_path, imdb_parquet):
    # what git holds for a published experiment: the record and the model folder's json, no weights
    folder = tmp_path / "tiny" / "teacher"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text('{"val_accuracy": 0.99}')
    (folder / "config.json").write_text("{}")
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path))
    assert (folder / "model.safetensors").exists() and metrics["val_accuracy"] != 0.99
    record = json.loads((tmp_path / "tiny" / "models" / "teacher.json").read_text())
    assert record["metrics"]["val_accuracy"] == metrics["val_accuracy"]
    assert record["config"]["sentiment_kd"]["role"] == "teacher" and record["config"]["model_type"] == "bert"


def test_a_published_record_of_other_settings_is_not_rewritten(tiny_teacher, imdb_parquet, tmp_path):
    # a fresh clone of a published experiment: its record in git, no weights; a run of other settings (a shrunk
    # config) would rewrite the published record and tables with results of another experiment
    folder, metrics = tiny_teacher
    record = tmp_path / "tiny" / "models" / "teacher.json"
    record.parent.mkdir(parents=True)
    shutil.copy(folder.parent / "models" / "teacher.json", record)
    before = record.read_bytes()
    with pytest.raises(UsageError, match=rf"^{record} is the published record of a run made with learning_rate = 0.003, "
                                         r"now 1e-05; set --experiment=<a new name> to keep it and its results, or "
                                         r"--overwrite=true to replace them$"):
        ft.main(tiny_args(imdb_parquet, tmp_path, "--learning_rate=1e-5"))
    assert record.read_bytes() == before and not (tmp_path / "tiny" / "teacher").exists()
    again = ft.main(tiny_args(imdb_parquet, tmp_path))              # its own settings: the run is reproduced
    assert again["val_accuracy"] == metrics["val_accuracy"] and record.read_bytes() != before


def crash_after_the_first_checkpoint(imdb_parquet, out):
    """Run the tiny teacher until its first checkpoint is written, then stop it as a crash would."""
    stopped_at_save(lambda: ft.main(tiny_args(imdb_parquet, out)))


def test_an_interrupted_run_resumes_only_with_its_own_settings(tmp_path, imdb_parquet):
    crash_after_the_first_checkpoint(imdb_parquet, tmp_path)
    ckpts = tmp_path / "tiny" / "checkpoints" / "teacher"
    saved = json.loads((ckpts / "settings.json").read_text())
    assert saved["learning_rate"] == 3e-3 and saved["epochs"] == 8.0 and "output_dir" not in saved
    before = {p: p.stat().st_mtime_ns for p in ckpts.rglob("*")}
    with pytest.raises(UsageError, match=rf"^{ckpts} holds checkpoints of an interrupted run made with learning_rate = "
                                         r"0.003, now 1e-05; run it with its settings to resume it, or with "
                                         r"--overwrite=true to start afresh$"):
        ft.main(tiny_args(imdb_parquet, tmp_path, "--learning_rate=1e-5", "--logging_steps=3"))   # logging: no matter
    assert {p: p.stat().st_mtime_ns for p in ckpts.rglob("*")} == before
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--learning_rate=1e-5", "--overwrite=true"))
    assert metrics["resumed_from"] is None and metrics["train_loss_from_step"] == 0
    busy, took = metrics["other_cores_busy"], metrics["train_time_s"]   # measured over train_time_s (TrainTime), ...
    if took > 1.2:
        assert 0 <= busy <= (os.cpu_count() or 1)
    elif took < 0.9:
        assert busy is None                                            # ... unless that is under a second: too short
    assert not (ckpts / "settings.json").exists()                    # gone with the checkpoints once finished


def test_checkpoints_resume_only_on_as_many_devices(tmp_path, imdb_parquet):
    # the Trainer's steps per epoch depend on the devices: checkpoints of 4 resume only on 4; a finished model is kept
    crash_after_the_first_checkpoint(imdb_parquet, tmp_path)
    ckpts = tmp_path / "tiny" / "checkpoints" / "teacher"
    saved = json.loads((ckpts / "settings.json").read_text())
    assert saved["devices"] == 1
    (ckpts / "settings.json").write_text(json.dumps(saved | {"devices": 4}))         # as torchrun on 4 GPUs wrote it
    with pytest.raises(UsageError, match=r"holds checkpoints of an interrupted run made with devices = 4, now 1; run it"):
        ft.main(tiny_args(imdb_parquet, tmp_path))
    first = ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite=true"))
    config = tmp_path / "tiny" / "teacher" / "config.json"
    kd = json.loads(config.read_text())
    kd["sentiment_kd"]["training_settings"]["devices"] = 4                            # finished on 4, kept on 1
    config.write_text(json.dumps(kd))
    assert ft.main(tiny_args(imdb_parquet, tmp_path)) == first


def test_interrupted_run_resumes(tmp_path, imdb_parquet, monkeypatch):
    from transformers import TrainerCallback
    crash_after_the_first_checkpoint(imdb_parquet, tmp_path)
    ckpts = list((tmp_path / "tiny" / "checkpoints" / "teacher").glob("checkpoint-*"))
    assert [c.name for c in ckpts] == ["checkpoint-5"]                   # 40 reviews / batch 8 = 5 steps
    assert not (tmp_path / "tiny" / "teacher").exists()
    # later saves cut short (a full disk, a kill): weights truncated, or nothing but config.json
    truncated = ckpts[0].with_name("checkpoint-7")
    shutil.copytree(ckpts[0], truncated)
    with open(truncated / "model.safetensors", "r+b") as f:
        f.truncate((truncated / "model.safetensors").stat().st_size - 100)
    (ckpts[0].with_name("checkpoint-9")).mkdir()
    shutil.copy(ckpts[0] / "config.json", ckpts[0].with_name("checkpoint-9"))
    class Count(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            Count.steps += 1
    monkeypatch.setattr(training, "LogToFile", Count)
    assert json.loads((ckpts[0] / "train_time.json").read_text())["train_time_s"] > 0   # the first part's time
    (ckpts[0] / "train_time.json").write_text(json.dumps({"train_time_s": 1000.0}))      # ... made long, to be seen
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path))
    assert metrics["resumed_from"].endswith("checkpoint-5") and metrics["train_loss_from_step"] == 5   # its train_loss's span
    assert 0 <= metrics["val_min_recall"] <= 1 and metrics["val_min_recall_class"] in (0, 1)   # recorded
    assert Count.steps == 35                                               # epochs 2-8 only (tiny.toml: 8 epochs)
    assert 1000 < metrics["train_time_s"] < 1300                           # both parts' time, and so the speed
    assert metrics["train_examples_per_s"] == pytest.approx(40 * 8 / metrics["train_time_s"], rel=0.05)
    log = (tmp_path / "tiny" / "logs" / "teacher.log").read_text()
    assert "checkpoint-9 is incomplete (no readable trainer_state.json): moved aside" in log
    assert "checkpoint-7 is incomplete (model.safetensors is truncated): moved aside" in log
    best = f"checkpoint-{metrics['best_step']}"            # the last log line of training is of this model, not the last step's
    assert f"the model kept is the best checkpoint by validation accuracy, {best}; evaluated again:" in log
    assert [h["epoch"] for h in metrics["log_history"] if "eval_accuracy" in h][:2] == [1.0, 2.0]


def test_a_checkpoint_complete_enough_to_resume_has_its_train_time(tmp_path, imdb_parquet, monkeypatch):
    # a stop just after the Trainer wrote the checkpoint's trainer_state.json (its last file): the time is there
    from transformers import TrainerState
    save = TrainerState.save_to_json

    def save_then_stop(self, path):
        save(self, path)
        if Path(path).parent.name.startswith("checkpoint-"):
            raise KeyboardInterrupt("stopped as the checkpoint was finished")
    monkeypatch.setattr(TrainerState, "save_to_json", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        ft.main(tiny_args(imdb_parquet, tmp_path))
    monkeypatch.undo()
    ckpt = tmp_path / "tiny" / "checkpoints" / "teacher" / "checkpoint-5"
    assert json.loads((ckpt / "train_time.json").read_text())["train_time_s"] > 0
    (ckpt / "train_time.json").write_text(json.dumps({"train_time_s": 1000.0}))
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path))
    assert metrics["resumed_from"] == str(ckpt) and 1000 < metrics["train_time_s"] < 1300


def test_a_stop_a_finalizer_swallowed_takes_effect_at_the_next_step(tmp_path, imdb_parquet, monkeypatch):
    # SIGTERM's KeyboardInterrupt raised inside a weakref callback is only printed; training went on to its next
    # models. A stop not yet caught is raised again at the step's end.
    import configurator
    steps = []
    monkeypatch.setattr(training.StepTimer, "on_step_end", lambda self, *a, **k: steps.append(1))
    monkeypatch.setattr(configurator, "_STOPPING", [15])         # as _interrupt leaves it; run_main has not caught it
    with pytest.raises(KeyboardInterrupt) as e:
        ft.main(tiny_args(imdb_parquet, tmp_path))
    assert e.value.args == (15,) and len(steps) == 1
    assert not list((tmp_path / "tiny" / "checkpoints" / "teacher").glob("checkpoint-*"))   # before the first save
    monkeypatch.setattr(configurator, "_STOPPING", [15, "caught"])
    assert configurator.stop_pending() is None


def test_eval_steps_checkpoints_within_an_epoch(tmp_path, imdb_parquet):
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--eval_steps=15"))      # 40 steps, 5 an epoch
    assert [h["step"] for h in metrics["log_history"] if "eval_accuracy" in h][:3] == [15, 30, 40]   # then the kept one
    from runs import resume_settings
    assert "eval_steps" not in resume_settings({"EVAL_STEPS": 0})            # runs recorded before it: the same


def test_bad_truncation_is_rejected(tmp_path, imdb_parquet):
    with pytest.raises(UsageError, match=r"--truncation=middle: must be one of head, tail, head\+tail"):
        ft.main(tiny_args(imdb_parquet, tmp_path, "--truncation=middle"))


@real_data
def test_quick_teacher_few_steps_on_real_reviews(tmp_path):
    metrics = ft.main(["--config", "configs/quick.toml", f"--output_dir={tmp_path}", f"--cache_dir={tmp_path}/c",
                       "--train_size=48", "--val_size=32", "--epochs=1", "--max_length=64", "--head_tokens=16"])
    assert metrics["train_examples"] == 48 and metrics["parameters"] > 20e6
    assert (tmp_path / "quick" / "teacher" / "model.safetensors").exists()


def test_step_timer_leaves_out_evaluation_and_checkpoints(monkeypatch):
    clock = iter([0.0, 2.0, 3.0, 3.5, 13.0, 13.5, 14.0])   # start, then the end of steps 1..6
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    timer = training.StepTimer()
    timer.on_train_begin(None, None, None)
    for step in range(6):
        timer.on_step_end(None, None, None)
        if step == 2:                                      # an evaluation and a save after step 3: 10 s
            timer.on_evaluate(None, None, None)
            timer.on_save(None, None, None)
    assert timer.first == 2.0 and timer.steps == [1.0, 0.5, 0.5, 0.5]   # 3.5 -> 13.0 left out
    assert timer.summary(8) == {"first_step_s": 2.0, "step_s_median": 0.5, "steady_examples_per_s": 16.0,
                                "step_s_quarters": [1.0, 0.5, 0.5, 0.5]}


def test_step_timer_on_a_gpu_marks_steps_with_events_and_never_synchronises_a_step(monkeypatch):
    gpu_clock = iter([0.0, 2.0, 3.0, 3.5, 13.0, 13.5, 14.0])   # when the GPU reaches each mark (s)

    class Event:                                               # torch.cuda.Event's part the timer uses
        def __init__(self, enable_timing=False):
            assert enable_timing
        def record(self):
            self.t = next(gpu_clock)
        def synchronize(self):
            pass
        def elapsed_time(self, end):                           # milliseconds, as CUDA events give them
            return 1000.0 * (end.t - self.t)

    def synchronize():
        raise AssertionError("a host-device synchronisation in a training step")
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(training.torch.cuda, "Event", Event)
    monkeypatch.setattr(training.torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(training.time, "perf_counter", synchronize)    # no host clock either: the GPU's times
    timer = training.StepTimer()
    timer.on_train_begin(None, None, None)
    for step in range(6):
        timer.on_step_end(None, None, None)
        if step == 2:
            timer.on_evaluate(None, None, None)
    assert timer.summary(8) == {"first_step_s": 2.0, "step_s_median": 0.5, "steady_examples_per_s": 16.0,
                                "step_s_quarters": [1.0, 0.5, 0.5, 0.5]}


def test_train_time_measures_other_processes_over_its_part(monkeypatch):
    samples = iter([(0.0, 100.0, 5.0), (10.0, 115.0, 10.0), (10.0, 115.0, 10.0)])   # (wall s, machine CPU s, own CPU s)
    monkeypatch.setattr(training, "cpu_sample", lambda: next(samples))
    clock = training.TrainTime()
    assert clock.others() == 1.0                    # (15 - 5) CPU s of others over 10 s
    assert clock.others(world_size=2) is None       # torchrun: the other ranks are not other work


def test_a_busy_cpu_is_warned_of_while_training_not_only_after(monkeypatch, caplog):
    # (wall s, machine CPU s, own CPU s): other processes idle for 40 s, then busy: 40 CPU s of others over 60 s
    samples = iter([(0.0, 100.0, 5.0), (20.0, 140.0, 25.0), (40.0, 140.0, 45.0), (60.0, 200.0, 65.0)])
    monkeypatch.setattr(training, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)     # on a GPU machine too: a CPU run
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: 2)
    from types import SimpleNamespace
    clock = training.TrainTime()
    state = SimpleNamespace(is_world_process_zero=True)
    with caplog.at_level("WARNING", logger="kd"):
        clock.on_log(SimpleNamespace(world_size=1), state, None)        # 20 s in: too soon to tell
        clock.on_log(SimpleNamespace(world_size=1), state, None)        # 40 s: others 0 cores
        assert caplog.records == []
        clock.on_log(SimpleNamespace(world_size=2), state, None)        # torchrun: not measured (no sample taken)
        clock.on_log(SimpleNamespace(world_size=1), state, None)        # 60 s: 40 / 60 = 0.67 cores > a fifth of 2
        clock.on_log(SimpleNamespace(world_size=1), state, None)        # once only (no sample left to take)
    assert [r.getMessage() for r in caplog.records] == [
        "other processes are keeping 0.7 of this machine's 2 cores busy: this training runs slower for it; its 2 threads "
        "wait on each other's turn, several times slower than 1: stop it and run it again with --threads=1; free the "
        "machine, or stop this run and run it later (it resumes from its last checkpoint, if one was saved)"]
    samples = iter([(0.0, 100.0, 5.0), (60.0, 200.0, 65.0)])          # the same, at 1 thread: nothing to cut
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: 1)
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):
        training.TrainTime().on_log(SimpleNamespace(world_size=1), state, None)
    assert [r.getMessage() for r in caplog.records] == [
        "other processes are keeping 0.7 of this machine's 2 cores busy: this training runs slower for it; free the "
        "machine, or stop this run and run it later (it resumes from its last checkpoint, if one was saved)"]


def test_a_run_stopped_after_its_last_checkpoint_records_no_loss_for_its_empty_second_part(tmp_path, imdb_parquet):
    stopped_at_save(lambda: ft.main(tiny_args(imdb_parquet, tmp_path, "--epochs=1")),       # after the last checkpoint
                    when=lambda args, state: state.global_step == state.max_steps)
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--epochs=1"))
    assert metrics["resumed_from"].endswith("checkpoint-5") and metrics["train_loss_from_step"] == 5
    assert metrics["train_loss"] is None                  # no step trained here: not the Trainer's 0.0
    assert training.checkpoint_step(None) == 0 and training.checkpoint_step("/x/checkpoint-12") == 12


def test_overwrite_starts_an_interrupted_run_afresh(tmp_path, imdb_parquet):
    crash_after_the_first_checkpoint(imdb_parquet, tmp_path)
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite"))
    assert metrics["resumed_from"] is None and metrics["epochs"] == 8.0
    ckpts = tmp_path / "tiny" / "checkpoints" / "teacher"
    log = tmp_path / "tiny" / "logs" / "teacher.log"
    assert f"--overwrite: removed {ckpts}; training starts afresh" in log.read_text()
    (ckpts / "checkpoint-5").mkdir(parents=True)           # another --overwrite run, stopped before it finished
    assert ft.main(tiny_args(imdb_parquet, tmp_path)) == metrics                     # the finished teacher is kept
    assert (f"WARNING {ckpts} holds checkpoints of an unfinished run, left as they are: the finished model in "
            f"{tmp_path / 'tiny' / 'teacher'} is kept") in log.read_text()


def test_an_interrupted_overwrite_run_goes_on_with_the_same_command(tmp_path, imdb_parquet):
    # retraining a finished teacher (--overwrite=true), stopped: the same command resumes it (as the stop message
    # says); with other settings it starts afresh; without --overwrite the finished model is kept
    first = ft.main(tiny_args(imdb_parquet, tmp_path))
    ckpts = tmp_path / "tiny" / "checkpoints" / "teacher"
    assert not ckpts.exists()
    stopped_at_save(lambda: ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite=true")))     # at the first checkpoint
    assert (ckpts / "checkpoint-5").is_dir() and (ckpts / runs.OVERWRITING).is_file()
    assert ft.main(tiny_args(imdb_parquet, tmp_path)) == first                     # kept without --overwrite
    assert f"{ckpts} holds checkpoints of an unfinished run" in (tmp_path / "tiny" / "logs" / "teacher.log").read_text()
    again = ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite=true"))
    assert again["resumed_from"].endswith("checkpoint-5") and again["optimizer_steps"] == 40
    log = (tmp_path / "tiny" / "logs" / "teacher.log").read_text()
    assert f"--overwrite: going on with the interrupted --overwrite run of these settings in {ckpts}" in log
    stopped_at_save(lambda: ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite=true")))   # stopped again, then other settings
    other = ft.main(tiny_args(imdb_parquet, tmp_path, "--overwrite=true", "--learning_rate=2e-3"))
    assert other["resumed_from"] is None and not ckpts.exists()


def test_a_finished_runs_own_kept_checkpoints_are_not_taken_for_an_unfinished_runs(tmp_path, imdb_parquet):
    ft.main(tiny_args(imdb_parquet, tmp_path, "--keep_checkpoints=true", "--epochs=1"))
    assert list((tmp_path / "tiny" / "checkpoints" / "teacher").glob("checkpoint-*"))
    record = tmp_path / "tiny" / "models" / "teacher.json"
    written = json.loads(record.read_text())
    record.unlink()                                  # a save stopped between the model folder and its record
    ft.main(tiny_args(imdb_parquet, tmp_path, "--keep_checkpoints=true", "--epochs=1"))
    log = (tmp_path / "tiny" / "logs" / "teacher.log").read_text()
    assert "holds checkpoints of an unfinished run" not in log and f"{record} was missing; written again from" in log
    again = json.loads(record.read_text())                             # kept, and its record written from its folder
    assert again["metrics"] == written["metrics"]
    assert again["config"]["sentiment_kd"] == written["config"]["sentiment_kd"]
    record.write_text(json.dumps(again | {"metrics": again["metrics"] | {"val_accuracy": 0.1}}))   # another run's
    ft.main(tiny_args(imdb_parquet, tmp_path, "--keep_checkpoints=true", "--epochs=1"))
    assert json.loads(record.read_text())["metrics"] == written["metrics"]
    assert f"{record} was of another run; written again from" in (tmp_path / "tiny" / "logs" / "teacher.log").read_text()


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    from safetensors.torch import save_file

    def checkpoint(step, *files, weights=True):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if weights:
            save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
        for name in files:
            (folder / name).write_text("{}")
        return folder
    assert runs.last_checkpoint(tmp_path / "none") is None
    checkpoint(2, "optimizer.pt", "trainer_state.json")
    checkpoint(4, "optimizer.pt", "trainer_state.json", weights=False)
    checkpoint(6, "trainer_state.json")
    checkpoint(8, "config.json", weights=False)
    assert runs.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["checkpoint-2", "incomplete-checkpoint-4", "incomplete-checkpoint-6", "incomplete-checkpoint-8"]
    shutil.rmtree(tmp_path / "checkpoint-2")
    checkpoint(8, "optimizer.pt", weights=False)              # a second incomplete one of the same name
    assert runs.last_checkpoint(tmp_path) is None         # none complete: start afresh
    assert (tmp_path / "incomplete-checkpoint-8+").is_dir()


def test_a_full_disk_is_one_line_and_the_rerun_recovers(tmp_path, imdb_parquet, monkeypatch, capsys):
    # the disk fills while the first checkpoint's weights are written: config.json is there, the rest is not
    import errno
    from pathlib import Path

    from transformers import Trainer

    from configurator import run_main

    def full_disk(self, output_dir=None, state_dict=None):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(output_dir)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir) / "model.safetensors"))
    monkeypatch.setattr(Trainer, "_save", full_disk)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: ft.main(tiny_args(imdb_parquet, tmp_path, "--epochs=1")))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    err = err[err.index("error: "):]                   # after what is left of the progress bar on that line
    ckpt = tmp_path / "tiny" / "checkpoints" / "teacher" / "checkpoint-5"
    assert exit_.value.code == 2 and err.startswith(f"error: disk full while writing to {ckpt} (") and "MB free" in err
    assert "run the same command again" in err
    assert not (tmp_path / "tiny" / "teacher").exists()                    # nothing looks finished
    monkeypatch.undo()
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--epochs=1"))      # the space is back: it runs
    assert metrics["resumed_from"] is None             # the incomplete checkpoint was set aside, not resumed
    assert (tmp_path / "tiny" / "teacher" / "metrics.json").exists()


def test_a_stopped_run_says_how_to_resume_and_leaves_no_lock(tmp_path, imdb_parquet):
    # `timeout`, a scheduler or `kill` sends SIGTERM: unwound as Ctrl-C is (the lock released, the message logged)
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    log = tmp_path / "tiny" / "logs" / "teacher.log"
    p = subprocess.Popen([sys.executable, str(ROOT / "fine_tuning_teacher.py"), *tiny_args(imdb_parquet, tmp_path),
                          "--epochs=500"], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "tiny" / "checkpoints" / "teacher").glob("checkpoint-*")) and time.time() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "tiny" / ".lock").exists()
        p.send_signal(signal.SIGTERM)
        stderr = p.communicate(timeout=60)[1]
        errors = [line[line.index("error: "):] for line in stderr.splitlines() if "error: " in line]   # among bars
        err = errors[-1] if len(errors) == 1 else stderr[-2000:]
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert err == ("error: stopped by SIGTERM: finished models are kept and an interrupted training resumes from its "
                   "last checkpoint when the same command runs again")
    assert not (tmp_path / "tiny" / ".lock").exists() and not (tmp_path / "tiny" / "teacher").exists()
    assert "WARNING stopped by SIGTERM" in log.read_text()


def test_gradient_accumulation_leaves_the_loss_a_mean(tiny_teacher, imdb_parquet, tmp_path):
    # transformers 5 leaves a model's own loss unscaled under accumulation (it expects the model to divide by
    # num_items_in_batch, which a classifier ignores): the teacher's loss came out GRAD_ACCUM times too large
    _, plain = tiny_teacher
    accumulated = ft.main(tiny_args(imdb_parquet, tmp_path, "--batch_size=4", "--grad_accum=2", "--epochs=1"))
    first = lambda m: next(h for h in m["log_history"] if "loss" in h)    # noqa: E731  step 1, the same init
    assert first(plain)["loss"] == pytest.approx(first(accumulated)["loss"], rel=0.1)
    assert first(plain)["grad_norm"] == pytest.approx(first(accumulated)["grad_norm"], rel=0.3)
    assert accumulated["optimizer_steps"] == plain["optimizer_steps"] / 8      # 8 epochs of 8 rows a step there


def test_a_teacher_whose_loss_turns_non_finite_stops_and_saves_nothing(imdb_parquet, tmp_path, monkeypatch):
    # no per-step check (logging_nan_inf_filter would sync every step): the logged mean is checked, and the
    # accumulator before a checkpoint; unchecked, a NaN teacher trained on and was saved, refused only for accuracy
    real = training.MeanLossTrainer.compute_loss

    def nan_from_step_3(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step >= 3 else loss
    monkeypatch.setattr(training.MeanLossTrainer, "compute_loss", nan_from_step_3)
    with pytest.raises(FloatingPointError, match=r"^non-finite training loss by step 4 \(nan\); lower the learning rate"):
        ft.main(tiny_args(imdb_parquet, tmp_path))          # logging_steps = 2: the log of step 4
    assert not (tmp_path / "tiny" / "teacher").exists() and not list((tmp_path / "tiny" / "checkpoints").glob("*/checkpoint-*"))
    trainer = training.MeanLossTrainer.__new__(training.MeanLossTrainer)
    trainer.state, trainer._tr_loss = type("S", (), {"global_step": 5})(), torch.tensor(float("inf"))
    with pytest.raises(FloatingPointError, match="^non-finite training loss by step 5; "):
        trainer._save_checkpoint(None, None)                 # between logs: the accumulator since the last one


def test_a_model_that_predicts_one_class_is_flagged(imdb_parquet, tmp_path):
    # a user's under-trained student answered "positive" for every text, chosen as inference's default, unflagged
    import inference
    metrics = ft.main(tiny_args(imdb_parquet, tmp_path, "--learning_rate=1e-9", "--epochs=0.2"))   # untrained: one class
    assert metrics["val_classes_predicted"] == 1 and metrics["val_accuracy"] == 0.5
    log = (tmp_path / "tiny" / "logs" / "teacher.log").read_text()
    assert "WARNING" in log and "predicts one class for every validation text (accuracy 0.5000" in log
    assert inference.validation_accuracy(tmp_path / "tiny" / "teacher") == \
        "validation accuracy 0.5000; WARNING: it predicted one class for every validation text"


def test_on_imbalanced_classes_the_checkpoint_can_be_kept_by_macro_f1(tmp_path, caplog):
    # a user's 3-class teacher (3% / 11% / 86%) kept its first epoch, which predicted the common class alone (accuracy
    # 0.86), over a later one that predicted two (0.84, macro F1 0.405), and was told to train longer
    history = [{"loss": 0.9, "step": 10}, {"eval_accuracy": 0.86, "eval_f1": 0.31, "eval_classes_predicted": 1, "step": 16},
               {"eval_accuracy": 0.82, "eval_f1": 0.39, "eval_classes_predicted": 2, "step": 48},
               {"eval_accuracy": 0.84, "eval_f1": 0.405, "eval_classes_predicted": 2, "step": 64}]
    kept = {"eval_classes_predicted": 1, "eval_accuracy": 0.86, "eval_f1": 0.31}
    training.warn_if_classes_unpredicted(tmp_path / "m", kept, 3, history)
    assert caplog.text.rstrip().endswith(
        "it has not learned the task: the evaluation at step 64 predicted 2 (macro F1 0.4050, this one 0.3100): "
        "--best_metric=f1 keeps the checkpoint of the best macro F1; or train longer (--epochs) or at another --learning_rate")
    caplog.clear()           # a checkpoint of more classes but a lower macro F1: --best_metric=f1 would keep this one
    training.warn_if_classes_unpredicted(tmp_path / "m", kept | {"eval_f1": 0.45}, 3, history)
    assert "best_metric" not in caplog.text and caplog.text.rstrip().endswith("train longer (--epochs) or at another --learning_rate")
    assert training.training_arguments(tmp_path, epochs=1, batch_size=2, learning_rate=1e-4, eval_batch_size=2, seed=0,
                                       best_metric="f1").metric_for_best_model == "f1"
    with pytest.raises(UsageError, match=r"^--best_metric=loss: must be one of accuracy, f1, recall$"):
        ft.main(["--best_metric=loss"])
    from runs import resume_settings
    assert "best_metric" not in resume_settings({"BEST_METRIC": "accuracy"})     # runs recorded before it: the same
    assert resume_settings({"BEST_METRIC": "f1"})["best_metric"] == "f1"


def test_a_model_barely_above_the_most_common_class_is_flagged(tmp_path, caplog):
    # a user's 64-step teacher learned little, predicted both classes, and was not warned
    labels = [0] * 60 + [1] * 40                               # always predicting 0 scores 0.60
    training.warn_if_near_chance(tmp_path / "m", {"eval_classes_predicted": 2, "eval_accuracy": 0.64}, labels, 2)
    assert caplog.text.rstrip().endswith("m: validation accuracy 0.6400 is less than 5 points above 0.6000, what always "
                                         "predicting the most common class scores: it has learned little; train longer "
                                         "(--epochs), at another --learning_rate, or with more examples")
    caplog.clear()
    training.warn_if_near_chance(tmp_path / "m", {"eval_classes_predicted": 2, "eval_accuracy": 0.66}, labels, 2)
    training.warn_if_near_chance(tmp_path / "m", {"eval_classes_predicted": 3, "eval_accuracy": 0.40}, [0, 1, 2] * 9, 3)
    training.warn_if_near_chance(tmp_path / "m", {"eval_classes_predicted": 1, "eval_accuracy": 0.60}, labels, 2)
    assert caplog.text == ""           # learned something (3 balanced classes: 0.33 + 5 points); one class: warned otherwise
    # recorded (val_majority_share), so inference's model line and the card say it too
    import inference
    from model_card import one_sided
    folder = tmp_path / "little"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "neg", "1": "pos"}}))
    metrics = {"val_accuracy": 0.64, "val_majority_share": 0.6, "val_classes_predicted": 2, "val_classes_in_labels": 2}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert inference.validation_accuracy(folder) == ("validation accuracy 0.6400; WARNING: it learned little: less than 5 "
                                                     "points above 0.6000, what always predicting the most common class scores")
    assert one_sided(metrics, {"labels": ["neg", "pos"]}) == (" **Warning: it learned little: validation accuracy less "
                                                              "than 5 points above 0.6000, what always predicting the most "
                                                              "common class scores.**")
    assert one_sided(metrics | {"val_accuracy": 0.7}, {"labels": ["neg", "pos"]}) == ""
    assert training.warn_if_near_chance(tmp_path / "m", {"eval_classes_predicted": 2, "eval_accuracy": 0.9}, labels, 2) == 0.6


def test_a_model_that_never_predicts_some_classes_is_flagged(tmp_path, caplog):
    # a user's 4-class teacher never predicted "neutral" (test recall 0.0000): only one predicted class was flagged
    import inference
    training.warn_if_classes_unpredicted(tmp_path / "m", {"eval_classes_predicted": 3, "eval_accuracy": 0.61}, 4)
    assert "m predicts only 3 of the 4 classes of the validation texts (accuracy 0.6100)" in caplog.text
    caplog.clear()
    training.warn_if_classes_unpredicted(tmp_path / "m", {"eval_classes_predicted": 4, "eval_accuracy": 0.61}, 4)
    assert caplog.text == ""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"id2label": {str(i): c for i, c in enumerate("abcd")}}))
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.61, "val_classes_predicted": 3}))
    assert inference.validation_accuracy(folder) == \
        "validation accuracy 0.6100; WARNING: it predicted only 3 of its 4 classes on validation"
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.61}))          # recorded before it was counted
    assert inference.validation_accuracy(folder) == "validation accuracy 0.6100"
    from models import unpredicted_classes
    assert unpredicted_classes({"val_classes_predicted": 2, "val_classes_in_labels": 3}, 4) == \
        "it predicted only 2 of the 3 classes validation holds"
    assert unpredicted_classes({"val_classes_predicted": 0, "val_classes_in_labels": 2}, 3) == \
        "it predicted none of the 2 classes validation holds"       # only a class validation lacks: 0, not "unknown"
    # a validation file without one of the classes: the model is not blamed for never predicting it
    from transformers import EvalPrediction
    logits = np.eye(4)[[0, 1, 2, 0, 1, 3]]             # labels 0, 1, 2 (no 3): each predicted, 3 predicted as well
    m = training.compute_metrics(EvalPrediction(logits, np.array([0, 1, 2, 0, 1, 2])))
    assert (m["classes_predicted"], m["classes_in_labels"]) == (3, 3)
    m = training.compute_metrics(EvalPrediction(np.eye(4)[[0, 0, 3, 0, 0, 3]], np.array([0, 1, 2, 0, 1, 2])))
    assert (m["classes_predicted"], m["classes_in_labels"]) == (1, 3)
    # the lowest recall of a class the labels hold: 40 texts each of 3 classes, class 2 recognised 4 times (1/10)
    labels = np.array([0] * 40 + [1] * 40 + [2] * 40)
    m = training.compute_metrics(EvalPrediction(np.eye(3)[[0] * 40 + [1] * 39 + [2] + [2] * 4 + [0] * 36], labels))
    assert (m["min_recall"], m["min_recall_class"], m["min_recall_texts"]) == (pytest.approx(0.1), 2, 40)
    # a class id, not its place among the classes the labels hold: labels of classes 1 and 2 only
    m = training.compute_metrics(EvalPrediction(np.eye(3)[[1] * 40 + [2] * 4 + [1] * 36], labels[40:]))
    assert (m["min_recall"], m["min_recall_class"], m["classes_in_labels"]) == (pytest.approx(0.1), 2, 2)
    from types import SimpleNamespace

    from models import neglected_class
    config = SimpleNamespace(num_labels=3, id2label={0: "bad", 1: "meh", 2: "good"})
    val = {"eval_classes_predicted": 3, "eval_classes_in_labels": 3, "eval_min_recall": 0.1, "eval_min_recall_class": 2,
           "eval_min_recall_texts": 40}
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):
        training.warn_if_class_neglected(folder, val, config, teacher=True)
    assert f"{folder}: it recognised class 'good' in only 10.0% of its 40 validation texts of that class (4; guessing " \
        "at random: 33.3%): it all but ignores that class, and students distilled from it learn that; --best_metric=" \
        "recall (or f1) keeps the checkpoint best across classes, rather than the most accurate" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):
        training.warn_if_class_neglected(folder, val, config, "f1")               # a student: nobody learns from it
    assert "ignores that class; train longer, or with more examples of that class" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):
        training.warn_if_class_neglected(folder, val | {"eval_min_recall": 0.17}, config)    # 1 / (2 x 3) = 0.167: not under
        training.warn_if_class_neglected(folder, val | {"eval_classes_predicted": 2}, config)  # the other warning's
        training.warn_if_class_neglected(folder, val | {"eval_min_recall_texts": 19}, config)  # too few texts to tell
        training.warn_if_class_neglected(folder, {"eval_classes_predicted": 3}, config)       # not recorded
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="kd"):
        training.warn_if_class_neglected(folder, val, config, "none", teacher=True)
    assert "ignores that class, and students distilled from it learn that; it was trained elsewhere: fine-tune" in caplog.text
    # chance is over the model's classes, not those validation holds: 0.2 of a class, of 2 in validation, 3 classes
    metrics = {"val_min_recall": 0.2, "val_min_recall_class": 0, "val_min_recall_texts": 50, "val_classes_predicted": 2,
               "val_classes_in_labels": 2}
    assert neglected_class(metrics, ["bad", "meh", "good"]) == ""                  # 0.2 >= 1 / 6
    assert neglected_class(metrics | {"val_min_recall": 0.16}, ["bad", "meh", "good"]).startswith(
        "it recognised class 'bad' in only 16.0% of its 50 validation texts of that class (8; guessing at random: 33.3%")
    caplog.clear()
    training.warn_if_classes_unpredicted(folder, {"eval_classes_predicted": 3, "eval_classes_in_labels": 3,
                                                  "eval_accuracy": 0.61}, 4)
    assert caplog.text == ""
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.61, "val_classes_predicted": 3,
                                                     "val_classes_in_labels": 3}))
    assert inference.validation_accuracy(folder) == "validation accuracy 0.6100"


def elsewhere_copy(folder, dest, id2label: dict, order: list[int]):
    """`folder`'s classifier saved as if fine-tuned elsewhere: no record of this project, its classes named
    `id2label` and stored in another order (the class at new index i is the old order[i])."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order])
        model.classifier.bias.copy_(model.classifier.bias[order])
    model.config.id2label, model.config.label2id = id2label, {n: i for i, n in id2label.items()}
    del model.config.sentiment_kd
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(folder).save_pretrained(dest)
    return dest


def test_a_teacher_made_here_on_another_split_of_the_data_is_said_to_have_seen_its_texts(tiny_teacher, imdb_parquet,
                                                                                          tmp_path, monkeypatch):
    # a user's teacher, taken as it is (--fine_tune=false) with another --seed: 82 of its 100 validation texts were
    # that teacher's training texts, and it reported 1.0 without a word
    folder, _ = tiny_teacher
    for run, seed in (("same", []), ("other", ["--seed=5"])):
        ft.main(tiny_args(imdb_parquet, tmp_path / run, f"--model_name={folder}", "--fine_tune=false", *seed))
    assert "was trained here on" not in (tmp_path / "same" / "tiny" / "logs" / "teacher.log").read_text()   # its split
    said = re.search(r"was trained here on (\d+) of this run's validation texts and (\d+) of its test texts \(its split: "
                     r"seed 0, val_size 8, train_size 0\)", (tmp_path / "other" / "tiny" / "logs" / "teacher.log").read_text())
    from data_utils import DataSpec, load_splits
    ours, theirs = (load_splits(DataSpec(data_dir=str(imdb_parquet), val_size=8, seed=s)) for s in (5, 0))
    expect = [sum(t in set(theirs.train["text"]) for t in getattr(ours, split)["text"]) for split in ("validation", "test")]
    assert said and [int(said[1]), int(said[2])] == expect and expect[0] > 0
    # a split kept with drop_leaks off shares texts between train and test (IMDb repeats some): the same split is not
    # a leak of the reused teacher's
    from types import SimpleNamespace
    same = SimpleNamespace(train={"text": ["a", "dup"]}, validation={"text": ["v"]}, test={"text": ["dup", "t"]})
    monkeypatch.setattr(ft, "load_splits", lambda spec: same)
    import logging
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("kd").addHandler(handler)         # start_run set the log up afresh: caplog no longer sees it
    try:
        ft.warn_if_trained_on_these({"seed": 0}, same)
        assert said == []
        ft.warn_if_trained_on_these({"seed": 0}, SimpleNamespace(
            train={"text": ["b"]}, validation={"text": ["a"]}, test={"text": ["dup", "t"]}))      # another split: said
        assert len(said) == 1 and "was trained here on 1 of this run's validation texts and 1 of its test texts" in said[0]
    finally:
        logging.getLogger("kd").removeHandler(handler)


def test_a_classifier_fine_tuned_elsewhere_is_taken_as_it_is(tiny_teacher, imdb_parquet, tmp_path):
    # --fine_tune=false: a user's own fine-tuned model (its classes upper-case and in the other order) becomes the
    # teacher as it is: the same predictions, measured on validation, saved with this project's record
    import distill_student
    from models import load_classifier
    folder, metrics = tiny_teacher
    theirs = elsewhere_copy(folder, tmp_path / "mine", {0: "POSITIVE", 1: "NEGATIVE"}, [1, 0])
    adopted = ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={theirs}", "--fine_tune=false"))
    said = (tmp_path / "runs" / "tiny" / "logs" / "teacher.log").read_text()
    assert "its classification head (POSITIVE, NEGATIVE) serves the data's labels (negative, positive), its classes " \
           "put in the data's order" in said
    assert "fine-tuned elsewhere, on data this run does not know" in said
    assert adopted["val_accuracy"] == metrics["val_accuracy"] and adopted["untrained"] is True
    assert adopted["optimizer_steps"] == 0 and adopted["val_examples"] == 8
    ours = tmp_path / "runs" / "tiny" / "teacher"
    config = json.loads((ours / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["sentiment_kd"]["base_model"] == str(theirs)
    assert config["sentiment_kd"]["training_settings"]["fine_tune"] is False
    # a teacher fine-tuned here records no fine_tune (runs.ADDED_LATER): those recorded before it existed are kept
    assert "fine_tune" not in json.loads((folder / "config.json").read_text())["sentiment_kd"]["training_settings"]
    card = (ours / "README.md").read_text()
    assert "A sentiment classifier (negative / positive) fine-tuned elsewhere, the local model `mine`, taken as it is " \
           "(not trained here)" in card and str(tmp_path) not in card.split("## How to use")[0]    # no path of this machine
    a, tok = load_classifier(str(folder))
    b, _ = load_classifier(str(ours))
    batch = tok(["a great film", "the worst movie", "loved it"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        torch.testing.assert_close(b(**batch).logits, a(**batch).logits)
    assert not (tmp_path / "runs" / "tiny" / "checkpoints" / "teacher").exists()
    student = distill_student.main(tiny_args(imdb_parquet, tmp_path / "runs", "--only=cut"))   # the next step takes it
    # not trained here: a training setting meant for the students keeps it; fine-tuning it instead is named as such
    again = ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={theirs}", "--fine_tune=false", "--epochs=5"))
    assert again["taken_at"] == adopted["taken_at"]
    with pytest.raises(UsageError, match=r"made with fine_tune = False, now True; \d more: "):
        ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={theirs}"))
    assert set(student["students"]) == {"cut", "cut-baseline"}
    # fine-tuned here from it: its earlier training data is still unknown, said in the log and in the teacher's card
    ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={theirs}", "--overwrite=true"))
    assert said.count("does not know") == 1 and "does not know" in (tmp_path / "runs" / "tiny" / "logs" / "teacher.log").read_text()[len(said):]
    assert json.loads((ours / "config.json").read_text())["sentiment_kd"]["base_classifier"] is True
    assert "- its base model is a classifier fine-tuned elsewhere, on data not known here: if that included these " \
           "validation or test texts, its figures below read high" in (ours / "README.md").read_text()
    assert "base_classifier" not in json.loads((folder / "config.json").read_text())["sentiment_kd"]   # from an encoder
    # a teacher made here (its data recorded) fine-tuned further is not "trained elsewhere"
    ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={folder}", "--experiment=again"))
    assert "base_classifier" not in json.loads((tmp_path / "runs" / "again" / "teacher" / "config.json").read_text())["sentiment_kd"]
    assert "does not know" not in (tmp_path / "runs" / "again" / "logs" / "teacher.log").read_text()
    # but one made here from a classifier trained elsewhere passes that on
    ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={ours}", "--experiment=chain"))
    assert json.loads((tmp_path / "runs" / "chain" / "teacher" / "config.json").read_text())["sentiment_kd"]["base_classifier"]
    assert "does not know" in (tmp_path / "runs" / "chain" / "logs" / "teacher.log").read_text()


def test_taking_a_model_as_it_is_needs_a_classifier_of_the_data_classes(tiny_teacher, imdb_parquet, tmp_path):
    from transformers import AutoTokenizer, BertModel
    folder, metrics = tiny_teacher
    other = elsewhere_copy(folder, tmp_path / "other", {0: "sad", 1: "happy"}, [0, 1])
    encoder = tmp_path / "encoder"
    BertModel.from_pretrained(folder).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(folder).save_pretrained(encoder)
    for model, has in ((other, "a classifier of the classes sad, happy"), (encoder, "no classifier")):
        with pytest.raises(UsageError) as e:
            ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={model}", "--fine_tune=false"))
        assert str(e.value) == (f"--fine_tune=false takes {model} as the teacher as it is, but it is {has}, and the "
                                f"data's classes are negative, positive; fine-tune it (--fine_tune=true), or give a "
                                f"classifier of these classes (its config.json id2label naming them)")
    assert not (tmp_path / "runs" / "tiny" / "teacher").exists()
    # unnamed classes are taken in id order: stored the other way round, it scores below chance, and the log says why
    unnamed = elsewhere_copy(folder, tmp_path / "unnamed", {0: "LABEL_0", 1: "LABEL_1"}, [1, 0])
    adopted = ft.main(tiny_args(imdb_parquet, tmp_path / "runs", f"--model_name={unnamed}", "--fine_tune=false"))
    assert adopted["val_accuracy"] == pytest.approx(1 - metrics["val_accuracy"]) and adopted["val_accuracy"] < 0.5
    assert f"{unnamed}: validation accuracy {adopted['val_accuracy']:.4f}, below chance (0.5000): are its classes the " \
           "data's, in the order its config.json id2label names them?" in \
           (tmp_path / "runs" / "tiny" / "logs" / "teacher.log").read_text()


def test_a_progress_line_comes_between_the_trainers_logs(monkeypatch):
    # a run writing to a file has no progress bar: the new user's teacher log said nothing for 3.5 minutes
    import logging
    from types import SimpleNamespace

    import training
    clock = [1000.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: clock[0])
    monkeypatch.setenv("TQDM_DISABLE", "1")
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    kd, level = logging.getLogger("kd"), logging.getLogger("kd").level
    kd.addHandler(handler)
    kd.setLevel(logging.INFO)
    try:
        p, state = training.Progress(every_s=120), SimpleNamespace(is_world_process_zero=True, global_step=10, max_steps=110)
        p.on_step_end(None, state, None)                     # this part's first step (resumed at 10): the clock starts
        for step, t in ((20, 1100.0), (30, 1200.0), (40, 1250.0)):
            state.global_step, clock[0] = step, t
            p.on_step_end(None, state, None)                 # 100 s, then 200 s since the start: one line, at 200 s
        assert lines == ["step 30/110 (27%), 3 min trained, about 13 min left"]     # 20 steps in 200 s, 80 to go: 800 s
        p.on_log(None, state, None, logs={"loss": 0.5})      # the Trainer's own line: the next one 120 s after it
        state.global_step, clock[0] = 50, 1360.0
        p.on_step_end(None, state, None)
        assert len(lines) == 1
        state.global_step, clock[0] = 60, 1371.0
        p.on_step_end(None, state, None)
        assert lines[-1] == "step 60/110 (55%), 6 min trained, about 6 min left"    # 50 steps in 371 s, 50 to go
    finally:
        kd.removeHandler(handler)
        kd.setLevel(level)
    assert training.duration(45) == "45 s" and training.duration(600) == "10 min" and training.duration(7200) == "2.0 h"


def test_a_script_writing_to_a_file_logs_each_trainer_log_once(tmp_path, monkeypatch, caplog):
    # with stderr to a file (TQDM_DISABLE) the Trainer's bar-less callback printed each log again, as a dict of strings
    from types import SimpleNamespace

    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from models import build_tiny
    model = build_tiny("bert")[0]

    def callbacks(trainer):
        return {type(c) for c in trainer.callback_handler.callbacks}
    monkeypatch.setenv("TQDM_DISABLE", "1")
    ours = training.MeanLossTrainer(model=model, args=TrainingArguments(str(tmp_path / "a"), report_to="none"),
                                    callbacks=training.loggers("none", tmp_path))
    assert not callbacks(ours) & {ProgressCallback, PrinterCallback} and training.LogToFile in callbacks(ours)
    bench_like = training.MeanLossTrainer(model=model, args=TrainingArguments(str(tmp_path / "b"), report_to="none",
                                                                              disable_tqdm=True))
    assert PrinterCallback in callbacks(bench_like)                      # no LogToFile: the Trainer's printing stays
    with caplog.at_level("INFO", logger="kd"):
        training.LogToFile().on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=5, max_steps=10),
                                    None, logs={"loss": 0.123456789})
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("kd", "step 5/10 {'loss': 0.12346}")]   # the console's
    monkeypatch.delenv("TQDM_DISABLE")
    kept = training.MeanLossTrainer(model=model, args=TrainingArguments(str(tmp_path / "c"), report_to="none"),
                                    callbacks=training.loggers("none", tmp_path))
    assert ProgressCallback in callbacks(kept)                           # bars drawn: they print the logs
