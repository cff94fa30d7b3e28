"""distill_student.py: the loss against hand computation, the teacher-logit cache, layer cutting,
cross-tokenizer students, and the tiny experiment end to end."""
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import distill_student as ds
import runs
import fine_tuning_teacher as ft
from conftest import ROOT, narrow_student, stopped_at_save, tiny_args
import training
from configurator import UsageError
from models import load_classifier


# ---------------------------------------------------------------------------------------------- loss
def test_zero_kl_when_student_equals_teacher():
    logits = torch.randn(5, 2)
    loss, parts = training.distillation_loss(logits, logits.clone(), torch.tensor([0, 1, 0, 1, 1]), 0.0, 3.0)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-7) and loss.item() == pytest.approx(0.0, abs=1e-6)


def test_alpha_one_is_plain_cross_entropy():
    s, t, y = torch.randn(6, 2), torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    loss, parts = training.distillation_loss(s, t, y, 1.0, 2.0)
    assert loss.item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)
    assert parts["ce"].item() == pytest.approx(loss.item(), rel=1e-6)


def test_matches_hand_computation():
    s, t, y, a, T = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([1]), 0.3, 2.0
    ce = -math.log(math.exp(0) / (math.exp(2) + math.exp(0)))                     # log(1 + e^2)
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]                  # softmax([1, 0])
    pt = [1 / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))]            # softmax([0, .5])
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    loss, parts = training.distillation_loss(s, t, y, a, T)
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-6)
    assert loss.item() == pytest.approx(a * ce + (1 - a) * T ** 2 * kl, rel=1e-6)
    _, two = training.distillation_loss(s.repeat(2, 1), t.repeat(2, 1), y.repeat(2), a, T)   # logged parts: batch means
    assert two["kl"].item() == pytest.approx(kl, rel=1e-6) and two["ce"].item() == pytest.approx(ce, rel=1e-6)


def test_finite_with_huge_logits_and_fp16():
    s = torch.tensor([[1e4, -1e4], [-3e4, 3e4]])
    t = torch.tensor([[-1e4, 1e4], [3e4, -3e4]])
    loss, parts = training.distillation_loss(s, t, torch.tensor([0, 1]), 0.5, 2.0)
    assert torch.isfinite(loss) and torch.isfinite(parts["kl"]) and loss.dtype == torch.float32
    half, _ = training.distillation_loss(s.half() / 10, t.half() / 10, torch.tensor([0, 1]), 0.5, 2.0)
    assert torch.isfinite(half) and half.dtype == torch.float32


