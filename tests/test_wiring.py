"""Wiring between the pure pieces: the trainer hands the loss the right alpha and temperature, and every
batched forward (teacher logits, evaluation, inference) returns rows in the input order, including after
a partial hit of the teacher-logit cache. Each test here fails on a deliberate one-line break."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data_utils as du
import distill_student as ds
import evaluate_models as ev
import training
from models import build_tiny, encode

# texts of very different lengths, in an order that sorting by length permutes
TEXTS = ["a great film with wonderful acting and the best story", "awful", "the plot was boring",
         "loved it", "not good, not bad; the acting was terrible but the story was excellent and the end great",
         "worst waste", "it was a film", "best movie"]


def one_by_one(model, tok, texts, max_length=32):
    """Reference: each text alone (batch of one, no padding), in input order."""
    model.eval()
    rows = []
    with torch.inference_mode():
        for t in texts:
            ids, _ = encode(tok, [t], max_length, "head+tail", 8)
            rows.append(model(input_ids=torch.tensor(ids)).logits[0].float().numpy())
    return np.stack(rows)


def varied_tiny(seed=5):
    """A tiny random BERT whose logits differ clearly from text to text (the default init is too flat)."""
    model, tok = build_tiny("bert", seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model, tok


@pytest.fixture(scope="module")
def tiny():
    model, tok = varied_tiny()
    ref = one_by_one(model, tok, TEXTS)
    assert np.abs(ref[:, None] - ref[None]).max(-1)[~np.eye(len(TEXTS), dtype=bool)].min() > 1e-4  # rows differ
    return model, tok, ref


def test_trainer_passes_alpha_and_temperature_to_the_loss(tmp_path):
    from transformers import TrainingArguments
    model, tok = varied_tiny(seed=2)
    model.eval()                                     # no dropout: the same logits as below
    batch = tok(["a great film", "awful", "the plot was boring", "loved it"], return_tensors="pt", padding=True)
    labels, teacher = torch.tensor([1, 0, -1, 1]), torch.tensor([[1.5, -0.5], [-2.0, 1.0], [0.3, 0.2], [0.0, 2.5]])
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = training.DistillTrainer(model=model, args=args, alpha=0.2, temperature=3.0)
    loss = trainer.compute_loss(model, {**batch, "labels": labels, "teacher_logits": teacher})
    with torch.no_grad():
        s = model(**batch).logits
    # by hand: mean over rows of 0.2 * CE (labeled rows only) + 0.8 * 9 * KL(p_t || p_s) at T = 3
    kl = (F.softmax(teacher / 3, -1) * (F.log_softmax(teacher / 3, -1) - F.log_softmax(s / 3, -1))).sum(-1)
    ce = F.cross_entropy(s, labels.clamp(min=0), reduction="none") * (labels >= 0)
    assert loss.item() == pytest.approx((0.2 * ce + 0.8 * 9 * kl).mean().item(), rel=1e-5)
    assert not math.isclose(loss.item(), (0.8 * ce + 0.2 * 9 * kl).mean().item(), rel_tol=1e-3)   # alpha swapped
    assert not math.isclose(loss.item(), (0.2 * ce + 0.8 * kl).mean().item(), rel_tol=1e-3)       # T forced to 1


def test_teacher_logits_come_back_in_input_order(tiny):
    model, tok, ref = tiny
    out = ds.predict_logits(model, tok, TEXTS, {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}, 3)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_teacher_logit_cache_keeps_rows_after_a_partial_hit(tiny, tmp_path):
    model, tok, _ = tiny
    teacher_dir = tmp_path / "teacher"
    model.config.sentiment_kd = {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}
    model.save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    ref = one_by_one(*varied_tiny(), TEXTS)
    first, stats = ds.cached_teacher_logits(TEXTS[::2], teacher_dir, tmp_path / "cache", batch_size=2)
    assert stats["computed"] == 4 and stats["reused"] == 0
    np.testing.assert_allclose(first, ref[::2], atol=1e-5)
    # half of these are cached, half are new; a duplicate text gets the same row
    texts = TEXTS[::-1] + [TEXTS[1]]
    out, stats = ds.cached_teacher_logits(texts, teacher_dir, tmp_path / "cache", batch_size=2)
    assert stats["computed"] == 4 and stats["reused"] == 4        # the duplicate is computed once
    np.testing.assert_allclose(out, np.concatenate([ref[::-1], ref[1:2]]), atol=1e-5)


def test_teacher_logit_cache_keeps_rows_another_run_wrote_meanwhile(tiny, tmp_path, monkeypatch):
    """Two runs of one teacher computing different reviews at once: the later write keeps the earlier one's rows."""
    model, tok, _ = tiny
    teacher_dir = tmp_path / "teacher"
    model.config.sentiment_kd = {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}
    model.save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    predict = ds.predict_logits

    def other_run_writes_first(*a, **kw):
        monkeypatch.setattr(ds, "predict_logits", predict)
        ds.cached_teacher_logits(TEXTS[1::2], teacher_dir, tmp_path / "cache", batch_size=2)
        return predict(*a, **kw)

    monkeypatch.setattr(ds, "predict_logits", other_run_writes_first)
    ds.cached_teacher_logits(TEXTS[::2], teacher_dir, tmp_path / "cache", batch_size=2)
    out, stats = ds.cached_teacher_logits(TEXTS, teacher_dir, tmp_path / "cache", batch_size=2)
    assert stats["computed"] == 0 and stats["reused"] == len(TEXTS)
    np.testing.assert_allclose(out, one_by_one(*varied_tiny(), TEXTS), atol=1e-5)


def test_evaluation_probabilities_come_back_in_input_order(tiny):
    model, tok, ref = tiny
    r = ev.measure(model, tok, TEXTS, {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}, "cpu",
                   3, [0, 1], 0)
    np.testing.assert_allclose(r["probs"], torch.softmax(torch.tensor(ref), -1).numpy(), atol=1e-5)


def test_a_student_cut_with_all_teacher_layers_has_zero_hidden_state_loss(tmp_path):
    # student layer k is hidden_states[k + 1] and so is its teacher layer: comparing it with the teacher's
    # hidden_states[j] (one layer lower, or the embeddings) gives a clearly positive loss
    from transformers import TrainingArguments
    teacher, tok = varied_tiny(seed=3)
    teacher.eval()
    student = ds.cut_layers(teacher, [0, 1])
    batch = tok(["a great film", "awful", "the plot was boring"], return_tensors="pt", padding=True)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = training.DistillTrainer(model=student, args=args, alpha=0.5, temperature=2.0, teacher=teacher,
                                      hidden_weight=1.0, layer_map=[0, 1])
    student.train()
    for m in student.modules():          # dropout off, so that the student computes what the teacher does
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    teacher_logits = teacher(**batch).logits.detach()
    trainer.compute_loss(student, {**batch, "labels": torch.tensor([1, 0, 0]), "teacher_logits": teacher_logits})
    assert float(trainer._parts["hidden"]) == pytest.approx(0.0, abs=1e-10)   # the running sum of one step


def test_a_changed_teacher_gets_its_logits_recomputed(tmp_path):
    model, tok = varied_tiny(seed=4)
    teacher_dir = tmp_path / "teacher"
    model.config.sentiment_kd = {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}
    model.save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    first, stats = ds.cached_teacher_logits(TEXTS, teacher_dir, tmp_path / "cache", batch_size=4)
    assert stats["computed"] == len(TEXTS)
    # retrained in place: same folder, same file names and sizes, other weights
    other, _ = varied_tiny(seed=6)
    other.config.sentiment_kd = model.config.sentiment_kd
    other.save_pretrained(teacher_dir)
    again, stats = ds.cached_teacher_logits(TEXTS, teacher_dir, tmp_path / "cache", batch_size=4)
    assert stats["computed"] == len(TEXTS) and stats["reused"] == 0
    np.testing.assert_allclose(again, one_by_one(other, tok, TEXTS), atol=1e-5)
    assert np.abs(again - first).max() > 1e-3