def test_unlabeled_rows_get_kl_only():
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    y = torch.tensor([1, -1, 0, -1])
    loss, parts = training.distillation_loss(s, t, y, 0.4, 2.0)
    kl_rows = F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="none").sum(-1)
    ce_rows = F.cross_entropy(s[[0, 2]], y[[0, 2]], reduction="none")
    assert loss.item() == pytest.approx(((0.4 * ce_rows).sum() + 0.6 * 4 * kl_rows.sum()).item() / 4, rel=1e-5)
    assert parts["ce"].item() == pytest.approx(ce_rows.mean().item(), rel=1e-6)
    only_unlabeled, p = training.distillation_loss(s, t, torch.tensor([-1, -1, -1, -1]), 0.4, 2.0)
    assert p["ce"].item() == 0 and only_unlabeled.item() == pytest.approx(0.6 * 4 * kl_rows.mean().item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- students
def test_cut_layers_keeps_the_chosen_teacher_layers():
    teacher, _ = load_classifier("tiny:bert", seed=1)
    teacher.eval()
    student = ds.cut_layers(teacher, [1])
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1
    kept, orig = student.bert.encoder.layer[0].state_dict(), teacher.bert.encoder.layer[1].state_dict()
    assert all(torch.equal(kept[k], orig[k]) for k in orig)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert len(teacher.bert.encoder.layer) == 2                      # the teacher is untouched
    with pytest.raises(UsageError, match="increasing indices in 0..1"):
        ds.cut_layers(teacher, [0, 5])


def test_cut_of_a_pretrained_model_keeps_its_layers():
    # {model, layers}: cut that checkpoint (here a tiny RoBERTa with its own byte-level tokenizer)
    student, tok = ds.build_student({"name": "s", "model": "tiny:roberta", "layers": [1]}, None, seed=3,
                                    labels=["negative", "positive"])
    full, _ = load_classifier("tiny:roberta", seed=3)
    assert student.config.num_hidden_layers == 1 and len(student.roberta.encoder.layer) == 1
    kept, orig = student.roberta.encoder.layer[0].state_dict(), full.roberta.encoder.layer[1].state_dict()
    assert all(torch.equal(kept[k], orig[k]) for k in orig)
    assert torch.equal(student.roberta.embeddings.word_embeddings.weight, full.roberta.embeddings.word_embeddings.weight)
    assert tok("a b")["input_ids"][0] == tok.bos_token_id                       # the model's own tokenizer
    # a pretrained student gets a head for the teacher's labels, however many
    three, _ = ds.build_student({"name": "s", "model": "tiny:bert"}, None, seed=3, labels=["neg", "neu", "pos"])
    assert three.classifier.out_features == 3 and three.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


def test_per_student_values_follow_one_precedence_rule(tmp_path):
    from configurator import configure
    f = tmp_path / "e.toml"
    f.write_text('epochs = 3.0\n[distill_student]\nstudents = [{name = "a", layers = [0], epochs = 4.0}, '
                 '{name = "b", layers = [0]}]\n')
    ns = vars(ds)

    def epochs(*argv):
        cfg = configure(ns, ["--config", str(f), *argv], "distill_student")
        return {s["name"]: ds.student_settings(s, cfg)["epochs"] for s in ds.STUDENTS}
    try:
        assert epochs() == {"a": 4.0, "b": 3.0}                  # same level (file): per-student wins
        assert epochs("--epochs=1") == {"a": 1.0, "b": 1.0}      # command line beats the file's student value
        assert epochs("--epochs=1", '--students=[{name = "a", layers = [0], epochs = 4.0}]') == {"a": 4.0}
    finally:
        configure(ns, [], "distill_student")


def test_a_students_seed_is_its_own():
    # the command line beats per-student values, except a replicate's seed (SEED also fixes the split)
    from configurator import configure
    ns = vars(ds)
    try:
        cfg = configure(ns, ["--seed=5", "--epochs=1", '--students=[{name = "a", layers = [0], seed = 3}, {name = "b", layers = [0]}]'])
        cfg["_sources"]["STUDENTS"] = "file"          # students from a file, seed and epochs from the command line
        assert [ds.student_settings(s, cfg)["seed"] for s in ds.STUDENTS] == [3, 5]
        with pytest.raises(UsageError, match=r"student 'a': epochs = 0.0: must be > 0"):
            ds.student_settings({"name": "a", "layers": [0], "epochs": 0}, cfg | {"_sources": cfg["_sources"] | {"EPOCHS": "default"}})
    finally:
        configure(ns, [], "distill_student")


def test_a_students_resume_settings_name_what_it_learns_from(tiny_experiment, tmp_path):
    # what an interrupted student must resume with (runs.check_resume compares them): its own settings,
    # and the teacher's weights when it learns from them or is cut from them
    import dataclasses

    from configurator import configure
    ns = vars(ds)
    students = ('--students=[{name = "cut", layers = [1]}, {name = "r", model = "tiny:roberta", layers = [1]}]')
    shutil.copytree(tiny_experiment / "tiny" / "teacher", tmp_path / "teacher")
    try:
        cfg = configure(ns, [students], "distill_student")
        teacher = ds.Teacher(tmp_path / "teacher", ("negative", "positive"), 0.9, None, {}, True)

        def settings(cfg, teacher):
            return {r.name: ds.run_settings(r, cfg, teacher) for r in ds.selected_runs(cfg)}
        before = settings(cfg, teacher)
        assert list(before) == ["cut", "cut-baseline", "r", "r-baseline"]
        assert before["r"]["student"]["learning_rate"] == cfg["LEARNING_RATE"] and "output_dir" not in before["r"]
        assert settings(configure(ns, [students, "--eval_batch_size=3", "--logging_steps=7"], "distill_student"),
                        teacher) == before
        lr = settings(configure(ns, [students, "--learning_rate=0.5"], "distill_student"), teacher)
        assert all(lr[n]["student"]["learning_rate"] == 0.5 != before[n]["student"]["learning_rate"] for n in before)
        # a baseline trains as many steps as its twin, whose transfer texts count: they are its settings too
        more = settings(configure(ns, [students, "--transfer_size=3"], "distill_student"), teacher)
        assert {n for n in before if more[n] != before[n]} == set(before)
        assert more["r-baseline"]["student"]["transfer_size"] == 0 and more["r-baseline"]["student"]["twin_transfer_size"] == 3
        moved = tmp_path / "moved"                     # the teacher's run, not where it lies: a copy resumes
        shutil.copytree(tmp_path / "teacher", moved)
        assert settings(cfg, dataclasses.replace(teacher, where=moved)) == before
        metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
        (tmp_path / "teacher" / "metrics.json").write_text(json.dumps(metrics | {"train_time_s": metrics["train_time_s"] + 1000}))   # retrained
        after = settings(cfg, teacher)
        assert {n for n in before if after[n] != before[n]} == {"cut", "cut-baseline", "r"}   # not r's labels-only twin
        # the intermediate losses of a student cut from the teacher: its layer map's rule (changed 2 Dec 2026) counts
        inner = settings(configure(ns, [students, "--hidden_weight=0.5"], "distill_student"), teacher)
        assert inner["cut"]["student"]["layer_map"] == "top of each block"
        assert "layer_map" not in inner["cut-baseline"]["student"] and "layer_map" not in inner["r"]["student"]
        assert "layer_map" not in after["cut"]["student"]                                  # without those losses: none
    finally:
        configure(ns, [], "distill_student")


def test_a_gpu_that_only_emulates_bf16_trains_in_fp16(monkeypatch):
    # torch's is_bf16_supported() counts emulation by default: a T4 or V100 said yes, and trained in emulated bf16
    import training
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert training.pick_precision() == {"fp16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)    # Ampere and newer
    assert training.pick_precision() == {"bf16": True}


def test_a_students_record_names_the_model_it_descends_from(tiny_experiment):
    # a cut student's card read its base model (and license) from the teacher's folder by a path relative to where
    # distill_student.py ran: evaluated from elsewhere, the card lost them. Recorded with the student now.
    def record(name):
        return json.loads((tiny_experiment / "tiny" / "students" / name / "config.json").read_text())["sentiment_kd"]
    assert record("cut")["base_model"] == record("cut-baseline")["base_model"] == "tiny:bert"    # the teacher's
    assert record("roberta")["base_model"] == "tiny:roberta"                                       # its own
    from model_card import base_model
    assert base_model(record("cut") | {"base_model": "bert-base-uncased", "teacher": "rel/nowhere"}) == "bert-base-uncased"


def test_teacher_logits_of_another_precision_are_another_cache(tiny_experiment, monkeypatch):
    # a GPU computes them under bf16 autocast: a CPU run must not reuse them as fp32 (nor the reverse)
    folder = tiny_experiment / "tiny" / "teacher"
    kd = json.loads((folder / "config.json").read_text())["sentiment_kd"]
    on_cpu = ds.teacher_key(folder, kd)
    monkeypatch.setattr(ds, "default_device", lambda device="auto": "cuda")
    import training
    monkeypatch.setattr(training, "pick_precision", lambda: {"bf16": True})
    assert ds.logit_precision() == "bf16" and ds.teacher_key(folder, kd) != on_cpu
    bf16 = ds.teacher_key(folder, kd)
    monkeypatch.setattr(training, "pick_precision", lambda: {"fp16": True})     # a GPU without bf16 (T4, V100): as it trains
    assert ds.logit_precision() == "fp16" and ds.teacher_key(folder, kd) not in (on_cpu, bf16)


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch < 2.9 has only the legacy TF32 flags")
def test_tf32_set_as_transformers_sets_it_stays_readable_for_torch_compile(tmp_path):
    # on a GPU, TrainingArguments(tf32=True) sets TF32 with torch's new API; torch.compile's inductor then read the
    # legacy flag, which raised "mix of the legacy and new APIs" (pytorch#166387): bench's compile lever failed
    import warnings

    from transformers.utils.import_utils import enable_tf32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enable_tf32.__wrapped__(True)         # what TrainingArguments does on Ampere+ (its lru_cache bypassed)
            with pytest.raises(RuntimeError, match="mix of the legacy and new"):
                torch.get_float32_matmul_precision()
            training.training_arguments(tmp_path, epochs=1, batch_size=8, learning_rate=1e-4, eval_batch_size=8, seed=0)
            assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.allow_tf32
            assert torch.backends.cuda.matmul.fp32_precision == "tf32"      # TF32 kept, not undone
    finally:                                      # as a fresh process has it, for the tests after this one
        torch.backends.fp32_precision = "none"
        torch.set_float32_matmul_precision("highest")


def test_optimizer_steps_matches_the_trainer_arithmetic(tmp_path, caplog):
    assert training.optimizer_steps(40, 1.0, 8, 1) == 5 and training.optimizer_steps(44, 1.0, 8, 1) == 6
    assert training.optimizer_steps(44, 2.5, 8, 1) == 15 and training.optimizer_steps(44, 1.0, 8, 4) == 2
    assert training.optimizer_steps(100, 1.0, 10, 1, world_size=2) == 5
    assert training.optimizer_steps(40, 1.5, 8, 1) == 8                    # 5 batches x 1.5 epochs = 7.5: rounded up
    # a model about to take fewer than FEW_STEPS (a small file at batch 32) is warned of before training
    args = training.training_arguments(tmp_path, epochs=2.0, batch_size=32, learning_rate=1e-4, eval_batch_size=8, seed=0)
    assert training.planned_steps(args, 60) == 4 and training.planned_steps(args, 320) == 20
    capped = training.training_arguments(tmp_path, epochs=2.0, batch_size=32, learning_rate=1e-4, eval_batch_size=8,
                                         seed=0, max_steps=7)          # a matched baseline: its twin's steps
    assert training.planned_steps(capped, 60) == 7
    with caplog.at_level("WARNING", logger="kd"):
        training.warn_if_few_steps(tmp_path / "L3", args, 60)
        training.warn_if_few_steps(tmp_path / "L6", args, 320)
    assert [r.getMessage() for r in caplog.records] == ["L3: only 4 optimizer steps (60 training examples, batch 32, 2 "
        "epochs): too few to learn the task much; raise --epochs or lower --batch_size (a few hundred steps is typical)"]


def test_a_lone_process_on_several_gpus_counts_every_gpus_batch(monkeypatch):
    # the Trainer's DataParallel: batch 8 x 4 GPUs, so the twin of 40 labels + 4 transfer texts takes 2 steps, not 6
    from types import SimpleNamespace
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert runs.devices_per_process() == 4
    monkeypatch.setenv("WORLD_SIZE", "4")                    # torchrun: a process a GPU
    assert runs.devices_per_process() == 1
    monkeypatch.undo()                                        # this machine again, four GPUs as twin_steps sees them
    monkeypatch.setattr(runs, "devices_per_process", lambda: 4)
    run = SimpleNamespace(settings={"transfer_size": 4, "batch_size": 8})
    assert ds.twin_steps(run, 40, 4, 1.0) == 2 and ds.twin_steps(run, 40, 4, 3.0) == 6
    # a transfer set asked larger than the unlabelled texts at hand counts the texts there are: ceil(44 / 32)
    more = SimpleNamespace(settings={"transfer_size": 100, "batch_size": 8})
    assert ds.twin_steps(more, 40, 4, 1.0) == 2 and ds.twin_steps(more, 40, 100, 1.0) == 5


def test_eval_steps_evaluates_and_checkpoints_both_twins_alike(monkeypatch):
    # a user's Ctrl-C at 95% of a 1-epoch student lost it all: a checkpoint came only with each (twin) epoch
    from types import SimpleNamespace
    monkeypatch.setattr(runs, "devices_per_process", lambda: 1)
    twins = [SimpleNamespace(settings={"transfer_size": 4, "batch_size": 8}, distilled=d) for d in (True, False)]
    assert [ds.evaluation_steps(r, 40, 4) for r in twins] == [6, 6]          # each epoch of the twin's 44 texts
    monkeypatch.setattr(ds, "EVAL_STEPS", 2)
    assert [ds.evaluation_steps(r, 40, 4) for r in twins] == [2, 2]


def test_student_list_is_validated():
    from configurator import configure
    cfg = configure(vars(ds), [], "distill_student")
    with pytest.raises(UsageError, match="give a model .*, layers .* or both"):
        ds.check_students([{"name": "x"}], cfg)
    with pytest.raises(UsageError, match="unknown key 'lr'"):
        ds.check_students([{"name": "x", "layers": [0], "lr": 1}], cfg)
    with pytest.raises(UsageError, match=r"^student 'x' in \S+quick.toml: unknown key 'learning_rat'; did you mean "
                                         r"learning_rate\?; valid: "):                         # a typo in a config file
        ds.check_students([{"name": "x", "layers": [0], "learning_rat": 1e-4}],
                          cfg | {"_sources": {"STUDENTS": "file"}, "_config_file": "configs/quick.toml"})
    with pytest.raises(UsageError, match="unknown key 'layerz'"):     # named before the missing layers
        ds.check_students([{"name": "x", "layerz": [0]}], cfg)
    with pytest.raises(UsageError, match=r"^student 'x': alpha = 1.5: must be between 0 and 1$"):
        ds.check_students([{"name": "x", "layers": [0], "alpha": 1.5}], cfg)
    with pytest.raises(UsageError, match=r"^epochs = 'four' in student 'x': expected float, got str$"):
        ds.check_students([{"name": "x", "layers": [0], "epochs": "four"}], cfg)
    with pytest.raises(UsageError, match="appears twice"):
        ds.check_students([{"name": "x", "layers": [0]}, {"name": "x", "model": "m"}], cfg)
    for name in ("teacher", "texts", "a/b"):      # the teacher's row and folder, evaluation's texts.csv, a path
        with pytest.raises(UsageError, match=rf"^student name '{name}': use letters, digits, .* and not 'teacher' or 'texts'"):
            ds.check_students([{"name": name, "layers": [0]}], cfg)
    for name in ("L1-baseline", "L1-int8", "L1-onnx-fp32"):  # L1's baseline, predictions/L1-int8.csv of L1's int8 row
        with pytest.raises(UsageError, match=rf"^student name '{name}': a name may not end in -baseline, -int8, .* would clash\)$"):
            ds.check_students([{"name": name, "layers": [0]}], cfg)
    assert ds.check_students([{"name": "L1-int8x", "layers": [0]}], cfg)       # only the suffix is taken


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, imdb_parquet):
    out = tmp_path_factory.mktemp("distill")
    ft.main(tiny_args(imdb_parquet, out))
    return out


def count_teacher_rows(monkeypatch):
    calls = []
    real = ds.predict_logits

    def counting(model, tokenizer, texts, *args):
        calls.append(len(texts))
        return real(model, tokenizer, texts, *args)
    monkeypatch.setattr(ds, "predict_logits", counting)
    return calls


def test_tiny_distillation_end_to_end(tiny_run, imdb_parquet, monkeypatch):
    from transformers import pipeline
    calls = count_teacher_rows(monkeypatch)
    result = ds.main(tiny_args(imdb_parquet, tiny_run))
    # the teacher ran once, over train (40) + the largest transfer set (4), for three student runs
    assert calls == [44]
    assert set(result["students"]) == {"cut", "cut-baseline", "roberta"}
    students = tiny_run / "tiny" / "students"
    for name in ("cut", "cut-baseline", "roberta"):
        metrics = json.loads((students / name / "metrics.json").read_text())
        assert 0 <= metrics["val_accuracy"] <= 1 and metrics["train_examples"] == (40 if name == "cut-baseline" else 44)
        kd = json.loads((students / name / "config.json").read_text())["sentiment_kd"]
        assert kd["kind"] == ("baseline" if name.endswith("baseline") else "distilled")
        out = pipeline("text-classification", model=str(students / name), device=-1)(["a great film"])
        assert out[0]["label"] in ("negative", "positive")
    # the baseline took as many optimizer steps as its distilled twin (which also saw 4 transfer reviews)
    steps = {n: json.loads((students / n / "metrics.json").read_text())["optimizer_steps"] for n in ("cut", "cut-baseline")}
    assert steps == {"cut": 18, "cut-baseline": 18}            # 3 epochs of 44 rows at batch 8
    assert "trained on 40 examples, 3.6 epochs (18 optimizer steps)" in (students / "cut-baseline" / "README.md").read_text()
    # what the process held as each began (a first student's conditions beside a later one's): trained in order
    at_start = [json.loads((students / n / "metrics.json").read_text())["process_at_start"] for n in ("cut", "cut-baseline", "roberta")]
    before = [a["models_trained_before"] for a in at_start]
    assert before == [before[0], before[0] + 1, before[0] + 2] and all(a["torch_threads"] >= 1 and a["os_threads"] >= 1 for a in at_start)
    # and was chosen among checkpoints validated at the same steps (not at each of its shorter epochs: steps 5, 10, 15 too)
    evals = {n: [h["step"] for h in json.loads((students / n / "metrics.json").read_text())["log_history"]
                 if "eval_accuracy" in h] for n in ("cut", "cut-baseline")}
    assert evals == {"cut": [6, 12, 18, 18], "cut-baseline": [6, 12, 18, 18]}   # at the twin's epochs, then the final one
    # cut was saved before its baseline; its card is rewritten after it, naming the baseline's accuracy
    baseline = json.loads((students / "cut-baseline" / "metrics.json").read_text())["val_accuracy"]
    assert f"baseline (same student, seed and steps): validation accuracy {baseline:.4f}" in (students / "cut" / "README.md").read_text()
    cut = json.loads((students / "cut" / "config.json").read_text())
    assert cut["num_hidden_layers"] == 1 and cut["sentiment_kd"]["settings"]["alpha"] == 0.5
    import transformers   # the versions a run used are saved with it (a GPU image may carry others)
    assert cut["sentiment_kd"]["run_config"]["versions"]["transformers"] == transformers.__version__
    # one record per model, one copy of each fact: a baseline's record says what it trained with
    base = json.loads((students / "cut-baseline" / "config.json").read_text())["sentiment_kd"]
    assert (base["settings"]["alpha"], base["settings"]["transfer_size"]) == (1.0, 0)
    assert not {"alpha", "temperature", "transfer_size", "seed"} & set(base) and "max_length" not in base["settings"]
    assert not {"alpha", "kind", "name", "transfer_size"} & set(json.loads((students / "cut-baseline" / "metrics.json").read_text()))
    # the roberta student tokenizes itself (byte-level BPE) while its teacher is WordPiece
    roberta = json.loads((students / "roberta" / "config.json").read_text())
    assert roberta["model_type"] == "roberta" and roberta["num_hidden_layers"] == 1   # tiny:roberta cut to its layer 1
    logs = [h for h in json.loads((students / "cut" / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert all("loss_ce" in h and "loss_kl" in h for h in logs)             # both parts logged

    # a re-run skips finished students without loading data or running the teacher at all
    calls.clear()
    skipped = ds.main(tiny_args(imdb_parquet, tiny_run))
    assert calls == [] and skipped["teacher_logits"] is None and set(skipped["students"]) == set(result["students"])
    # with --overwrite it retrains them from the cached logits
    again = ds.main(tiny_args(imdb_parquet, tiny_run, "--overwrite=true", "--only=cut"))
    assert calls == [] and again["teacher_logits"]["computed"] == 0 and again["teacher_logits"]["reused"] == 44
    assert set(again["students"]) == {"cut", "cut-baseline"}


def test_the_best_entry_of_each_student_is_chosen_by_its_accuracy_or_its_gain_over_its_matched_baseline():
    def row(name, kind, acc, steps, layers=None, seed=1):
        return {"model": name, "kind": kind, "accuracy": acc, "steps": steps, "seed": seed, "max_length": 64,
                "student": {"name": name.removesuffix("-baseline"), "model": "m", **({"layers": layers} if layers else {})},
                "settings": {"learning_rate": 0.1, "batch_size": 8, "seed": seed}}
    rows = [row("L6-t0", "distilled", 0.80, 10), row("L6-t0-baseline", "baseline", 0.78, 10),            # +0.02
            row("L6-t20", "distilled", 0.83, 20), row("L6-t20-baseline", "baseline", 0.80, 20),          # +0.03
            row("L6-t20-T4", "distilled", 0.84, 20),          # no baseline of its own: t20's has its steps, +0.04
            row("L3-a", "distilled", 0.70, 10, [0, 2]), row("L3-a-baseline", "baseline", 0.70, 10, [0, 2]),   # 0
            row("L3-b", "distilled", 0.72, 20, [0, 2]), row("L3-b-baseline", "baseline", 0.72, 20, [0, 2]),   # 0, higher
            row("L3-c", "distilled", 0.99, 30, [0, 2]),       # no baseline at its steps: not a candidate
            row("L3-d", "distilled", 0.99, 20, [0, 2], seed=2)]    # nor at its seed
    chosen = ds.choose_best(rows)
    assert [(c["student"], c["chosen"]) for c in chosen] == [("m", "L6-t20-T4"), ("m layers [0, 2]", "L3-b")]
    assert [(x["model"], x["baseline"], x["gain"]) for x in chosen[0]["candidates"]] == \
        [("L6-t0", "L6-t0-baseline", 0.02), ("L6-t20", "L6-t20-baseline", 0.03), ("L6-t20-T4", "L6-t20-baseline", 0.04)]
    assert [x["model"] for x in chosen[1]["candidates"]] == ["L3-a", "L3-b"]
    assert [c["chosen"] for c in ds.choose_best(rows, "gain")] == ["L6-t20-T4", "L3-b"]      # ties: the higher accuracy
    rows[4]["accuracy"] = 0.82            # now below t20's gain and accuracy: t20 wins either way
    assert ds.choose_best(rows)[0]["chosen"] == ds.choose_best(rows, "gain")[0]["chosen"] == "L6-t20"
    rows[1]["accuracy"] = 0.70            # t0's baseline drew low: the largest gain (+0.10), not the best student
    assert ds.choose_best(rows, "gain")[0]["chosen"] == "L6-t0" and ds.choose_best(rows)[0]["chosen"] == "L6-t20"
    rows[5]["accuracy"], rows[6]["accuracy"] = 0.72, 0.70     # L3-a as accurate as L3-b and ahead of its baseline:
    assert ds.choose_best(rows)[1]["chosen"] == "L3-a"        # no F1 recorded, the first; by gain, L3-a too
    rows[5]["f1"], rows[7]["f1"] = 0.70, 0.71                 # ties to validation macro F1, not to the baseline
    assert ds.choose_best(rows)[1]["chosen"] == "L3-b" and ds.choose_best(rows, "gain")[1]["chosen"] == "L3-a"
    assert [x["f1"] for x in ds.choose_best(rows)[1]["candidates"]] == [0.70, 0.71]
    # an entry that predicted only some classes on validation loses to any that learned them all, whatever its figures
    rows[2]["missed"] = rows[4]["missed"] = "it predicted one class for every validation text"
    assert ds.choose_best(rows)[0]["chosen"] == ds.choose_best(rows, "gain")[0]["chosen"] == "L6-t0"
    assert [x["missed"] for x in ds.choose_best(rows)[0]["candidates"]] == ["", rows[2]["missed"], rows[2]["missed"]]
    rows[0]["missed"] = "it predicted only 2 of its 3 classes on validation"      # none learned: the rule as before
    assert ds.choose_best(rows)[0]["chosen"] == "L6-t20" and ds.choose_best(rows, "gain")[0]["chosen"] == "L6-t0"


def test_a_saved_students_record_gives_what_pairs_it_with_its_baseline():
    # the one reading of a saved student that distillation's choice and evaluation's pairing share (models.student_key)
    from models import student_fields, student_key
    kd = {"student": {"name": "L3-s2", "layers": [0, 2]}, "settings": {"seed": 2, "learning_rate": 0.1, "batch_size": 8},
          "max_length": 64, "kind": "distilled"}
    fields = student_fields(kd, {"optimizer_steps": 7, "val_accuracy": 0.9})
    assert fields == {"student": kd["student"], "settings": kd["settings"], "max_length": 64, "seed": 2, "steps": 7,
                      "match_steps": True}                    # older records: a baseline was matched
    assert student_fields(kd | {"run_config": {"match_steps": False}}, {})["match_steps"] is False
    assert student_key(fields) != student_key(student_fields(kd, {"optimizer_steps": 8}))   # other steps: not its twin
    assert student_key(fields) != student_key(student_fields(kd | {"max_length": 128}, {"optimizer_steps": 7}))  # other length
    assert student_key(fields) != student_key(student_fields(kd | {"settings": kd["settings"] | {"learning_rate": 0.2}},
                                                             {"optimizer_steps": 7}))
    assert student_key(fields) == student_key(student_fields(kd | {"student": {"name": "L3-s2-baseline", "layers": [0, 2]},
                                                                   "kind": "baseline"}, {"optimizer_steps": 7}))   # its twin


def test_the_chosen_entry_is_copied_at_the_next_seeds_under_names_evaluation_groups():
    spec = {"name": "L6-t20k-s1", "model": "m", "transfer_size": 20, "baseline": False, "seed": 1}
    assert ds.seed_entries(spec, 1, 3) == [spec | {"name": "L6-t20k-s2", "seed": 2}, spec | {"name": "L6-t20k-s3", "seed": 3}]
    assert [e["name"] for e in ds.seed_entries({"name": "L6", "model": "m"}, 42, 2)] == ["L6-s43"]
    assert ds.seed_entries(spec, 1, 1) == []


def test_best_seeds_trains_the_entry_chosen_on_validation_at_more_seeds(tiny_run, imdb_parquet, monkeypatch):
    import evaluate_models as ev
    from models import recipe
    students = ('[{name = "A-s1", layers = [1], transfer_size = 0, seed = 1}, '
                '{name = "B-s1", layers = [1], transfer_size = 4, seed = 1}, '
                '{name = "C-s1", layers = [1], transfer_size = 4, temperature = 4.0, baseline = false, seed = 1}]')
    args = tiny_args(imdb_parquet, tiny_run, "--experiment=best", f"--teacher_dir={tiny_run}/tiny/teacher", "--epochs=1",
                     f"--students={students}", "--best_seeds=2")
    result = ds.main(args)
    root = tiny_run / "best"
    val = {n: m["val_accuracy"] for n, m in result["students"].items()}
    gains = {"A-s1": val["A-s1"] - val["A-s1-baseline"], "B-s1": val["B-s1"] - val["B-s1-baseline"],
             "C-s1": val["C-s1"] - val["B-s1-baseline"]}             # C shares B's baseline: same student, seed, steps
    best = max(gains, key=lambda n: (val[n], round(gains[n], 9)))      # CHOOSE_BY accuracy: the best student
    chosen = json.loads((root / "chosen.json").read_text())
    assert chosen["best_seeds"] == 2 and [c["chosen"] for c in chosen["students"]] == [best]
    assert chosen["choose_by"] == "accuracy" and chosen["by"].startswith("validation accuracy of each distilled entry with")
    c = chosen["students"][0]
    assert {x["model"]: x["gain"] for x in c["candidates"]} == pytest.approx(gains)
    for x in c["candidates"]:                # missed: what each entry's own record says of the classes it predicted
        m = json.loads((root / "students" / x["model"] / "metrics.json").read_text())
        assert bool(x["missed"]) == (m["val_classes_predicted"] < m["val_classes_in_labels"])
    assert ("best_seeds: every candidate of" in (root / "logs" / "distill.log").read_text()) == \
        all(x["missed"] for x in c["candidates"])       # said when the choice is among models that have not learned
    label = best.removesuffix("-s1")
    assert c["models"] == [best, f"{label}-s2"] and c["baselines"][1:] == [f"{label}-s2-baseline"]
    assert c["baselines"][0] == ("B-s1-baseline" if best == "C-s1" else f"{best}-baseline")
    assert set(result["students"]) == {"A-s1", "A-s1-baseline", "B-s1", "B-s1-baseline", "C-s1",
                                       f"{label}-s2", f"{label}-s2-baseline"}
    for name in (f"{label}-s2", f"{label}-s2-baseline"):      # the chosen recipe at seed 2, each with a baseline
        kd = json.loads((root / "students" / name / "config.json").read_text())["sentiment_kd"]
        assert kd["settings"]["seed"] == 2 and recipe({"model": name, "student": kd["student"]})[0] == label
    # a re-run keeps everything, and --only makes no choice among a few entries (the sweep's stays)
    before = (root / "chosen.json").read_text()
    assert ds.main(args)["teacher_logits"] is None and ds.main(args + ["--only=A-s1"])["teacher_logits"] is None
    assert (root / "chosen.json").read_text() == before
    # the study goes on by the rule it chose by (one made before choose_by: by gain); another is refused before training
    with pytest.raises(UsageError, match=r"^--choose_by=gain: this study's choice \(.*chosen.json\) was made by accuracy; go on"):
        ds.main(args + ["--choose_by=gain"])
    (root / "chosen.json").write_text(json.dumps({k: v for k, v in json.loads(before).items() if k != "choose_by"}))
    with pytest.raises(UsageError, match=r"^--choose_by=accuracy: .* was made by gain; go on with --choose_by=gain, or remove"):
        ds.main(args)
    (root / "chosen.json").write_text(before)
    # an added seed is checked like every run: one kept with other settings is refused
    added = root / "students" / f"{label}-s2" / "config.json"
    saved = added.read_text()
    edited = json.loads(saved)
    edited["sentiment_kd"]["training_settings"]["learning_rate"] = 9.9
    added.write_text(json.dumps(edited))
    with pytest.raises(UsageError, match=rf"{label}-s2 holds a finished run made with learning_rate = 9.9"):
        ds.main(args)
    added.write_text(saved)
    # evaluation of --models=chosen measures the chosen recipe's seeds and baselines only
    result = ev.main(tiny_args(imdb_parquet, tiny_run, "--experiment=best", f"--teacher_dir={tiny_run}/tiny/teacher",
                               "--models=chosen,teacher", "--quantize=false", cache=False))
    assert [r["model"] for r in result["rows"]] == ["teacher"] + sorted(c["models"] + c["baselines"])
    assert [(g["student"], g["gain"]["n"]) for g in result["groups"]] == [(label, 2)]     # its seeds are one recipe
    report = (root / "results.md").read_text()                 # the choice, on validation, beside the test results
    x = next(x for x in c["candidates"] if x["model"] == best)
    cell = best + (f" ({x['missed']})" if x["missed"] else "")   # a candidate that missed a class says so
    assert f"| {cell} | {100 * x['accuracy']:.2f} | {x['baseline']} | {100 * x['baseline_accuracy']:.2f} | " \
           f"{100 * x['gain']:+.2f} | yes |" in report and report.count("| yes |") == 1
    assert "\n\nChosen by validation accuracy of each distilled entry with a matched baseline, ties to its macro F1 " \
           "(matched: " in report                                      # the rule it was chosen by
    # a chosen entry without a baseline of its own (C) brings the one it was compared with
    # (and the seeds not trained yet, a stopped run's, are left out)
    (root / "chosen.json").write_text(json.dumps({"best_seeds": 2, "students": [
        {"student": "x", "candidates": [], "chosen": "C-s1", "models": ["C-s1", "C-s7"], "baselines": ["B-s1-baseline", "C-s7-baseline"]}]}))
    rows = ev.main(tiny_args(imdb_parquet, tiny_run, "--experiment=best", f"--teacher_dir={tiny_run}/tiny/teacher",
                             "--models=chosen", "--quantize=false", "--split=validation", cache=False))["rows"]
    assert [r["model"] for r in rows] == ["teacher", "B-s1-baseline", "C-s1"]
    published = json.loads((root / "validation-results.json").read_text())      # and said where the results are read
    assert published["not_finished"] == ["C-s7", "C-s7-baseline"]
    assert "**Not finished, so not here**: C-s7, C-s7-baseline (the study's seeds in chosen.json)." in \
        (root / "validation-results.md").read_text()
    (root / "chosen.json").write_text(json.dumps({"best_seeds": 2, "students": []}))
    with pytest.raises(UsageError, match=r"names no finished model \(no entry of the sweep had a matched baseline"):
        ev.main(tiny_args(imdb_parquet, tiny_run, "--experiment=best", f"--teacher_dir={tiny_run}/tiny/teacher",
                          "--models=chosen", cache=False))
    with pytest.raises(UsageError, match=r"--models=chosen: no .*chosen.json: distill_student.py with --best_seeds=3"):
        ev.main(tiny_args(imdb_parquet, tiny_run, "--models=chosen", cache=False))
    # a sweep with entries left to train removes the choice made without them (its end chooses again)
    from configurator import configure
    cfg = configure(vars(ds), args)
    ds.forget_choice([])
    assert (root / "chosen.json").is_file()
    ds.forget_choice(ds.selected_runs(cfg)[:1])
    assert not (root / "chosen.json").exists()


def test_best_seeds_refuses_what_it_could_not_choose_or_name(tiny_run, imdb_parquet, tmp_path):
    def refused(students, *flags):
        return tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--teacher_dir={tiny_run}/tiny/teacher",
                         f"--students={students}", "--best_seeds=3", *flags)
    a = '{name = "A-s1", layers = [1], seed = 1}'
    with pytest.raises(UsageError, match=r"A-s1 would be trained again as A-s2, a name STUDENTS gives another entry"):
        ds.main(refused(f'[{a}, {{name = "A-s2", layers = [1], transfer_size = 4, seed = 2}}]'))
    with pytest.raises(UsageError, match=r"A-s1 and A would both be trained again as A-s2"):
        ds.main(refused(f'[{a}, {{name = "A", layers = [1], transfer_size = 4, seed = 1}}]'))
    with pytest.raises(UsageError, match=r"no student has a labels-only baseline to be chosen by"):
        ds.main(refused(f'[{a}]', "--baseline=false"))
    assert not (tmp_path / "refused").exists()


def test_baselines_without_matched_steps(tiny_run, imdb_parquet):
    result = ds.main(tiny_args(imdb_parquet, tiny_run, "--experiment=unmatched", f"--teacher_dir={tiny_run}/tiny/teacher",
                               "--only=cut", "--match_steps=false"))
    steps = {n: m["optimizer_steps"] for n, m in result["students"].items()}
    assert steps == {"cut": 18, "cut-baseline": 15}        # 44 reviews vs 40 labeled ones, batch 8, 3 epochs (tiny.toml)


def test_the_checks_and_the_training_load_the_data_once(tiny_run, imdb_parquet):
    # the selected student reads no transfer texts, another one would: both phases load the data without them
    import data_utils as du
    du.load_splits.cache_clear()
    result = ds.main(tiny_args(imdb_parquet, tiny_run, "--experiment=once", f"--teacher_dir={tiny_run}/tiny/teacher",
                               '--students=[{name = "cut", layers = [1], transfer_size = 4}, '
                               '{name = "plain", layers = [1], baseline = false}]', "--only=plain"))
    assert set(result["students"]) == {"plain"} and result["students"]["plain"]["train_examples"] == 40
    assert du.load_splits.cache_info().misses == 1


def test_students_that_read_more_tokens_than_the_teacher_are_refused_unless_they_ask_for_it(caplog, monkeypatch):
    # MAX_LENGTH edited in fine_tuning_teacher.py only: the students would read 512 tokens to its 64, slower
    from types import SimpleNamespace
    monkeypatch.setattr(ds, "MAX_LENGTH", 512)
    run = lambda spec, m: SimpleNamespace(spec=spec, settings={"max_length": m})      # noqa: E731
    meant, short, unmeant = run({"name": "L2", "max_length": 512}, 512), run({"name": "L1"}, 64), run({"name": "X"}, 512)
    teacher = 64, "the teacher t was trained on"
    with caplog.at_level("WARNING", logger="kd"):
        ds.check_length_against_teacher([meant, short], *teacher, {"L2", "L1"}, {})        # its own max_length: meant
    assert "was trained on (64): L2 512; they train" in caplog.text and "L1" not in caplog.text
    caplog.clear()
    ds.check_length_against_teacher([short], *teacher, {"L1"}, {})
    assert caplog.text == ""
    with pytest.raises(UsageError) as e:
        ds.check_length_against_teacher([meant, short, unmeant], *teacher, {"L2", "L1", "X"}, {"_sources": {}})
    assert str(e.value) == ("MAX_LENGTH = 512 (at the top of distill_student.py), but the teacher t was trained on 64 "
                            "tokens: student X would read 512, training and predicting slower on text the teacher never "
                            "read; set it to 64 (--max_length=64; a config file's top-level max_length sets every "
                            "script's), or give a student a max_length of its own in STUDENTS to mean it")
    with pytest.raises(UsageError, match=r"^--max_length=512, but"):
        ds.check_length_against_teacher([unmeant], *teacher, {"X"}, {"_sources": {"MAX_LENGTH": "flag"}})
    ds.check_length_against_teacher([unmeant], *teacher, set(), {})      # finished and kept: as it was trained
    overruled = run({"name": "Y", "max_length": 64}, 512)          # its own 64, beaten by --max_length=512
    with pytest.raises(UsageError, match=r"^--max_length=512, but .* student Y would read 512"):
        ds.check_length_against_teacher([overruled], *teacher, {"Y"}, {"_sources": {"MAX_LENGTH": "flag"}})


def test_the_length_check_before_the_teacher_skips_a_teacher_that_is_kept(monkeypatch):
    # run_experiment.sh's pre-check: a finished teacher that is kept was trained already (distill checks its recorded
    # length at its start); one about to train, or to train again (--overwrite), is checked now
    from configurator import configure
    try:
        cfg = configure(vars(ds), ["--config", str(ROOT / "configs/tiny.toml")], "distill_student")     # 64 tokens
        for finished, overwrite, refused in ((False, False, True), (True, False, False), (True, True, True)):
            monkeypatch.setattr(ds, "is_finished", lambda folder, f=finished: f)
            teacher_cfg = {"MAX_LENGTH": 32, "OVERWRITE": overwrite, "_sources": {"MAX_LENGTH": "flag"}}
            if refused:
                with pytest.raises(UsageError, match=r"^max_length = 64 in \S+tiny.toml, but the teacher to train "
                                                     r"\(--max_length=32\) reads 32 tokens: students cut, roberta"):
                    ds.check_length_before_teacher(cfg, teacher_cfg)
            else:
                ds.check_length_before_teacher(cfg, teacher_cfg)
        ds.check_length_before_teacher(cfg, {"MAX_LENGTH": 64})                 # the same length: nothing to say
    finally:
        configure(vars(ds), [], "distill_student")


def test_a_split_other_than_the_teachers_is_refused(tiny_run, imdb_parquet, tmp_path):
    with pytest.raises(UsageError, match=r"--val_size=10, but the teacher .* was trained with val_size = 8: .*; give it as the "
                                         r"teacher had it \(--val_size=8: the teacher.s --config with the same flags\)$"):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--val_size=10"))
    # a list given as it is typed, and a setting the teacher left empty as the flag left out
    with pytest.raises(UsageError, match=r"^--label_names=a,b, but the teacher .* was trained with label_names = \(none\): "
                                         r".*\(leave --label_names out: "):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--label_names=a,b"))
    # a value set in an experiment file (or edited in the script) is named as it was set, not as a flag
    mine = tmp_path / "mine.toml"
    mine.write_text((ROOT / "configs" / "tiny.toml").read_text().replace("val_size = 8", "val_size = 10"))
    with pytest.raises(UsageError, match=rf"^val_size = 10 in {re.escape(str(mine))}, but the teacher .* val_size = 8"):
        ds.main(["--config", str(mine), *tiny_args(imdb_parquet, tiny_run)[2:]])
    mine.write_text((ROOT / "configs" / "tiny.toml").read_text().replace("[distill_student]\n", "[distill_student]\nval_size = 10\n"))
    with pytest.raises(UsageError, match=rf"^val_size = 10 in \[distill_student\] of {re.escape(str(mine))}, but the teacher"):
        ds.main(["--config", str(mine), *tiny_args(imdb_parquet, tiny_run)[2:]])
    trained = json.loads((tiny_run / "tiny/teacher/config.json").read_text())["sentiment_kd"]["run_config"]
    teacher = ds.Teacher(tiny_run / "tiny/teacher", ("negative", "positive"), 1.0, None, trained, True)
    with pytest.raises(UsageError, match=r"^VAL_SIZE = 10 \(at the top of distill_student.py\), but the teacher .* val_size = 8"):
        ds.check_teacher_data(teacher, ds.DataSpec.from_settings(trained | {"val_size": 10}), {"_sources": {"VAL_SIZE": "default"}})
    # a subsample of the teacher's train split is another train split, not changed data
    with pytest.raises(UsageError, match=r"^--train_size=20, but the teacher .* was trained with train_size = (none|0)"):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--train_size=20"))


def test_refuses_an_undertrained_or_missing_teacher(tiny_run, imdb_parquet, tmp_path):
    weak = tmp_path / "weak"                 # the tiny teacher learns its reviews: a copy that scored 0.7
    shutil.copytree(tiny_run / "tiny" / "teacher", weak)
    (weak / "metrics.json").write_text(json.dumps(json.loads((weak / "metrics.json").read_text()) | {"val_accuracy": 0.7}))
    with pytest.raises(UsageError, match=r"validation accuracy 0.7000 < --min_teacher_accuracy=0.8: .* lower the threshold "
                                         r"\(it is for your data: chance with 2 classes is 0.500\)$"):
        ds.main(tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={weak}", "--min_teacher_accuracy=0.8"))
    # a teacher of other data (a forgotten --config) is named as that, not as too weak for this data
    with pytest.raises(UsageError, match=r"^--val_size=10, but the teacher .* was trained with val_size = 8"):
        ds.main(tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={weak}", "--min_teacher_accuracy=0.8", "--val_size=10"))
    with pytest.raises(UsageError, match=r"no finished teacher .*; run fine_tuning_teacher.py --experiment=tiny .*, or "
                                         r"set --teacher_dir$"):
        ds.main(tiny_args(imdb_parquet, tmp_path))
    with pytest.raises(UsageError, match=r"; teacher_dir = \S+/nowhere: give the folder of a finished teacher "
                                         r"\(outputs/<exp>/teacher; train that experiment's teacher first if it has "
                                         r"none\)$"):   # not "or set --teacher_dir"
        ds.main(tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={tmp_path / 'nowhere'}"))


def test_a_teacher_blind_to_a_class_is_warned_of_before_it_teaches(caplog, monkeypatch):
    monkeypatch.setattr(ds, "MIN_TEACHER_ACCURACY", 0.6)
    labels = ("bad", "great", "ok")
    with caplog.at_level("WARNING", logger="kd"):
        ds.check_teacher_accuracy(ds.Teacher(Path("t"), labels, 0.8, None, {}, True, None, 2))
    assert caplog.text.count("WARNING") == 1
    assert ("the teacher t: it predicted only 2 of its 3 classes on validation (accuracy 0.8000); students distilled "
            "from it learn to miss the same classes") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="kd"):     # every class predicted, or not recorded (an older teacher)
        ds.check_teacher_accuracy(ds.Teacher(Path("t"), labels, 0.8, None, {}, True, None, 3))
        ds.check_teacher_accuracy(ds.Teacher(Path("t"), labels, 0.8, None, {}, True, None, None))
    assert caplog.text == ""
    # every class predicted, one all but ignored (its metrics.json: models.neglected_class), even a teacher trained
    # in an earlier run whose warning scrolled past: said again before it teaches
    from models import neglected_class
    said = neglected_class({"val_min_recall": 0.1, "val_min_recall_class": 0, "val_min_recall_texts": 40}, list(labels))
    with caplog.at_level("WARNING", logger="kd"):
        ds.check_teacher_accuracy(ds.Teacher(Path("t"), labels, 0.8, None, {}, True, None, 3, 3, neglected=said))
    assert "the teacher t: it recognised class 'bad' in only 10.0% of its 40 validation texts of that class (4; " \
        "guessing at random: 33.3%); students distilled from it learn to ignore that class too; retrain the teacher " \
        "first (fine_tuning_teacher.py with --best_metric=recall" in caplog.text


def test_the_logged_cross_entropy_is_a_mean_over_labeled_rows_not_over_batches():
    # with many transfer texts, some batches hold no labeled row: their "0" pulled the logged loss_ce down
    from types import SimpleNamespace

    class Logits(torch.nn.Module):
        def forward(self, logits, **kwargs):
            return SimpleNamespace(logits=logits)
    trainer = training.DistillTrainer.__new__(training.DistillTrainer)
    trainer.alpha, trainer.temperature, trainer.teacher = 0.5, 2.0, None
    trainer.state = SimpleNamespace(global_step=0)
    trainer._reset_parts()
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batches = [(student, torch.tensor([0, 1, -1])), (student, torch.tensor([-1, -1, -1]))]
    for logits, labels in batches:
        trainer.compute_loss(Logits().train(), {"logits": logits, "labels": labels, "teacher_logits": logits.flip(-1)})
    ce = (F.cross_entropy(student[:1], torch.tensor([0])) + F.cross_entropy(student[1:2], torch.tensor([1]))) / 2
    parts = trainer._mean_parts()
    assert parts["ce"] == pytest.approx(ce.item(), rel=1e-6) and "labeled" not in parts     # not ce / 2
    kl = [training.distillation_loss(lg, lg.flip(-1), y, 0.5, 2.0)[1]["kl"].item() for lg, y in batches]
    assert parts["kl"] == pytest.approx(sum(kl) / 2, rel=1e-6)                                # per step, as before
    trainer._reset_parts()                  # no labeled row since the last log: no loss_ce then, not a false 0
    trainer.compute_loss(Logits().train(), {"logits": student, "labels": batches[1][1], "teacher_logits": student.flip(-1)})
    assert set(trainer._mean_parts()) == {"kl", "total"}


def test_non_finite_loss_stops_with_a_clear_error(tiny_run, imdb_parquet, monkeypatch):
    monkeypatch.setattr(training, "distillation_loss",
                        lambda s, t, y, a, T: (s.sum() * float("nan"), {"ce": s.sum(), "kl": s.sum()}))
    with pytest.raises(FloatingPointError, match="non-finite loss between steps 0 and 1"):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--only=cut", "--overwrite=true", "--baseline=false"))


# ---------------------------------------------------------------------------------------------- intermediate layers
def test_hidden_state_loss_by_hand():
    s1 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])             # (B=1, L=2, H=2)
    t1 = torch.tensor([[[1.0, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 0]])                              # the second token is padding
    assert training.hidden_state_loss([s1], [t1], mask).item() == pytest.approx((0 + 4) / 2)
    s2, t2 = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)         # a second layer pair: MSE 1
    assert training.hidden_state_loss([s1, s2], [t1, t2], mask).item() == pytest.approx((2 + 1) / 2)
    # a narrower student (width 2) projected to a wider teacher (3) in its forward: P(s) = s @ W^T + b
    from types import SimpleNamespace

    from transformers.modeling_outputs import BaseModelOutput

    class Student(torch.nn.Module):
        config = SimpleNamespace(hidden_size=2)

        def forward(self, x):
            return BaseModelOutput(last_hidden_state=x, hidden_states=(x, x))
    student = Student()
    training.attach_projections(student, 1, 3)
    with torch.no_grad():
        student.kd_projections[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        student.kd_projections[0].bias.zero_()
    t3 = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]])     # P(s1[0]) = [1, 2, 3]: only the third unit differs
    projected = student.train()(s1).hidden_states
    assert torch.equal(projected[0], s1) and training.hidden_state_loss([projected[1]], [t3], mask).item() == pytest.approx(9 / 3)
    assert torch.equal(student.eval()(s1).hidden_states[1], s1)            # evaluation: the student's own states
    del student.kd_projections                                              # as save_finished leaves it: the hook idle
    assert torch.equal(student.train()(s1).hidden_states[1], s1)


def test_attention_loss_by_hand():
    t = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])             # (B=1, heads=1, L=2, L=2)
    s = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    row1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row2 = math.log(1 / 0.5)                                    # 0 * log 0 counts as 0
    assert training.attention_loss([s], [t], torch.tensor([[1, 1]])).item() == pytest.approx((row1 + row2) / 2)
    assert training.attention_loss([s], [t], torch.tensor([[1, 0]])).item() == pytest.approx(row1)
    assert training.attention_loss([t], [t], torch.tensor([[1, 1]])).item() == pytest.approx(0.0, abs=1e-7)
    # two heads, the second equal to the teacher's: the mean is over heads too (4 query rows, 2 of them 0)
    both = torch.cat([s, t], dim=1)                             # (1, 2, 2, 2)
    assert training.attention_loss([both], [torch.cat([t, t], dim=1)], torch.tensor([[1, 1]])).item() == \
        pytest.approx((row1 + row2) / 4)
    # two layers: their mean
    assert training.attention_loss([s, t], [t, t], torch.tensor([[1, 1]])).item() == pytest.approx((row1 + row2) / 4)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "mpnet"])