def test_inference_default_is_the_best_distilled_student_of_the_newest_experiment(tmp_path):
    import json
    import os

    import inference
    # a labels-only baseline ("base", 0.95) beats every distilled student: it is still not the default
    kinds = {"low": "distilled", "best": "distilled", "mid": "distilled", "base": "baseline", "s": "distilled"}
    for exp, accs, when in (("old", {"s": 0.99}, 1_000), ("new", {"low": 0.6, "best": 0.9, "mid": 0.7, "base": 0.95}, 2_000)):
        for name, acc in [("teacher", 0.97)] + list(accs.items()):
            folder = tmp_path / exp / ("teacher" if name == "teacher" else f"students/{name}")
            folder.mkdir(parents=True)
            for f in ("model.safetensors", "tokenizer.json"):
                (folder / f).write_text("{}")
            (folder / "config.json").write_text(json.dumps({"sentiment_kd": {"kind": kinds.get(name, "teacher")}}))
            (folder / "metrics.json").write_text(json.dumps({"val_accuracy": acc}))
            os.utime(folder / "metrics.json", (when, when))
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "best"
    reason = inference.default_reason
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment"
    import shutil
    twin = tmp_path / "new" / "students" / "best-baseline"       # its own baseline did better: said, and how to take it
    shutil.copytree(tmp_path / "new" / "students" / "base", twin)
    (twin / "metrics.json").write_text(json.dumps({"val_accuracy": 0.93}))
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "best"
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment; its " \
        f"labels-only baseline did better than it on validation (0.9300 against 0.9000): --model={twin} takes it"
    (twin / "metrics.json").write_text(json.dumps({"val_accuracy": 0.9}))    # a tie is said too
    assert reason(tmp_path / "new" / "students" / "best").endswith("its labels-only baseline did as well on validation "
                                                                   f"(0.9000 against 0.9000): --model={twin} takes it")
    (twin / "metrics.json").write_text(json.dumps({"val_accuracy": 0.8999}))
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment"
    # a baseline not finished (or none: baseline = false) ties with nothing, even a student at 0.0000
    best_metrics = tmp_path / "new" / "students" / "best" / "metrics.json"
    saved = best_metrics.read_text()
    best_metrics.write_text(json.dumps({"val_accuracy": 0.0}))
    (twin / "metrics.json").unlink()
    assert reason(tmp_path / "new" / "students" / "best").startswith("the best distilled student of the newest experiment")
    assert "baseline" not in reason(tmp_path / "new" / "students" / "best")
    best_metrics.write_text(saved)
    (twin / "metrics.json").write_text(json.dumps({"val_accuracy": 0.8999}))
    (twin / "metrics.json").write_text(json.dumps({"val_accuracy": 0.93, "val_classes_predicted": 1}))
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment"
    shutil.rmtree(twin)                                  # a baseline that did not learn is not offered
    # a model that predicted one class on validation has not learned: passed over while another has, and said so
    one_class = lambda n: (tmp_path / "new" / "students" / n / "metrics.json").write_text(       # noqa: E731
        json.dumps({"val_accuracy": 0.9, "val_classes_predicted": 1}))
    (tmp_path / "new" / "students" / "low" / "metrics.json").write_text(     # ranked below the pick anyway: not named
        json.dumps({"val_accuracy": 0.6, "val_classes_predicted": 1}))
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment"
    one_class("best")
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "mid"
    assert reason(tmp_path / "new" / "students" / "mid") == "the best distilled student of the newest experiment that " \
        "learned; passed over, as they did not learn: best (it predicted one class for every validation text)"
    (tmp_path / "new" / "students" / "low" / "metrics.json").write_text(json.dumps({"val_accuracy": 0.6}))
    for name in ("low", "mid"):
        one_class(name)
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "base"
    assert reason(tmp_path / "new" / "students" / "base").startswith("the best student of the newest experiment, which "
                                                                      "has no distilled one that learned; passed over")
    (tmp_path / "new" / "teacher" / "metrics.json").write_text(json.dumps({"val_accuracy": 0.5, "val_classes_predicted": 1}))
    one_class("base")                                  # none learned: the choice as before, and its own warning
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "best"
    assert reason(tmp_path / "new" / "students" / "best") == "the best distilled student of the newest experiment"
    assert "WARNING: it predicted one class" in inference.validation_accuracy(tmp_path / "new" / "students" / "best")
    for name, acc in (("low", 0.6), ("best", 0.9), ("mid", 0.7), ("base", 0.95)):
        (tmp_path / "new" / "students" / name / "metrics.json").write_text(json.dumps({"val_accuracy": acc}))
    (tmp_path / "new" / "teacher" / "metrics.json").write_text(json.dumps({"val_accuracy": 0.97}))
    # an experiment named (--experiment, or the one --config names): its models, not the newest experiment's
    assert inference.default_model(str(tmp_path), "old") == tmp_path / "old" / "students" / "s"
    assert reason(tmp_path / "old" / "students" / "s", "old") == "the best distilled student of experiment old"
    with pytest.raises(inference.UsageError, match=r"no saved model under \S+/nope/; train one .*; experiments with saved "
                                                   r"models: new, old$"):
        inference.default_model(str(tmp_path), "nope")
    for name in ("low", "best", "mid"):              # no distilled student: the best student, then the teacher
        shutil.rmtree(tmp_path / "new" / "students" / name)
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "students" / "base"
    assert reason(tmp_path / "new" / "students" / "base") == \
        "the best student of the newest experiment, which has no distilled one"
    shutil.rmtree(tmp_path / "new" / "students" / "base")
    assert inference.default_model(str(tmp_path)) == tmp_path / "new" / "teacher"
    assert reason(tmp_path / "new" / "teacher") == "the teacher of the newest experiment, which has no finished student"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_teacher_logit_cache_is_set_aside_and_recomputed(tiny, tmp_path, caplog, damage):
    model, tok, ref = tiny
    teacher_dir = tmp_path / "teacher"
    model.config.sentiment_kd = {"max_length": 32, "truncation": "head+tail", "head_tokens": 8}
    model.save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    _, stats = ds.cached_teacher_logits(TEXTS, teacher_dir, tmp_path / "cache", batch_size=4)
    path = Path(stats["cache"])
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:                                   # same size, other bytes: in the middle of the stored logits
        data[len(data) // 3: len(data) // 3 + 8] = bytes(255 - b for b in data[len(data) // 3: len(data) // 3 + 8])
    path.write_bytes(bytes(data))
    out, stats = ds.cached_teacher_logits(TEXTS, teacher_dir, tmp_path / "cache", batch_size=4)
    assert stats["computed"] == len(TEXTS) and stats["reused"] == 0
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert f"teacher-logit cache {path} is damaged" in caplog.text and path.with_name(path.name + ".damaged").exists()
    assert ds.read_logit_cache(path).keys() == set(du.text_hashes(TEXTS))        # the rewritten cache reads back


def test_weights_stored_in_half_precision_are_named_when_loaded(tmp_path, caplog):
    # the GPU pack stores the pretrained models in float16: a run from it starts from rounded weights, and says so
    from models import load_classifier, stored_float_dtypes
    model, tok = build_tiny("bert")
    for name, dtype in (("half", torch.float16), ("full", torch.float32)):
        model.to(dtype).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    assert stored_float_dtypes(str(tmp_path / "half")) == {"F16"} and stored_float_dtypes(str(tmp_path / "full")) == {"F32"}
    with caplog.at_level("WARNING", logger="kd"):
        half, _ = load_classifier(str(tmp_path / "half"))
        load_classifier(str(tmp_path / "full"))
    assert next(half.parameters()).dtype == torch.float32
    assert [r.getMessage() for r in caplog.records if "stored as" in r.getMessage()] == \
        [f"{tmp_path / 'half'}: weights stored as F16, loaded as float32: a training from them starts from weights "
         "rounded to F16"]


def test_a_new_head_is_one_line_and_missing_encoder_weights_a_warning(tmp_path, caplog):
    # transformers' LOAD REPORT table ("classifier MISSING") reads as an error to a newcomer when it only lists the new
    # head every fine-tuning starts with; weights missing from the encoder are the real trouble
    import json
    from transformers import BertModel
    from models import load_classifier
    model, tok = build_tiny("bert")
    BertModel(model.config, add_pooling_layer=True).save_pretrained(tmp_path / "encoder")   # a pretrained encoder, no head
    tok.save_pretrained(tmp_path / "encoder")
    config = json.loads((tmp_path / "encoder" / "config.json").read_text())
    (tmp_path / "deeper").mkdir()
    for f in (tmp_path / "encoder").iterdir():
        (tmp_path / "deeper" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "deeper" / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 3}))  # layer 2: absent
    import logging
    theirs = []                           # transformers' own records (its library logger does not propagate)
    keep = logging.Handler()
    keep.emit = lambda record: theirs.append(record.getMessage())
    logging.getLogger("transformers").addHandler(keep)
    try:
        with caplog.at_level("INFO", logger="kd"):
            load_classifier(str(tmp_path / "encoder"), labels=["a", "b", "c"])
            load_classifier(str(tmp_path / "deeper"), labels=["a", "b"])
    finally:
        logging.getLogger("transformers").removeHandler(keep)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "head" in r.getMessage() or "encoder" in r.getMessage()]
    assert said[:2] == [("INFO", f"{tmp_path / 'encoder'}: a new classification head (classifier.bias, classifier.weight), "
                                 "trained here"),
                        ("INFO", f"{tmp_path / 'deeper'}: a new classification head (classifier.bias, classifier.weight), "
                                 "trained here")]
    assert said[2][0] == "WARNING" and said[2][1].startswith(f"{tmp_path / 'deeper'}: 16 encoder weights are not in the "
                                                              "checkpoint and start random (bert.encoder.layer.2.")
    assert not [m for m in theirs if "LOAD REPORT" in m]


def test_head_plan_keeps_a_head_of_the_data_classes_in_any_case_and_order():
    from transformers import BertConfig
    from models import head_plan

    def config(names, arch="BertForSequenceClassification"):
        return BertConfig(id2label=dict(enumerate(names)), architectures=[arch] if arch else None)
    data = ["negative", "neutral", "positive"]
    assert head_plan(config(["POSITIVE", "Negative", "neutral"]), data) == ("same", [1, 2, 0])
    assert head_plan(config(data), data) == ("same", [0, 1, 2])
    assert head_plan(config(["LABEL_0", "LABEL_1", "LABEL_2"]), data) == ("unnamed", [0, 1, 2])
    assert head_plan(config(["sad", "meh", "happy"]), data) == ("other", [0, 1, 2])
    assert head_plan(config(["negative", "positive"]), data) == ("new", None)             # another number of classes
    assert head_plan(config(data, arch="BertModel"), data) == ("new", None)                # an encoder: no head
    assert head_plan(config(data, arch=None), data) == ("new", None)
    assert head_plan(config(["pos", "POS", "neg"]), ["pos", "neg", "x"]) == ("other", [0, 1, 2])   # not one to one


def test_a_classifier_of_other_classes_gets_a_new_head_not_a_crash(tmp_path, caplog):
    # fine-tuning a 2-class sentiment model on 3-class data: transformers raises on the head's size unless told
    from models import load_classifier
    model, tok = build_tiny("bert")
    model.save_pretrained(tmp_path / "two")
    tok.save_pretrained(tmp_path / "two")
    with caplog.at_level("INFO", logger="kd"):
        three, _ = load_classifier(str(tmp_path / "two"), labels=["negative", "neutral", "positive"])
    assert three.classifier.weight.shape == (3, 32) and three.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    torch.testing.assert_close(three.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    assert f"{tmp_path / 'two'}: a new classification head (classifier.bias, classifier.weight) in place of its own for " \
           "2 classes, trained here" in caplog.text


def test_reorder_head_permutes_the_last_layer_of_a_roberta_head():
    # RoBERTa's head is classifier.dense (hidden -> hidden) then classifier.out_proj (hidden -> classes): only the
    # second's rows are the classes
    from models import reorder_head
    model, tok = build_tiny("roberta", labels=("a", "b", "c"))
    model.eval()
    batch = tok(["a great film", "the worst movie"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        before = model(**batch).logits
    reorder_head(model, [2, 0, 1])
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, before[:, [2, 0, 1]])