def test_a_training_students_attention_maps_are_read_before_dropout(kind, tmp_path):
    """A student identical to its teacher, attention dropout 0.3, in training: its first layer's maps (which dropout
    elsewhere cannot reach: hidden dropout 0) are the teacher's, so attention_loss is 0; read after dropout, 30% of
    each row was 0 and the loss about 0.3 x 27.6 nats."""
    import copy
    import transformers as tr
    configs = {"bert": (tr.BertConfig, dict(attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)),
               "distilbert": (tr.DistilBertConfig, dict(attention_dropout=0.3, dropout=0.0, seq_classif_dropout=0.0, n_layers=2,
                                                        dim=16, hidden_dim=32, n_heads=2)),
               "roberta": (tr.RobertaConfig, dict(attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)),
               "mpnet": (tr.MPNetConfig, dict(attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0))}
    cls, kw = configs[kind]
    size = {} if kind == "distilbert" else dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    teacher = tr.AutoModelForSequenceClassification.from_config(cls(vocab_size=50, **size, **kw)).eval()
    teacher.set_attn_implementation("eager")
    student = copy.deepcopy(teacher).train()
    how = training.attention_before_dropout(student)
    ids, mask = torch.randint(3, 50, (4, 9)), torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = teacher(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[0]
        out = student(input_ids=ids, attention_mask=mask, output_attentions=True)
        again = student(input_ids=ids, attention_mask=mask).logits
    assert training.attention_loss([out.attentions[0]], [ref], mask).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(4, out.attentions[0].shape[1], 9))
    assert out.attentions[0][1, :, :, 6:].abs().max() == 0                 # padded keys masked as eager masks them
    if kind == "mpnet":     # attention computed by the model itself: its attention dropout is switched off
        assert how.startswith("attention dropout off") and torch.allclose(out.logits, again)
    else:                   # transformers' attention interface: the output still sees dropout
        assert how == "attention maps read before dropout" and not torch.allclose(out.logits, again)
    student.save_pretrained(tmp_path)
    assert "kd_eager" not in (tmp_path / "config.json").read_text()       # loaded elsewhere, it would be unknown


def test_a_student_whose_attention_maps_cannot_be_read_before_dropout_is_refused_before_training():
    # Funnel computes attention itself, with no self-attention dropout module to switch off: refused in the checks
    import transformers as tr
    assert ds.readable_attention(tr.BertConfig(num_hidden_layers=2)) and ds.readable_attention(tr.MPNetConfig(num_hidden_layers=2))
    assert not ds.readable_attention(tr.FunnelConfig(block_sizes=[1, 1]))


def test_layer_map():
    assert ds.layer_map({"layers": [0, 2, 4]}, 3, 6) == [1, 3, 5]     # cut from the teacher: the top of each block
    assert ds.layer_map({"layers": [0]}, 1, 6) == [5]                 # the last to the last, which the head reads
    assert ds.layer_map({"layers": [0, 1, 2]}, 3, 6) == [0, 1, 5]
    assert ds.layer_map({"layers": [0, 3]}, 2, 12) == [2, 11]
    assert ds.layer_map({"model": "m", "layers": [0, 2, 4]}, 3, 6) == [1, 3, 5]       # uniform (TinyBERT)
    assert ds.layer_map({"model": "m", "layers": [0, 1, 2]}, 3, 6) == [1, 3, 5]       # the cut of another model: uniform
    assert ds.layer_map({"model": "./t", "layers": [0, 1, 2]}, 3, 6, Path("t")) == [0, 1, 5]   # the teacher's folder named
    assert ds.layer_map({"model": "m"}, 6, 12) == [1, 3, 5, 7, 9, 11]
    assert ds.layer_map({"model": "m"}, 1, 2) == [1]
    # a ratio that is not whole: the top of each block (k + 1) * 6 / 4 = 1.5, 3, 4.5, 6 rounded up, less 1
    assert ds.layer_map({"model": "m"}, 4, 6) == [1, 2, 4, 5]
    assert ds.layer_map({"model": "m"}, 5, 12) == [2, 4, 7, 9, 11]     # 2.4, 4.8, 7.2, 9.6, 12


def test_intermediate_losses_train_and_leave_no_projection_behind(tiny_run, imdb_parquet, tmp_path):
    from transformers import AutoModelForSequenceClassification

    narrow = narrow_student(tmp_path / "narrow")   # hidden 16 vs the teacher's 32, its tokenizer: projections needed
    students = f'[{{name = "inner", layers = [1], attention_weight = 1.0}}, {{name = "narrow", model = "{narrow}"}}]'
    result = ds.main(tiny_args(imdb_parquet, tiny_run, "--experiment=inner", f"--teacher_dir={tiny_run}/tiny/teacher",
                               f"--students={students}", "--hidden_weight=0.5", "--baseline=false"))
    for name, parts in (("inner", {"loss_hidden", "loss_attention"}), ("narrow", {"loss_hidden"})):
        logs = [h for h in result["students"][name]["log_history"] if "loss" in h]
        assert logs and all(parts <= set(h) for h in logs)
        assert all(h["loss_hidden"] >= 0 for h in logs)
    kd = json.loads((tiny_run / "inner" / "students" / "inner" / "config.json").read_text())["sentiment_kd"]
    assert kd["layer_map"] == [1] and kd["settings"]["hidden_weight"] == 0.5
    saved = AutoModelForSequenceClassification.from_pretrained(tiny_run / "inner" / "students" / "narrow")
    assert saved.config.hidden_size == 16
    from safetensors import safe_open
    with safe_open(str(tiny_run / "inner" / "students" / "narrow" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "kd_" in k]


def test_intermediate_losses_need_the_teachers_tokenizer(tiny_run, imdb_parquet):
    with pytest.raises(UsageError, match="student 'roberta': hidden_weight / attention_weight need the teacher's tokenizer"):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--experiment=inner2", f"--teacher_dir={tiny_run}/tiny/teacher",
                          "--only=roberta", "--hidden_weight=1.0"))


def test_soft_labels_are_published_in_source_order_and_reused(tiny_run, imdb_parquet, monkeypatch):
    from data_utils import load_imdb
    from models import load_classifier, truncation_settings
    import shutil
    calls = count_teacher_rows(monkeypatch)
    teacher = tiny_run / "tiny" / "teacher"
    shutil.rmtree(tiny_run / "tiny" / "teacher_logits", ignore_errors=True)   # other tests filled it
    args = tiny_args(imdb_parquet, tiny_run, "--experiment=soft", f"--teacher_dir={teacher}", "--only=cut",
                     "--baseline=false", "--soft_label_splits=train,unsupervised")
    ds.main(args)
    assert calls == [60]                      # 48 train + 12 unsupervised, once; the student's pass reused them
    folder = tiny_run / "soft" / "soft_labels"
    data = load_imdb(("train", "unsupervised"), str(imdb_parquet))
    model, tok = load_classifier(str(teacher))
    kd = json.loads((teacher / "config.json").read_text())["sentiment_kd"]
    for split, n in (("train", 48), ("unsupervised", 12)):
        texts = list(data[split]["text"])
        logits = ds.load_soft_labels(folder, split, texts)
        assert logits.shape == (n, 2) and logits.dtype == np.float32
        direct = ds.predict_logits(model, tok, texts[:5], truncation_settings(kd, tok), 2)   # row i is review i
        np.testing.assert_allclose(logits[:5], direct, atol=1e-5)
        meta = json.loads((folder / f"{split}.json").read_text())
        assert meta["rows"] == n and meta["id2label"] == {"0": "negative", "1": "positive"}
        assert meta["logits"].startswith("float32 (rows, classes), computed in fp32,")   # bf16 on a GPU
    with pytest.raises(UsageError, match="holds logits for 48 other reviews"):
        ds.load_soft_labels(folder, "train", list(data["train"]["text"])[::-1])
    ds.publish_soft_labels(["unsupervised"], teacher, tiny_run / "soft-first", 4, rows=5)   # a rehearsal's first rows
    np.testing.assert_allclose(ds.load_soft_labels(tiny_run / "soft-first", "unsupervised",
                                                   list(data["unsupervised"]["text"])[:5]),
                               ds.load_soft_labels(folder, "unsupervised", list(data["unsupervised"]["text"]))[:5])
    calls.clear()
    written = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    ds.main(args)                             # published and unchanged: kept (not rewritten), no teacher pass
    assert calls == [] and {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == written


def test_students_learn_from_published_soft_labels_without_the_teacher(tiny_run, imdb_parquet, monkeypatch, tmp_path):
    from configurator import configure
    from data_utils import load_imdb
    configure(vars(ds), tiny_args(imdb_parquet, tmp_path))     # the module's DATA_DIR: the tiny data, whatever ran before
    teacher = tiny_run / "tiny" / "teacher"
    folder = tmp_path / "soft_labels"
    ds.publish_soft_labels(["train", "unsupervised"], teacher, folder, 4)
    meta = json.loads((folder / "train.json").read_text())
    assert meta["data"]["val_size"] == 8 and meta["teacher_parameters"] > 0      # what the teacher was trained on
    assert meta["teacher_val_classes_predicted"] == 2
    # a text's logits are found wherever it sits in the published split
    texts = list(load_imdb(("train",), str(imdb_parquet))["train"]["text"])
    got, stats = ds.published_logits([texts[i] for i in (7, 3, 0)], folder)
    np.testing.assert_allclose(got, ds.load_soft_labels(folder, "train", texts)[[7, 3, 0]], atol=1e-6)
    calls = count_teacher_rows(monkeypatch)
    reads, load_imdb = [], ds.load_imdb
    monkeypatch.setattr(ds, "load_imdb", lambda *a, **k: reads.append(a) or load_imdb(*a, **k))
    ds.published_table.cache_clear()
    args = tiny_args(imdb_parquet, tmp_path, "--experiment=from-soft", f"--soft_labels={folder}", "--only=roberta",
                     f"--teacher_dir={tmp_path}/no-teacher")
    result = ds.main(args)
    assert calls == [] and len(reads) == 1             # the teacher never ran; the soft labels were read once
    m = result["students"]["roberta"]
    assert (m["teacher_logits"]["soft_labels"], m["teacher_logits"]["reviews"]) == (str(folder), 44)   # 40 train + 4 transfer
    assert m["teacher_val_accuracy"] == json.loads((teacher / "metrics.json").read_text())["val_accuracy"]
    kd = json.loads((tmp_path / "from-soft" / "students" / "roberta" / "config.json").read_text())["sentiment_kd"]
    assert kd["teacher"] == str(folder) and kd["kind"] == "distilled"
    # the teacher training it learned from, through the soft labels (evaluation against published teacher rows checks it)
    from models import run_fingerprint, teacher_run_of
    assert teacher_run_of(tmp_path / "from-soft" / "students" / "roberta") == meta["teacher_run"] == run_fingerprint(teacher)
    # what needs the teacher model is refused before anything is written
    with pytest.raises(UsageError, match=r"student 'cut': cut from the teacher needs the teacher model"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--soft_labels={folder}"))
    with pytest.raises(UsageError, match=r"--val_size=10, but the teacher .*soft_labels was trained with val_size = 8"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--soft_labels={folder}", "--only=roberta",
                          "--val_size=10"))
    with pytest.raises(UsageError, match=r"^--max_length=128, but the teacher \S+soft_labels was trained on 64 tokens: "
                                         r"student roberta would read 128"):     # as from the teacher itself
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--soft_labels={folder}", "--only=roberta",
                          "--max_length=128"))
    cut = shutil.copytree(folder, tmp_path / "cut-short")                 # a copy cut short: one line, no traceback
    (cut / "train.npz").write_bytes((folder / "train.npz").read_bytes()[:200])
    ds.published_table.cache_clear()
    with pytest.raises(UsageError, match=r"cut-short/train.npz cannot be read \(BadZipFile: .*\); copy the soft labels "
                                         r"again from where they were published$"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--soft_labels={cut}", "--only=roberta"))
    with pytest.raises(UsageError, match=r"no published soft labels there"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=refused", f"--soft_labels={tmp_path}", "--only=roberta"))
    assert not (tmp_path / "refused").exists()
    ds.publish_soft_labels(["train", "unsupervised"], teacher, tmp_path / "first-rows", 4, rows=20)   # a rehearsal's
    with pytest.raises(UsageError, match=r"of the 44 texts to learn from have no published logits"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--experiment=partial", f"--soft_labels={tmp_path}/first-rows",
                          "--only=roberta"))
    assert not (tmp_path / "partial").exists()                                   # found before anything is written


def test_report_to_tensorboard_writes_the_loss_parts_as_scalars(tiny_run, imdb_parquet):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ds.main(tiny_args(imdb_parquet, tiny_run, "--experiment=tb", f"--teacher_dir={tiny_run}/tiny/teacher", "--only=cut",
                      "--baseline=false", "--report_to=tensorboard", "--logging_steps=1"))
    runs = tiny_run / "tb" / "runs" / "cut"
    events = EventAccumulator(str(runs)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_ce", "train/loss_kl", "eval/accuracy"} <= tags
    assert len(events.Scalars("train/loss_kl")) >= 2 and all(s.value >= 0 for s in events.Scalars("train/loss_kl"))
    with pytest.raises(UsageError, match="--report_to=wandb: must be one of none, tensorboard"):
        ds.main(tiny_args(imdb_parquet, tiny_run, "--report_to=wandb"))


def test_a_students_published_record_is_compared_without_its_teacher(tmp_path):
    # on a fresh clone the published teacher run is never at hand: the record is compared on the student's own settings
    from runs import check_resume, run_dirs
    dirs = run_dirs(str(tmp_path), "exp", "students", "cut")
    dirs[2].parent.mkdir(parents=True)
    settings = {"teacher": "this-run", "epochs": 1.0, "student": {"alpha": 0.5}}
    published = {"config": {"sentiment_kd": {"training_settings": settings | {"teacher": "published-run"}}}}
    dirs[2].write_text(json.dumps(published))
    check_resume(dirs, settings, overwrite=False)
    with pytest.raises(UsageError, match=r"^\S+/exp/models/cut.json is the published record of a run made with student.alpha = "
                                         r"0.5, now 0.9; set --experiment=<a new name> to keep it"):
        check_resume(dirs, settings | {"student": {"alpha": 0.9}}, overwrite=False)
    check_resume(dirs, settings | {"student": {"alpha": 0.9}}, overwrite=True)
    dirs[2].write_text(json.dumps({"config": {"sentiment_kd": {}}}))          # recorded neither settings nor configuration
    check_resume(dirs, settings | {"student": {"alpha": 0.9}}, overwrite=False)
    # published before records carried their settings: compared on the settings its run configuration names too
    run_config = {"epochs": 1.0, "output_dir": "elsewhere", "train_size": 5, "students": [{"name": "cut"}]}
    dirs[2].write_text(json.dumps({"config": {"sentiment_kd": {"run_config": run_config}}}))
    check_resume(dirs, settings | {"output_dir": "here"}, overwrite=False)
    dirs[2].write_text(json.dumps({"config": {"sentiment_kd": {"run_config": run_config | {"epochs": 2.0}}}}))
    with pytest.raises(UsageError, match=r"/exp/models/cut.json is the published record of a run made with epochs = 2.0, "
                                         r"now 1.0; set --experiment"):
        check_resume(dirs, settings, overwrite=False)


def test_a_finished_student_made_otherwise_or_from_another_teacher_is_refused(tiny_experiment, imdb_parquet, tmp_path,
                                                                            monkeypatch):
    # kept silently, it would be reported as trained with today's settings, or measured against a teacher it never saw
    import evaluate_models as ev
    shutil.copytree(tiny_experiment / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns(".lock"))   # a copy: same runs
    students = tmp_path / "tiny" / "students"
    before = {p: p.stat().st_mtime_ns for p in students.rglob("*")}
    with monkeypatch.context() as m:      # kept students need no base model (offline, the hub would be retried)
        real = ds.model_config
        m.setattr(ds, "model_config", lambda name: real(name) if Path(name).is_dir() else pytest.fail(f"loaded {name}"))
        kept = ds.main(tiny_args(imdb_parquet, tmp_path))
    assert set(kept["students"]) == {"cut", "cut-baseline", "roberta"}
    with pytest.raises(UsageError, match=rf"^{students / 'cut'} holds a finished run made with student.alpha = 0.5, now "
                                         rf"0.9; --overwrite=true retrains it \(or set --experiment=<a new name> "
                                         rf"--teacher_dir={tmp_path / 'tiny' / 'teacher'} to keep both\)$"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--alpha=0.9"))
    record = tmp_path / "tiny" / "models" / "cut.json"      # cut gone, record and all: it would be trained anew
    (students / "cut").rename(tmp_path / "cut")
    record.rename(tmp_path / "cut.json")
    with pytest.raises(UsageError, match=r"students/cut-baseline holds a finished run made with student.twin_transfer_size "
                                         r"= 4, now 2; --overwrite"):   # its baseline's steps follow its transfer texts
        ds.main(tiny_args(imdb_parquet, tmp_path, "--transfer_size=2"))
    (tmp_path / "cut").rename(students / "cut")
    (tmp_path / "cut.json").rename(record)
    metrics = tmp_path / "tiny" / "teacher" / "metrics.json"
    old = json.loads(metrics.read_text())
    metrics.write_text(json.dumps(old | {"train_time_s": old["train_time_s"] + 1000}))   # the teacher retrained
    teacher_record = tmp_path / "tiny" / "models" / "teacher.json"                     # (its record, rewritten too)
    teacher_record.write_text(json.dumps(json.loads(teacher_record.read_text()) | {"metrics": json.loads(metrics.read_text())}))
    with pytest.raises(UsageError, match=r"students/cut holds a finished run made from another training of the teacher "
                                         r"\(retrained since\); 1 more: student.transfer_size; --overwrite=true retrains it"):
        ds.main(tiny_args(imdb_parquet, tmp_path, "--transfer_size=2"))
    with pytest.raises(UsageError, match=r"^student cut \(.*students/cut\) learned from another training of the teacher "
                                         r"than .*; retrain it \(distill_student.py --overwrite=true, with --only=cut for") as err:
        ev.main(tiny_args(imdb_parquet, tmp_path))
    from configurator import parse_list          # its --students entry, for a student the config does not list
    entry = re.search(r"--students='(.*?)' if your config does not list it", str(err.value)).group(1)
    assert parse_list(entry) == [json.loads((students / "cut" / "config.json").read_text())["sentiment_kd"]["student"]]
    assert {p: p.stat().st_mtime_ns for p in students.rglob("*")} == before


def test_a_baseline_resumed_mid_epoch_trains_the_uninterrupted_runs_batches(tiny_experiment, imdb_parquet, tmp_path):
    # a matched baseline checkpoints at its twin's epochs (44 rows: 6 steps), inside its own (40 rows: 5 steps);
    # resumed at step 6, it must skip the batches it trained and go on in the same order (EpochSeededLengthSampler)
    for name in ("whole", "resumed"):
        shutil.copytree(tiny_experiment / "tiny" / "teacher", tmp_path / name / "tiny" / "teacher")

    def args(name):
        return tiny_args(imdb_parquet, tmp_path / name, "--only=cut")      # tiny.toml: 3 epochs
    ds.main(args("whole"))

    stopped_at_save(lambda: ds.main(args("resumed")), when=lambda a, state: Path(a.output_dir).name == "cut-baseline")
    metrics = ds.main(args("resumed"))["students"]["cut-baseline"]
    assert metrics["resumed_from"].endswith("checkpoint-6") and metrics["optimizer_steps"] == 18

    def losses_after_6(name):     # the training loss logged every 2 steps (the saved weights: the best checkpoint's)
        history = json.loads((tmp_path / name / "tiny" / "students" / "cut-baseline" / "metrics.json").read_text())["log_history"]
        return {h["step"]: h["loss"] for h in history if "loss" in h and h["step"] > 6}
    whole = losses_after_6("whole")
    assert list(whole) == [8, 10, 12, 14, 16, 18] and losses_after_6("resumed") == pytest.approx(whole, rel=1e-5)


def test_a_run_stopped_at_its_last_checkpoint_resumes_without_training_more(tiny_experiment, imdb_parquet, tmp_path):
    # the baseline's 18 steps are not whole epochs of its 5: transformers resumed from checkpoint-18 in epoch 3 and
    # trained on to step 19, recording a step of learning rate 0 and epochs past the run's
    shutil.copytree(tiny_experiment / "tiny" / "teacher", tmp_path / "tiny" / "teacher")
    args = tiny_args(imdb_parquet, tmp_path, "--only=cut")
    stopped_at_save(lambda: ds.main(args), when=lambda a, state: Path(a.output_dir).name == "cut-baseline"
                    and state.global_step == 18)
    metrics = ds.main(args)["students"]["cut-baseline"]
    assert metrics["resumed_from"].endswith("checkpoint-18") and metrics["optimizer_steps"] == 18
    assert max(h["step"] for h in metrics["log_history"]) == 18 and metrics["epochs"] == pytest.approx(18 / 5)
    assert metrics["train_loss"] is None                  # nothing trained in this part


def test_a_run_resumed_under_torchrun_draws_the_resumed_epochs_order(tmp_path, monkeypatch):
    # under torchrun accelerate wraps the batch sampler (BatchSamplerShard; a resumed run's in SkipBatchSampler too),
    # and neither passes set_epoch on: the trainer tells its sampler the epoch itself (MeanLossTrainer._run_epoch)
    from accelerate.data_loader import prepare_data_loader, skip_first_batches
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import Trainer

    from models import build_tiny
    model, _ = build_tiny("bert")
    rows = Dataset.from_dict({"input_ids": [[1] * n for n in range(3, 43)], "label": [0] * 40, "length": list(range(3, 43))})
    args = training.training_arguments(tmp_path, epochs=3, batch_size=4, learning_rate=1e-3, eval_batch_size=4, seed=7)
    trainer = training.MeanLossTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    sampler = trainer._get_train_sampler()

    def shard(s, skip=0):        # process 0 of 2, as accelerate prepares a torchrun process's loader
        dl = prepare_data_loader(DataLoader(list(range(40)), batch_size=2, sampler=s), num_processes=2, process_index=0,
                                 put_on_device=False)
        return skip_first_batches(dl, skip) if skip else dl
    fresh = shard(training.EpochSeededLengthSampler(4, lengths=list(range(3, 43)), seed=7))
    first = [b.tolist() for b in fresh]
    fresh.set_epoch(1)           # as the Trainer does: an epoch not resumed reaches its sampler through the loader
    expected = [b.tolist() for b in fresh]
    assert expected != first
    monkeypatch.setattr(Trainer, "_run_epoch", lambda self, **kw: [b.tolist() for b in kw["train_dataloader"]])
    resumed = trainer._run_epoch(model=model, epoch=1, train_dataloader=shard(sampler, skip=2))
    assert sampler.epoch == 1 and resumed == expected[2:]


def test_an_overwrite_run_stopped_midway_keeps_what_it_finished_when_run_again(tiny_experiment, imdb_parquet, tmp_path,
                                                                                monkeypatch):
    # --overwrite=true retrains finished students; stopped in the baseline, the same command again keeps the student
    # this command finished (it retrained it before), goes on with the baseline, and a later --overwrite command
    # retrains both; under run_experiment.sh (KD_ALL_STEPS) the mark outlives each step, so a stop in the students
    # does not retrain the teacher either

    import runs
    shutil.copytree(tiny_experiment / "tiny" / "teacher", tmp_path / "tiny" / "teacher")
    args = tiny_args(imdb_parquet, tmp_path, "--only=cut", "--overwrite=true")
    ds.main(tiny_args(imdb_parquet, tmp_path, "--only=cut"))
    students, mark = tmp_path / "tiny" / "students", tmp_path / "tiny" / runs.OVERWRITE_RUN
    stamp = lambda name: (students / name / "metrics.json").stat().st_mtime_ns   # noqa: E731
    old = stamp("cut")

    stopped_at_save(lambda: ds.main(args), when=lambda a, state: Path(a.output_dir).name == "cut-baseline")   # in the baseline
    assert mark.is_file() and stamp("cut") > old                   # retrained by the stopped command
    retrained = stamp("cut")
    same = ["--overwrite", "yes", "--only", "cut", *args[2:5][::-1], f"--config={args[1]}"]   # typed another way
    again = ds.main(same)["students"]
    assert stamp("cut") == retrained and again["cut-baseline"]["resumed_from"].endswith("checkpoint-6")
    assert not mark.is_file()                                      # the command ended: its mark is gone
    assert f"{students / 'cut'}: finished with these settings by this --overwrite command before it was stopped: " \
           "kept" in (tmp_path / "tiny" / "logs" / "distill.log").read_text()
    ds.main(args)                                                  # a new --overwrite command retrains everything
    assert stamp("cut") > retrained and not mark.is_file()
    monkeypatch.setenv("KD_ALL_STEPS", "1")                        # a step of run_experiment.sh: the mark stays
    ds.main(args)
    newest = stamp("cut")
    assert mark.is_file() and ds.main(args) and stamp("cut") == newest
    assert ds.main(args + ["--logging_steps=3"]) and stamp("cut") > newest   # another command: marked anew, retrained
    monkeypatch.delenv("KD_ALL_STEPS")
    newest = stamp("cut")
    ds.main(tiny_args(imdb_parquet, tmp_path, "--only=cut"))       # a command without --overwrite finishes: the
    assert not mark.is_file()                                      # stopped one is over, a later one retrains
    ds.main(args)
    assert stamp("cut") > newest


def test_students_of_another_teacher_are_refused_where_the_experiment_published_its_own(tiny_experiment, imdb_parquet,
                                                                                         tmp_path):
    # students of new names, from another teacher, would be published beside the experiment's own teacher's results
    from configurator import UsageError
    record, teacher = tmp_path / "tiny" / "models" / "teacher.json", tiny_experiment / "tiny" / "teacher"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"config": {}, "metrics": {"val_accuracy": 0.9}}))      # another run's
    args = tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={teacher}", "--only=cut")
    with pytest.raises(UsageError, match=rf"^{record} is the published record of experiment tiny's teacher, another run "
                                         rf"than {teacher}, which these students would learn from; give --experiment="):
        ds.main(args)
    assert not (tmp_path / "tiny" / "students").exists()
    shutil.copy(tiny_experiment / "tiny" / "models" / "teacher.json", record)            # its own teacher's record
    assert set(ds.main(args)["students"]) == {"cut", "cut-baseline"}
    own = tmp_path / "own"                      # the experiment's own teacher beside a stale record (git checkout): runs
    shutil.copytree(teacher, own / "tiny" / "teacher")
    (own / "tiny" / "models").mkdir()
    (own / "tiny" / "models" / "teacher.json").write_text(json.dumps({"config": {}, "metrics": {"val_accuracy": 0.9}}))
    assert ds.main(tiny_args(imdb_parquet, own, "--only=cut", "--epochs=1"))["students"]
