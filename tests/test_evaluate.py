"""evaluate_models.py: the formulas by hand, the latency statistics, and the tiny experiment's outputs."""
import csv
import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import evaluate_models as ev
from conftest import POS, tiny_args
from models import build_tiny
from configurator import UsageError


def test_ratio_formulas_by_hand():
    assert ev.compression_ratio(355_000_000, 71_000_000) == pytest.approx(5.0)
    assert ev.retention(0.90, 0.95) == pytest.approx(94.7368421)
    assert ev.retention(0.95, 0.90) == pytest.approx(105.5555556)               # above its teacher: not capped
    # keeps 90% of the accuracy at a quarter of the size: 0.9 / 0.25
    assert ev.efficiency_ratio(90.0, 25.0, 100.0) == pytest.approx(3.6)
    assert ev.efficiency_ratio(100.0, 10.0, 10.0) == pytest.approx(1.0)


def test_retention_interval_by_hand():
    # 10 texts: the teacher right on 8, the student on 6, all of them among the teacher's (b = 0.6): retention 75%,
    # var(log) = [0.4/0.6 + 0.2/0.8 - 2 (0.6 - 0.48) / 0.48] / 10 = 0.041667, sd 0.204124, 75 * exp(±1.96 sd)
    teacher = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    student = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    assert ev.retention_interval(student, teacher) == pytest.approx((50.2698, 111.8962), abs=1e-4)
    # right on the two texts the teacher got wrong and 5 of its 8 (a = 0.7, b = 0.5): retention 87.5%, the two less
    # alike, so a wider interval: var(log) = [0.3/0.7 + 0.25 + 2 (0.56 - 0.5) / 0.56] / 10 = 0.089286
    other = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1], bool)
    assert ev.retention_interval(other, teacher) == pytest.approx((48.7145, 157.1657), abs=1e-4)
    assert ev.retention_interval(teacher, teacher) == pytest.approx((100.0, 100.0))     # itself: no spread
    assert ev.retention_interval(np.zeros(10, bool), teacher) is None


def test_what_to_ship_is_chosen_on_validation_and_the_fastest_within_a_standard_error():
    def student(model, val, test, throughput, kind="distilled", **extra):
        return {"model": model, "kind": kind, "precision": "fp32", "val_accuracy": val, "val_examples": 400,
                "accuracy": test, "throughput": throughput, "retention": 100 * test / 0.9, "speedup": throughput / 10,
                "confusion": [[50, 50], [40, 60]]} | extra
    # se of 0.85 on 400 texts: 100 * sqrt(0.85 * 0.15 / 400) = 1.785 points: L1 (0.835) is within it, L0 (0.83) not
    rows = [{"model": "teacher", "kind": "teacher", "precision": "fp32", "val_accuracy": 0.9, "val_examples": 400,
             "throughput": 10.0, "accuracy": 0.9},
            student("L3", 0.85, 0.80, 20.0), student("L3", 0.85, 0.70, 90.0) | {"precision": "int8"},
            student("L1", 0.835, 0.79, 60.0), student("L0", 0.83, 0.88, 99.0),
            student("L2-baseline", 0.86, 0.81, 30.0, kind="baseline") | {"confusion": [[100, 0], [100, 0]]}]  # one class
    best, fast, se = ev.ship_choice(rows)
    assert (best["model"], fast["model"], se) == ("L3", "L1", pytest.approx(1.7854, abs=1e-4))
    note = ev.ship_note(rows)
    assert note == ("\n\n**To ship**, chosen on validation: the most accurate student is L3 (validation 0.8500; test "
                    "0.8000, 88.9% of the teacher's, at 2.00x its throughput); within one standard error of it (1.8 "
                    "points on 400 validation texts), the fastest is L1 (validation 0.8350; test 0.7900, 87.8% of the "
                    "teacher's, at 6.00x its throughput).")
    assert ev.ship_choice([rows[0], rows[1], rows[4]])[1]["model"] == "L3"      # L0 is faster but 2 points below
    # the classes a candidate predicted are read on validation, as its metrics.json recorded them (the confusion
    # matrix above is test's, read only for results made before): L2-baseline predicted both there and wins; L3
    # predicted one of two there and is passed over though test's matrix is whole
    learned = {"val_classes_predicted": 2, "val_classes_in_labels": 2}
    on_val = [rows[0], rows[1] | {"val_classes_predicted": 1, "val_classes_in_labels": 2}, rows[5] | learned]
    assert ev.ship_choice(on_val)[0]["model"] == "L2-baseline"
    assert ev.ship_note(on_val).endswith("the most accurate student is L2-baseline (validation 0.8600; test 0.8100, "
                                         "90.0% of the teacher's, at 3.00x its throughput). **But on test L2-baseline "
                                         "predicted only 1 of 2 classes: not learned, do not ship it** (train again: "
                                         "README, *Your own data*).")       # as its card says
    assert ev.ship_choice(on_val[:2]) is None
    assert ev.ship_choice([rows[0], rows[1] | learned])[0]["model"] == "L3"
    # on a GPU with FP32_MODELS, fp32 rows for a few: the students are compared in the precision all of them ran in
    gpu = [rows[0], rows[0] | {"precision": "bf16"}, rows[1], rows[1] | {"precision": "bf16"},
           rows[3] | {"precision": "bf16", "throughput": 90.0, "speedup": 9.0}]
    assert ev.ship_precision(gpu) == "bf16" and ev.ship_precision(rows) == "fp32"
    best, fast, _ = ev.ship_choice(gpu)
    assert (best["model"], best["precision"], fast["model"]) == ("L3", "bf16", "L1")
    assert "the fastest is L1 in bf16 (validation 0.8350" in ev.ship_note(gpu)
    alone = [rows[0], rows[1]]
    assert ev.ship_note(alone).endswith("the most accurate student is L3 (validation 0.8500; test 0.8000, 88.9% of "
                                        "the teacher's, at 2.00x its throughput).")
    assert ev.ship_note([rows[0], {k: v for k, v in rows[1].items() if k != "val_examples"}]) == ""   # results made before
    # another seed of the same student, 6% faster by timing noise alone (a user's 35.36x beside 33.34x), is not "the
    # fastest"; 20% faster is
    # exactly one standard error below is within it: 100 sqrt(0.5 * 0.5 / 16) = 12.5 = 100 (0.5 - 0.375)
    a, b = student("A", 0.5, 0.5, 1.0, val_examples=16), student("B", 0.375, 0.5, 2.0, val_examples=16)
    best, fast, se = ev.ship_choice([rows[0], a, b])
    assert se == pytest.approx(12.5) and (best["model"], fast["model"]) == ("A", "B")
    assert ev.ship_choice([rows[0], a, a | {"model": "A2", "throughput": 1.1}])[0]["model"] == "A2"   # a tie: the faster
    seeds = [rows[0], student("L1-s1", 0.85, 0.80, 33.34), student("L1-s2", 0.845, 0.79, 35.36)]
    assert ev.ship_choice(seeds)[1]["model"] == "L1-s1"
    assert ev.ship_choice(seeds[:2] + [student("L1-s2", 0.845, 0.79, 40.01)])[1]["model"] == "L1-s2"
    # a speedup taken against a teacher timed while other processes kept the CPU busy: marked, and said so
    cores = {"device": "cpu", "cpu_count": 2}
    timed = [rows[0] | {"other_cores_busy": 0.96, "speedup_over": "teacher fp32", "speedup": 1.0},
             rows[1] | {"other_cores_busy": 0.0, "speedup_over": "teacher fp32"}]
    marked = ev.mark_busy_speedups([dict(r) for r in timed], cores["device"], cores["cpu_count"])
    assert [r.get("speedup_busy") for r in marked] == [None, True]        # the teacher's 1.00x over itself is exact
    assert ev.ship_note(marked).endswith("at 2.00x its throughput, timed on a busy CPU).")
    quiet = ev.mark_busy_speedups([dict(r) | {"other_cores_busy": 0.1} for r in timed], "cpu", 2)
    assert [r.get("speedup_busy") for r in quiet] == [None, None]
    assert ev.mark_busy_speedups([dict(r) for r in timed], "cuda", 2)[1].get("speedup_busy") is None   # GPU timings
    table = ev.markdown_table([{k: 1.0 for k in ("params_m", "size_mb", "f1", "recall_macro", "agreement", "retention",
                                                 "compression", "efficiency", "latency_p50_ms", "latency_p95_ms")} | r
                               for r in marked])
    assert table.splitlines()[-1].endswith("| 2.00x † |") and ev.busy_note(marked).startswith("† Speedup from a timing")
    assert ev.busy_note(quiet) == ""


def test_mcnemar_p_by_hand():
    # two-sided exact: 2 P(X <= min) for X ~ Binomial(discordant texts, 1/2)
    assert ev.mcnemar_p(5, 0) == pytest.approx(2 / 32)                        # 2 x (1/2)^5
    assert ev.mcnemar_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)     # 158 / 4096 = 0.0386
    assert ev.mcnemar_p(2, 5) == ev.mcnemar_p(5, 2) == pytest.approx(2 * (1 + 7 + 21) / 128)
    assert ev.mcnemar_p(0, 0) == ev.mcnemar_p(3, 3) == 1.0
    exact = 2 * sum(math.comb(660, i) for i in range(301)) / 2 ** 660           # thousands of texts: no overflow
    assert ev.mcnemar_p(300, 360) == pytest.approx(exact, rel=1e-9) and exact == pytest.approx(0.0216, abs=1e-4)


def test_latency_stats_positive_and_ordered():
    rng = np.random.default_rng(0)
    s = ev.latency_stats(list(rng.uniform(0.001, 0.02, 200)))
    assert 0 < s["p50_ms"] <= s["p95_ms"] <= 20 and 1 <= s["p50_ms"]
    assert ev.latency_stats([0.001, 0.002, 0.003])["p50_ms"] == pytest.approx(2.0)
    assert ev.latency_stats(list(np.arange(1, 101) / 1000))["p95_ms"] == pytest.approx(95.05)   # numpy's linear p95
    assert ev.latency_stats([0.001, 0.002, 0.009])["mean_ms"] == pytest.approx(4.0)            # the mean, not the median


def test_measure_returns_positive_ordered_timings():
    from models import build_tiny
    model, tok = build_tiny("bert")
    r = ev.measure(model, tok, ["a great film", "the worst movie ever made", "ok"] * 4, {"max_length": 16},
                   "cpu", 4, [0, 1, 2], 1)
    assert r["probs"].shape == (12, 2) and ((0 <= r["probs"]) & (r["probs"] <= 1)).all()
    np.testing.assert_allclose(r["probs"].sum(1), 1.0, atol=1e-9)
    assert 0 < r["p50_ms"] <= r["p95_ms"] and r["pipeline_throughput"] > 0
    assert r["tokenize_ms_per_review"] > 0
    # the forward passes are timed inside the pipeline: their share of it is at most 1, and the throughputs' ratio
    assert 0 < r["pipeline_over_forward"] <= 1
    assert r["pipeline_over_forward"] == pytest.approx(r["pipeline_throughput"] / r["throughput"])


def test_tokenization_time_is_reported_in_milliseconds_per_review(monkeypatch):
    import time
    from models import build_tiny
    model, tok = build_tiny("bert")
    real = ev.encode
    monkeypatch.setattr(ev, "encode", lambda *a, **k: time.sleep(0.12) or real(*a, **k))   # 0.12 s for 12 texts
    r = ev.measure(model, tok, ["a great film", "the worst movie ever made", "ok"] * 4, {"max_length": 16},
                   "cpu", 4, [0], 1)
    assert 10 <= r["tokenize_ms_per_review"] < 60                          # 10 ms each and the tokenizer's own


def test_evaluate_tiny_experiment_writes_everything(tiny_experiment, imdb_parquet):
    result = ev.main(tiny_args(imdb_parquet, tiny_experiment, cache=False))
    root = tiny_experiment / "tiny"
    saved = json.loads((root / "results.json").read_text())
    assert saved["texts"] == 24 and saved["hardware"]["device"] == "cpu" and saved["hardware"]["torch_threads"] >= 1
    assert saved["hardware"]["load_average_1min"] >= 0 and "when measuring began" in (root / "results.md").read_text()
    busy = saved["hardware"]["other_cores_busy"]             # an evaluation of under a second: None, too short to tell
    assert busy is None or busy >= 0
    assert all(r["other_cores_busy"] is None or r["other_cores_busy"] >= 0 for r in saved["rows"])
    assert ("cores busy while measuring" in (root / "results.md").read_text()) == (busy is not None)
    names = [(r["model"], r["precision"]) for r in saved["rows"]]
    assert names == [(m, p) for m in ("teacher", "cut", "cut-baseline", "roberta") for p in ("fp32", "int8")]
    keys = {"accuracy", "f1", "precision_macro", "recall_macro", "agreement", "params", "size_mb", "compression",
            "retention", "efficiency", "latency_p50_ms", "latency_p95_ms", "throughput", "speedup",
            "pipeline_over_forward", "tokenize_ms_per_review"}
    for row in saved["rows"]:
        assert keys <= set(row)
        assert 0 <= row["accuracy"] <= 1 and row["latency_p50_ms"] <= row["latency_p95_ms"]
    # the tiny fixture learns: the teacher is right on most test reviews, the distilled student clearly beats
    # chance, and the models differ, so that a wrong accuracy or a wrong "best" model shows in a test
    acc = {(r["model"], r["precision"]): r["accuracy"] for r in saved["rows"]}
    assert acc["teacher", "fp32"] >= 0.85 and acc["cut", "fp32"] >= 0.65 and len(set(acc.values())) >= 3
    teacher = saved["rows"][0]
    assert (teacher["compression"], teacher["retention"], teacher["speedup"], teacher["agreement"]) == (1.0, 100.0, 1.0, 1.0)
    cut = saved["rows"][2]
    assert cut["compression"] == pytest.approx(teacher["params"] / cut["params"]) and cut["compression"] > 1
    assert cut["retention"] == pytest.approx(100 * cut["accuracy"] / teacher["accuracy"])
    assert "**To ship**, chosen on validation: the most accurate student is " in (root / "results.md").read_text()
    low, high = cut["retention_ci"]                                      # paired on the same test texts
    assert low < cut["retention"] < high and teacher.get("retention_ci") is None
    assert "| retention (95% CI) |" in (root / "results.md").read_text() and \
        f"{cut['retention']:.2f}% ({low:.1f}-{high:.1f})" in (root / "results.md").read_text()
    int8 = saved["rows"][1]
    assert int8["size_mb"] < teacher["size_mb"] and int8["params"] == teacher["params"]
    assert (root / "teacher" / "training_args.bin").is_file()           # the Trainer's settings: not weights
    assert teacher["size_mb"] == pytest.approx((root / "teacher" / "model.safetensors").stat().st_size / 1e6)
    preds = list(csv.DictReader(open(root / "predictions" / "cut.csv")))
    assert len(preds) == 24 and set(preds[0]) == {"index", "label", "pred", "p_negative", "p_positive"}
    acc = np.mean([p["label"] == p["pred"] for p in preds])
    assert acc == pytest.approx(cut["accuracy"])
    theirs = list(csv.DictReader(open(root / "predictions" / "cut-baseline.csv")))     # the per-text test of the pair
    only = lambda a, b: sum(x["pred"] == x["label"] != y["pred"] for x, y in zip(a, b))   # noqa: E731
    assert cut["paired_test"] == {"baseline": "cut-baseline", "only_distilled": only(preds, theirs),
                                  "only_baseline": only(theirs, preds), "p": ev.mcnemar_p(only(preds, theirs), only(theirs, preds))}
    import pyarrow.parquet as pq                  # the predictions' index names the text it was made on
    test = pq.read_table(imdb_parquet / "test.parquet").to_pylist()
    texts = list(csv.DictReader(open(root / "predictions" / "texts.csv")))
    assert [t["index"] for t in texts] == [p["index"] for p in preds] and [t["label"] for t in texts] == [p["label"] for p in preds]
    assert [t["text"] for t in texts] == [r["text"].replace("<br />", " ") for r in test]     # as the models read them
    assert [t["label"] for t in texts] == [["negative", "positive"][r["label"]] for r in test]
    base = next(r for r in saved["rows"] if (r["model"], r["precision"]) == ("cut-baseline", "fp32"))
    card = (root / "students" / "cut" / "README.md").read_text()        # the card shows the pair on test too
    assert (f"Its labels-only baseline `cut-baseline` (same student, seed and optimizer steps) on the same test texts "
            f"(fp32): accuracy {base['accuracy']:.4f}, macro F1 {base['f1']:.4f}; this model "
            f"{100 * (cut['accuracy'] - base['accuracy']):+.2f} points") in card
    assert f"Text by text: {cut['paired_test']['only_distilled']} only this model got right, " \
           f"{cut['paired_test']['only_baseline']} only the baseline (exact McNemar p = {cut['paired_test']['p']:.2g}" in card
    table = (root / "results.md").read_text()
    assert "| teacher | teacher | fp32 |" in table and "cut-baseline" in table and "Hardware:" in table and "| reviews/s |" in table
    table = list(csv.DictReader(open(root / "results.csv")))
    assert len(table) == 8 and json.loads(table[0]["per_class"]) == teacher["per_class"]      # JSON, not repr
    assert json.loads(table[0]["confusion"]) == teacher["confusion"]
    png = (root / "dashboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000
    assert result["rows"][0]["model"] == "teacher"


def test_students_without_a_teacher_folder_are_compared_with_published_teacher_results(tiny_experiment, imdb_parquet,
                                                                                      tmp_path):
    # students distilled from published soft labels: their experiment has no teacher folder
    src = tiny_experiment / "tiny"
    published = ev.main(tiny_args(imdb_parquet, tiny_experiment, "--quantize=false", cache=False))
    for name in ("cut", "cut-baseline"):
        shutil.copytree(src / "students" / name, tmp_path / "soft" / "students" / name)
        config = tmp_path / "soft" / "students" / name / "config.json"      # as students of soft labels record it
        kd = json.loads(config.read_text())
        kd["sentiment_kd"]["teacher"] = str(tmp_path / "published" / "soft_labels")
        config.write_text(json.dumps(kd))
    with pytest.raises(UsageError, match=r"no finished teacher .*--teacher_results="):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", cache=False))
    result = ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={src}/results.json",
                               "--quantize=false", cache=False))
    rows, before = ({r["model"]: r for r in res["rows"]} for res in (result, published))
    assert list(rows) == ["teacher", "cut", "cut-baseline"] and rows["teacher"]["published"] == f"{src}/results.json"
    assert rows["teacher"]["accuracy"] == before["teacher"]["accuracy"] and rows["teacher"]["agreement"] is None
    assert rows["cut"]["accuracy"] == before["cut"]["accuracy"]                  # the same model on the same texts
    assert rows["cut"]["retention"] == pytest.approx(100 * rows["cut"]["accuracy"] / before["teacher"]["accuracy"])
    assert rows["cut"]["agreement"] is None and result["groups"][0]["student"]     # the gain is still measured
    assert "The teacher row is published in" in (tmp_path / "soft" / "results.md").read_text()
    # configs/tiny.toml's `roberta` was never distilled here: said, in the log and under the table
    assert result["not_finished"] == ["roberta"] and result["unpaired"] == []
    assert "**Not finished, so not here**: roberta (asked for by the runs that trained the others)." in \
        (tmp_path / "soft" / "results.md").read_text()
    again = ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={src}/results.json",
                              "--quantize=false", "--models=cut", cache=False))    # a distilled student brings its baseline
    assert [r["model"] for r in again["rows"]] == ["teacher", "cut", "cut-baseline"] and again["groups"][0]["gain"]
    assert again["not_finished"] == []                                         # --models picked: nothing missing
    ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={src}/results.json",
                      "--quantize=false", "--models=cut-baseline", "--test_size=1000", cache=False))   # a subset replaces
    logged = (tmp_path / "soft" / "logs" / "evaluate.log").read_text().splitlines()          # the tables: said
    assert "WARNING" in next(line for line in logged if "held rows of cut, which this evaluation does not measure (--models)" in line)
    assert "WARNING" in next(line for line in logged if "--test_size=1000: the test split has 24 texts; all of them" in line)
    with pytest.raises(UsageError, match=r"evaluated with texts = 24, here 10"):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={src}/results.json",
                          "--test_size=10", cache=False))
    assert rows["cut"]["speedup"] == pytest.approx(rows["cut"]["throughput"] / rows["teacher"]["throughput"])
    # as many texts, other ones (another --seed's subset): refused by their digest
    other = json.loads((src / "results.json").read_text())
    other["texts_digest"] = "0" * 16
    (tmp_path / "other-texts.json").write_text(json.dumps(other))
    with pytest.raises(UsageError, match=r"evaluated with texts_digest = '0000000000000000', here '[0-9a-f]{16}'"):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={tmp_path}/other-texts.json",
                          cache=False))
    # measured on another machine: its accuracy is the reference, its speed is not compared
    other = json.loads((src / "results.json").read_text())
    other["hardware"]["cpu"] = "another CPU"
    (tmp_path / "other-machine.json").write_text(json.dumps(other))
    result = ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={tmp_path}/other-machine.json",
                               "--quantize=false", cache=False))
    assert [r["speedup"] for r in result["rows"]] == [None] * 3 and result["rows"][1]["retention"] > 0
    assert "this machine is cpu, " in (tmp_path / "soft" / "results.md").read_text()
    # measured at another batch: no speedups either, and the reason named
    other = json.loads((src / "results.json").read_text())
    other["config"]["eval_batch_size"] = 999
    (tmp_path / "other-batch.json").write_text(json.dumps(other))
    split = {"data": other["data"], "texts": [""] * other["texts"], "names": other["labels"], "digest": other["texts_digest"]}
    teacher = ev.published_teacher(tmp_path / "other-batch.json", split, "cpu")
    assert [r["precision"] for r in teacher] == ["fp32"]
    assert teacher[0]["no_speedups"] == "measured with eval_batch_size = 999, here 8"
    assert ev.published_teacher(src / "results.json", split, "cpu")[0]["no_speedups"] == ""
    other = json.loads((src / "results.json").read_text())      # the same machine under another torch build
    other["hardware"]["torch"] = "2.11.0+cu130"
    (tmp_path / "other-torch.json").write_text(json.dumps(other))
    assert ev.published_teacher(tmp_path / "other-torch.json", split, "cpu")[0]["no_speedups"].endswith(
        f"torch 2.11.0+cu130; this machine is {', '.join(map(str, ev.machine(ev.hardware('cpu'))))}")
    # the results of another training of the teacher (its run named in results.json): refused, as with its folder
    assert published["teacher_run"] == result["teacher_run"] == json.loads((src / "results.json").read_text())["teacher_run"]
    other = json.loads((src / "results.json").read_text()) | {"teacher_run": "0" * 16}
    (tmp_path / "other-teacher.json").write_text(json.dumps(other))
    with pytest.raises(UsageError, match=r"student cut \(.*\) learned from another training of the teacher than the one "
                                         r"evaluated there; give the results of its own teacher, or leave it out"):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={tmp_path}/other-teacher.json",
                          cache=False))
    other.pop("teacher_run")                                                     # written before it was recorded
    (tmp_path / "older.json").write_text(json.dumps(other))
    ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=soft", f"--teacher_results={tmp_path}/older.json",
                      "--quantize=false", cache=False))
    assert "does not name its teacher's training run (written before it was recorded)" in \
        (tmp_path / "soft" / "logs" / "evaluate.log").read_text()


def test_a_busy_cpu_is_recorded_and_warned_about(monkeypatch, caplog):
    # latency measured while other work shares the cores is slow: said when measuring begins (a new user saw 500 ms)
    import os
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    with caplog.at_level("WARNING"):
        assert ev.machine_load("cpu") == 3.5 and "load average 3.5 on 2 cores" in caplog.text
        caplog.clear()
        assert ev.machine_load("cuda") == 3.5 and not caplog.text           # the warning is about CPU timings
        monkeypatch.setattr(os, "getloadavg", lambda: (2.9, 1.0, 1.0))      # training just ended on 2 cores: quiet
        assert ev.machine_load("cpu") == 2.9 and not caplog.text


def test_the_figures_say_when_other_work_shared_the_cpu():
    busy = {"device": "cpu", "cpu_count": 2, "other_cores_busy": 0.9}
    result = {"texts": 1200, "data": "IMDb", "split": "test", "hardware": busy}
    assert ev.figure_where(result) == "1,200 IMDb test reviews, cpu (CPU shared with other work: speed figures slow)"
    assert ev.figure_where(result | {"data": "data/mine", "hardware": busy | {"other_cores_busy": 0.1}}) == \
        "1,200 data/mine test texts, cpu"


def test_the_machines_busy_time_leaves_out_idle_and_iowait(monkeypatch):
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal (ticks); waiting on a disk is not busy
    import io

    import configurator
    monkeypatch.setattr(configurator, "open", lambda *a, **k: io.StringIO("cpu  100 0 50 1000 300 0 0 7 0 0\n"), raising=False)
    assert configurator.cpu_sample()[1] == pytest.approx(157 / os.sysconf("SC_CLK_TCK"))


def test_others_cores_by_hand():
    # (wall s, machine CPU s, own CPU s): 3 CPU s used in 2 s, 1 of them ours -> others kept 1 core busy
    assert ev.others_cores((10.0, 100.0, 5.0), (12.0, 103.0, 6.0)) == 1.0
    assert ev.others_cores((10.0, 100.0, 5.0), (14.0, 101.0, 5.0)) == 0.25
    assert ev.others_cores((10.0, 100.0, 5.0), (12.0, 100.99, 6.0)) == 0.0     # tick rounding: never below 0
    assert ev.others_cores(None, (12.0, 103.0, 6.0)) is None and ev.others_cores((10.0, 1, 1), (10.0, 2, 1)) is None
    assert ev.others_cores((10.0, 100.0, 5.0), (10.5, 101.0, 5.0)) is None      # under a second: ticks too coarse


def test_others_cores_sees_another_process_not_this_one():
    import subprocess
    import sys
    import time
    if ev.cpu_sample() is None:
        pytest.skip("no /proc/stat here")
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    before = ev.cpu_sample()
    child = subprocess.Popen([sys.executable, "-c", spin])    # one core busy for 1.5 s in another process
    time.sleep(1.5)
    others = ev.others_cores(before, ev.cpu_sample())         # sampled before the child is reaped: not ours yet
    child.wait()
    assert others >= 0.6
    # this process's own CPU time, and that of the children it has reaped, is its own, not others'
    start, t = ev.cpu_sample(), time.process_time()
    while time.process_time() - t < 0.5:
        pass
    own = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"   # 0.5 CPU s however busy
    subprocess.run([sys.executable, "-c", own], check=True)
    assert ev.cpu_sample()[2] - start[2] >= 0.9
    from model_card import cpu_was_busy
    assert cpu_was_busy({"device": "cpu", "cpu_count": 2, "other_cores_busy": 0.5, "load_average_1min": 0.1})
    assert not cpu_was_busy({"device": "cpu", "cpu_count": 2, "other_cores_busy": 0.3, "load_average_1min": 3.6})
    assert not cpu_was_busy({"device": "cuda", "cpu_count": 2, "other_cores_busy": 1.5})
    assert cpu_was_busy({"device": "cpu", "cpu_count": 2, "load_average_1min": 3.6})     # older records: the load


def test_training_on_a_shared_cpu_is_warned_about(monkeypatch, caplog):
    import os

    import training
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING"):
        training.warn_if_cpu_shared("outputs/x/teacher", 0.9)
        assert "outputs/x/teacher: other processes kept 0.9 of 2 cores busy" in caplog.text
        caplog.clear()
        training.warn_if_cpu_shared("outputs/x/teacher", 0.3)
        training.warn_if_cpu_shared("outputs/x/teacher", None)
        assert not caplog.text


def test_rows_timed_while_others_ran_are_named(caplog, tmp_path, monkeypatch):
    rows = [{"model": "teacher", "precision": "fp32", "other_cores_busy": 0.05},
            {"model": "cut", "precision": "int8", "other_cores_busy": 0.9}, {"model": "old", "precision": "fp32"}]
    import os
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level("WARNING"):
        ev.warn_if_shared("cpu", rows)
    assert "(of 2 cores; a fifth slows timings): cut int8 (0.9); their timings are slow" in caplog.text
    assert caplog.text.rstrip().endswith("to publish (where it cannot be quiet, --threads=1 keeps torch's threads from "
                                         "waiting on each other's turn, which slows them most)")
    assert "teacher" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(ev, "THREADS", 1)                  # already set: not advised again
    with caplog.at_level("WARNING"):
        ev.warn_if_shared("cpu", rows)
    assert caplog.text.rstrip().endswith("for figures to publish")
    assert ev.slowed_rows(rows, "cpu", 2) == ["cut int8 (0.9)"] and ev.slowed_rows(rows, "cpu", 8) == []
    assert ev.slowed_rows([rows[1] | {"published": "x/results.json"}], "cpu", 2) == []    # timed elsewhere
    hw = {"cpu": "x", "torch_threads": 2, "device": "cpu", "torch": "2", "cpu_count": 2, "other_cores_busy": 0.3}
    ev.write_reports(tmp_path, {"rows": [dict.fromkeys(k for k, _ in ev._COLUMNS) | r for r in rows], "hardware": hw, "groups": [],
                                "experiment": "e", "texts": 3, "data": "imdb", "split": "test", "labels": ["a", "b"],
                                "config": {"warmup": 1, "latency_samples": 100, "eval_batch_size": 4}})
    assert ("other processes kept 0.3 of its 2 cores busy while measuring (over a fifth while timing cut int8 (0.9): their "
            "speed figures are slow)") in (tmp_path / "results.md").read_text()
    assert "over 3 test texts" in (tmp_path / "results.md").read_text()    # as many as there are, not LATENCY_SAMPLES
    caplog.clear()
    with caplog.at_level("WARNING"):
        ev.warn_if_shared("cuda", rows)
    assert not caplog.text


def test_a_model_that_predicts_only_some_classes_is_flagged_in_results_and_its_card(tmp_path):
    from data_utils import classes_missed
    from model_card import result_notes
    assert classes_missed({"confusion": [[0, 4], [0, 6]]}) == "1 of 2"
    assert classes_missed({"confusion": [[3, 0, 1], [2, 0, 0], [0, 0, 5]]}) == "2 of 3"
    assert classes_missed({"confusion": [[3, 1], [2, 4]]}) == classes_missed({}) == ""
    # a class the texts lack (a small test file without "neutral") is not one the model missed
    assert classes_missed({"confusion": [[5, 0, 1], [0, 0, 0], [0, 0, 9]]}) == ""
    assert classes_missed({"confusion": [[5, 0, 0], [0, 0, 0], [9, 0, 0]]}) == "1 of 2"
    rows = [{"model": "teacher", "precision": "fp32", "confusion": [[5, 1], [2, 4]]},
            {"model": "L1", "precision": "fp32", "confusion": [[0, 6], [0, 6]]},
            {"model": "L1", "precision": "int8", "confusion": [[0, 6], [0, 6]]}]
    assert ev.one_sided_note(rows, "texts") == ("**Warning: L1 (fp32: 1 of 2), L1 (int8: 1 of 2) predicted only some of "
                                                "the classes on these texts**: such a model has not learned; give it more "
                                                "steps (README, *Your own data*). ")
    assert ev.one_sided_note(rows[:1], "texts") == ""
    figures = {"accuracy": 0.5, "retention": 62.5}                        # and on the dashboard's accuracy bar
    assert ev.accuracy_label(rows[1] | figures) == "0.5000 (62.50%), predicts only 1 of 2 classes!"
    assert ev.accuracy_label(rows[0] | figures) == "0.5000 (62.50%)"
    blind = [rows[0] | {"kind": "teacher", "confusion": [[6, 0], [6, 0]]}, rows[1] | {"kind": "distilled"}]
    assert ev.one_sided_note(blind, "texts") == ("**Warning: teacher (fp32: 1 of 2), L1 (fp32: 1 of 2) predicted only "
                                                 "some of the classes on these texts**: such a model has not learned; give "
                                                 "it more steps (README, *Your own data*), the teacher first: students "
                                                 "distilled from it learn to miss the classes it misses. ")
    hw = {"cpu": "x", "torch_threads": 2, "device": "cpu", "torch": "2"}
    pairs = [row("L1", "distilled", 0.5, 1, name="L1") | {"confusion": [[0, 6], [0, 6]]},
             row("L1", "distilled", 0.5, 1, name="L1", precision="int8") | {"confusion": [[0, 6], [0, 6]]},
             row("L1-baseline", "baseline", 0.8, 1, name="L1") | {"confusion": [[5, 1], [1, 5]]}]
    groups = [{"student": "L1", "models": ["L1"], "baselines": ["L1-baseline"]},
              {"student": "L2", "models": ["L2"], "baselines": ["L2-baseline"]}]
    assert ev.unlearned_gain_note(groups, pairs) == (   # a baseline that has not learned would count the same
        " **Not a measure of distillation: L1 (L1) predicted only some of the classes**, so the gain compares with a "
        "model that has not learned; train the students longer (README, *Your own data*) and evaluate again.")
    pairs[0]["confusion"] = [[5, 1], [2, 4]]            # only its int8 copy: not the rows the gain compares
    assert ev.unlearned_gain_note(groups, pairs) == ""
    pairs[0]["confusion"], rows = [[0, 6], [0, 6]], [rows[0] | {"kind": "teacher"}, *pairs]
    spread = {"mean": 0.5, "std": 0.0, "n": 1}
    ev.write_reports(tmp_path, {"rows": [dict.fromkeys(k for k, _ in ev._COLUMNS) | r for r in rows], "hardware": hw,
                                "groups": [groups[0] | {"distilled": spread, "baseline": spread, "gain": spread | {"mean": 0.0},
                                                        "f1_gain": None, "p": [None]}],
                                "experiment": "e", "texts": 12, "data": "imdb", "split": "test", "labels": ["a", "b"],
                                "config": {"warmup": 1, "latency_samples": 3, "eval_batch_size": 4}})
    table, warning, gains = (tmp_path / "results.md").read_text().split("\n\n")[1:4]   # the warning under the table
    assert table.startswith("| model |") and warning.startswith("**Warning: L1 (fp32: 1 of 2), L1 (int8: 1 of 2) predicted only")
    assert gains.startswith("## Distilled vs labels-only baseline")
    assert "**Not a measure of distillation: L1 (L1) predicted only some" in (tmp_path / "results.md").read_text()
    card = lambda r: " ".join(result_notes(r | {"per_class": {}}, None, None))     # noqa: E731
    assert "**Warning: on test it predicted only 1 of 2 classes (fp32): it has not learned; do not ship it.**" in card(rows[1])
    assert "Warning" not in card(rows[0])
    versus = (rows[0] | {"accuracy": 0.5, "f1": 0.4, "model": "s"}, rows[1] | {"accuracy": 0.5, "f1": 0.33, "model": "s-baseline"})
    assert "this model +0.00 points: distillation did not beat training on the labels alone here; but the baseline " \
        "predicted only some of the classes, so it is no model to ship either." in " ".join(result_notes(versus[0], versus, None))


def test_a_model_that_all_but_never_predicts_a_class_is_flagged_in_results_and_its_card(tmp_path):
    from data_utils import classes_neglected, per_class_metrics
    from model_card import result_notes
    # 3 classes of 40 texts; the model predicts class 'c' once, rightly (recall 1/40 = 0.025), and class 'b' for
    # 2 of its 40 (0.05: not under the floor); class 'a' is recalled in full. A class predicted but never right
    # (recall 0) is flagged too: the model does not recognise it
    labels = [0] * 40 + [1] * 40 + [2] * 40
    preds = [0] * 40 + [1] * 2 + [0] * 38 + [2] + [0] * 39
    row = {"model": "L1", "precision": "fp32"} | per_class_metrics(preds, labels, ["a", "b", "c"])
    assert classes_neglected(row) == {"c": 0.025}
    assert classes_neglected(row, floor=0.06) == {"b": 0.05, "c": 0.025}
    assert classes_neglected(row, min_support=41) == {}
    never = {"model": "L1", "precision": "fp32"} | per_class_metrics([0] * 40 + [1] * 40 + [0] * 40, labels, ["a", "b", "c"])
    assert classes_neglected(never) == {}                 # never predicted: classes_missed's, not this one's
    wrong = {"model": "L1", "precision": "fp32"} | per_class_metrics([0] * 80 + [1] * 40, labels, ["a", "b", "c"])
    assert classes_neglected(wrong) == {"b": 0.0}         # 'b' predicted 40 times, never rightly; 'c' never predicted
    assert ev.one_sided_note([row], "tweets") == ("**Warning: L1 (fp32: class 'c' recall 0.0250) all but never "
                                                  "recognised a class on these tweets** (recall under 5%): look at its confusion "
                                                  "matrix (results.json) before shipping it. ")
    card = " ".join(result_notes(row, None, None))
    assert ("**Warning: on test it all but never recognised class 'c' recall 0.0250 (fp32): look at its confusion matrix "
            "before shipping it.**") in card
    assert "all but never" not in " ".join(result_notes(never, None, None))   # the stronger warning only


def test_test_classes_in_other_proportions_than_validation_are_flagged(tmp_path):
    from data_utils import class_shares, shift_note
    assert class_shares([0, 0, 1, 2], 3) == [0.5, 0.25, 0.25] and class_shares([1, 1], 3) == [0, 1, 0]
    names, validation, test = ["negative", "neutral", "positive"], [0.157, 0.501, 0.342], [0.323, 0.483, 0.194]
    note = shift_note(names, validation, test, "tweets")
    assert note == ("**The test tweets' classes are not in validation's proportions** (test / validation: negative "
                    "32.3% / 15.7%, neutral 48.3% / 50.1%, positive 19.4% / 34.2%): validation accuracy, and any choice "
                    "made on it (checkpoints, recipes), may not carry over to test; macro recall weighs each class "
                    "equally. ")
    assert shift_note(names, validation, [0.157 + 0.099, 0.501 - 0.099, 0.342]) == ""      # under 10 points apart
    assert shift_note(["a", "b"], [0.5, 0.5], [0.5, 0.5]) == ""
    rows = [{"model": "teacher", "precision": "fp32", "confusion": [[5, 1], [2, 4]]}]
    result = {"rows": [dict.fromkeys(k for k, _ in ev._COLUMNS) | r for r in rows], "groups": [], "experiment": "e",
              "hardware": {"cpu": "x", "torch_threads": 2, "device": "cpu", "torch": "2"}, "texts": 12, "data": "tweets.csv",
              "split": "test", "labels": names, "config": {"warmup": 1, "latency_samples": 3, "eval_batch_size": 4},
              "class_shares": {"validation": validation, "test": test}}
    ev.write_reports(tmp_path, result)
    assert "**The test texts' classes are not in validation's proportions** (test / validation: negative 32.3%" in \
        (tmp_path / "results.md").read_text()
    ev.write_reports(tmp_path, result | {"class_shares": {"validation": validation, "test": validation}})
    assert "proportions" not in (tmp_path / "results.md").read_text()
    del result["class_shares"]                      # a results.json written before the shares were recorded
    ev.write_reports(tmp_path, result)
    assert "proportions" not in (tmp_path / "results.md").read_text()


def test_spread_labels_keeps_the_gap_and_moves_crowded_labels_least():
    assert ev.spread_labels([0, 0], gap=10).tolist() == [-5, 5]                  # two at one spot: centred on it
    assert ev.spread_labels([0, 100], gap=10).tolist() == [0, 100]               # apart already: unmoved
    assert ev.spread_labels([5, 0, 0], gap=10) == pytest.approx([35 / 3, -25 / 3, 5 / 3])   # the mean 5/3 kept
    assert ev.spread_labels([0, 0, 50], gap=10).tolist() == [-5, 5, 50]          # a crowd of two, one clear of it
    y = np.random.default_rng(0).normal(0, 5, 30)
    h = ev.spread_labels(y, gap=10)
    assert np.diff(h[np.argsort(y, kind="stable")]).min() >= 10 - 1e-9 and h.mean() == pytest.approx(y.mean())
    assert ev.overlapping_spans([(0, 10), (20, 30), (5, 21), (40, 50), (45, 46)]) == [[0, 2, 1], [3, 4]]
    assert ev.overlapping_spans([(0, 1)]) == [[0]] and ev.overlapping_spans([]) == []


def test_scatter_labels_do_not_overlap_and_stay_inside_the_axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    fig, ax = plt.subplots(figsize=(6, 4))
    points = [(100, 0.80), (101, 0.8001), (102, 0.8002), (300, 0.70), (990, 0.75)]
    ax.scatter(*zip(*points))
    ax.set_xlim(90, 1000)
    labels = ["L1", "L1 (int8)", "L1-baseline", "far", "at the right edge"]
    ev.label_points(ax, points, labels, [False, False, True, False, False])
    texts = {t.get_text(): t for t in ax.texts}
    fig.canvas.draw()
    boxes = {k: Text.get_window_extent(t) for k, t in texts.items()}     # the text alone, without its line
    assert not any(boxes[a].overlaps(boxes[b]) for i, a in enumerate(labels) for b in labels[i + 1:])
    assert texts["far"].xyann == (5, 3) and texts["far"].arrow_patch is None       # alone: just above-right, no line
    assert texts["at the right edge"].get_ha() == "right" and boxes["at the right edge"].x1 <= ax.get_window_extent().x1
    assert sum(texts[k].arrow_patch is not None for k in labels[:3]) >= 2          # moved ones joined to their points
    plt.close(fig)


def test_evaluate_errors(tiny_experiment, imdb_parquet, tmp_path):
    with pytest.raises(UsageError, match="no model 'nope'"):
        ev.main(tiny_args(imdb_parquet, tiny_experiment, "--models=nope", cache=False))
    with pytest.raises(UsageError, match="no finished teacher .*, or set --teacher_dir \\(students of published"):
        ev.main(tiny_args(imdb_parquet, tmp_path, cache=False))
    with pytest.raises(UsageError, match=r"; teacher_dir = \S+/nowhere: give the folder of a finished teacher"):
        ev.main(tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={tmp_path / 'nowhere'}", cache=False))


def test_only_the_experiments_own_models_get_their_cards_written(tmp_path):
    # another experiment's teacher keeps its card; a teacher/ folder linked to scratch storage is still this one's
    root, scratch = tmp_path / "exp", tmp_path / "scratch"
    (root / "students" / "s").mkdir(parents=True)
    scratch.mkdir()
    (root / "teacher").symlink_to(scratch)
    models = [("teacher", str(root / "teacher")), ("s", str(root / "students" / "s")),
              ("teacher", str(tmp_path / "other" / "teacher"))]
    assert ev.own_models(models, root) == models[:2]


def test_students_of_another_experiments_teacher_are_evaluated_beside_it(tiny_experiment, imdb_parquet, tmp_path, capsys,
                                                                         monkeypatch):
    # distilled with --teacher_dir into an experiment of their own: evaluation takes the teacher they name
    import shutil
    teacher = tiny_experiment / "tiny" / "teacher"
    shutil.copytree(tiny_experiment / "tiny" / "students", tmp_path / "tiny" / "students")
    assert ev.students_teacher(tmp_path / "tiny") == teacher
    config = tmp_path / "tiny" / "students" / "cut-baseline" / "config.json"      # the same folder written another way
    kd = json.loads(config.read_text())
    kd["sentiment_kd"]["teacher"] = str(teacher / ".." / "teacher")
    config.write_text(json.dumps(kd))
    assert ev.students_teacher(tmp_path / "tiny") in (teacher, teacher / ".." / "teacher")
    card = (teacher / "README.md").read_text()
    written, real = [], ev.write_cards

    def cards_after_results(*args, **kwargs):      # a crash between the two leaves old cards, not cards ahead of results
        written.append(json.loads((tmp_path / "tiny" / "results.json").read_text())["texts"])
        real(*args, **kwargs)
    monkeypatch.setattr(ev, "write_cards", cards_after_results)
    result = ev.main(tiny_args(imdb_parquet, tmp_path, "--models=cut", "--quantize=false", "--test_size=12", cache=False))
    assert written == [12]
    assert [(r["model"], r["folder"]) for r in result["rows"]][0] == ("teacher", str(teacher))
    assert (teacher / "README.md").read_text() == card               # its own experiment's card, not this evaluation's
    assert "stratified 12 of 24 test texts" in (tmp_path / "tiny" / "students" / "cut" / "README.md").read_text()
    assert (tmp_path / "tiny" / "logs" / "evaluate.log").read_text().count(
        f"teacher: {teacher}, the one the students of {tmp_path / 'tiny'} were distilled from") == 1
    config = tmp_path / "tiny" / "students" / "cut-baseline" / "config.json"      # two teachers named: none is taken
    shutil.copytree(teacher, tmp_path / "elsewhere" / "teacher")
    kd = json.loads(config.read_text())
    kd["sentiment_kd"]["teacher"] = str(tmp_path / "elsewhere" / "teacher")
    config.write_text(json.dumps(kd))
    assert ev.students_teacher(tmp_path / "tiny") is None
    with pytest.raises(UsageError, match="no finished teacher .*, or set --teacher_dir \\(students of published"):
        ev.main(tiny_args(imdb_parquet, tmp_path, cache=False))
    with pytest.raises(UsageError, match=r"; teacher_dir = \S+/nowhere: give the folder of a finished teacher"):
        ev.main(tiny_args(imdb_parquet, tmp_path, f"--teacher_dir={tmp_path / 'nowhere'}", cache=False))
    assert ev.students_teacher(tmp_path / "nothing") is None
    # an experiment holding a teacher of its own (another training) and a student distilled from the first one:
    # refused as a student of another teacher, naming it, not as one of a teacher retrained since; no warning either
    # from inference.py, which compares a student with the teacher beside it
    shutil.copytree(teacher, tmp_path / "mine" / "teacher")
    metrics = json.loads((teacher / "metrics.json").read_text())
    (tmp_path / "mine" / "teacher" / "metrics.json").write_text(json.dumps(metrics | {"train_time_s": 1e6}))
    shutil.copytree(tiny_experiment / "tiny" / "students" / "cut", tmp_path / "mine" / "students" / "cut")
    config = tmp_path / "mine" / "students" / "cut" / "config.json"              # as distilled with --teacher_dir
    kd = json.loads(config.read_text())
    kd["sentiment_kd"]["run_config"]["teacher_dir"] = str(teacher)
    config.write_text(json.dumps(kd))
    with pytest.raises(UsageError, match=rf"^student cut \(.*mine/students/cut\) learned from the teacher {teacher}, not "
                                         rf".*mine/teacher: --teacher_dir={teacher} evaluates it beside its own teacher; "
                                         r"or leave it out \(--models\)$"):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=mine", cache=False))
    import inference
    inference.print_model_line(tmp_path / "mine" / "students" / "cut")
    assert "retrained since" not in capsys.readouterr().err
    # a student of its own experiment's teacher, the experiment renamed since (scarce-matched's records name
    # /work/study2/scarce/teacher): a teacher retrained since, whatever the folder's name now
    kd["sentiment_kd"]["run_config"]["teacher_dir"] = ""
    kd["sentiment_kd"]["teacher"] = "/elsewhere/scarce/teacher"
    config.write_text(json.dumps(kd))
    with pytest.raises(UsageError, match=r"^student cut \(.*\) learned from another training of the teacher than "):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--experiment=mine", cache=False))
    inference.print_model_line(tmp_path / "mine" / "students" / "cut")
    assert "retrained since" in capsys.readouterr().err


def test_quantize_kinds_picks_the_int8_rows(tiny_experiment, imdb_parquet):
    result = ev.main(tiny_args(imdb_parquet, tiny_experiment, '--quantize_kinds=["distilled"]',
                               "--models=cut,cut-baseline", cache=False))
    names = [(r["model"], r["precision"]) for r in result["rows"]]
    assert names == [("teacher", "fp32"), ("cut", "fp32"), ("cut", "int8"), ("cut-baseline", "fp32")]
    with pytest.raises(UsageError, match="unknown kind 'student-int8'"):
        ev.main(tiny_args(imdb_parquet, tiny_experiment, '--quantize_kinds=["student-int8"]', cache=False))


def test_int8_rows_quantize_each_output_channel_by_default(monkeypatch):
    """A scale per output channel (QUANTIZE_PER_CHANNEL, outputs/int8-choice) keeps a small row's weights where one
    scale for the whole tensor, set by its largest weight, rounds them to zero."""
    model, _ = build_tiny("bert")
    dense = model.bert.encoder.layer[0].intermediate.dense
    with torch.no_grad():
        dense.weight[0] *= 1e-3                 # a row 1,000x smaller than the others
    w = dense.weight.detach().clone()
    quantized = {True: ev.variant("int8", model, None, "cpu")[0]}             # the default
    monkeypatch.setattr(ev, "QUANTIZE_PER_CHANNEL", False)
    quantized[False] = ev.variant("int8", model, None, "cpu")[0]
    for per, q in quantized.items():
        layer = q.bert.encoder.layer[0].intermediate.dense
        assert isinstance(layer, torch.ao.nn.quantized.dynamic.Linear)
        got = layer.weight()
        assert got.qscheme() == (torch.per_channel_affine if per else torch.per_tensor_affine)
        scales = got.q_per_channel_scales() if per else torch.full((w.shape[0],), got.q_scale())
        assert scales.shape == (64,)
        assert (got.dequantize() - w).abs().max(1).values.le(scales / 2 + 1e-7).all()   # each weight rounds to its grid
        small = got.dequantize()[0]
        assert (small.abs().max() > 0) == per     # per tensor: the small row's weights are all rounded to 0
    assert torch.equal(dense.weight, w)         # the fp32 model itself is left as it was


def row(model, kind, acc, seed, steps=10, layers=(0,), name=None, precision="fp32", **extra):
    spec = {"name": name or model, "layers": list(layers)} | ({"seed": seed} if seed is not None else {}) | extra
    return {"model": model, "kind": kind, "precision": precision, "accuracy": acc, "seed": seed, "steps": steps,
            "student": spec}


def test_the_students_not_finished_are_those_their_runs_asked_for(tmp_path):
    # the README's `--experiment=quick-l4 --students=[L4]` run was told quick.toml's L3, L2, L1 were not finished
    def model(name, **run_config):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"sentiment_kd": {"run_config": run_config}}))
        return name, tmp_path / name
    config = tmp_path / "exp.toml"
    config.write_text('[distill_student]\nstudents = [{name = "L3", layers = [0]}, {name = "L2", layers = [0], baseline = false}]\n')
    teacher = model("teacher", seed=0)
    asked = {"students": [{"name": "L4", "layers": [0]}, {"name": "L5", "layers": [0]}], "only": [""], "baseline": True}
    assert ev.unfinished_students([teacher, model("L4", **asked), model("L4-baseline", **asked)], str(config)) == \
        ["L5", "L5-baseline"]
    only = {"students": [{"name": "L3", "layers": [0]}, {"name": "L1", "layers": [0]}], "only": ["L3"], "baseline": False}
    assert ev.unfinished_students([teacher, model("L3", **only)], str(config)) == []          # --only=L3 --baseline=false
    assert ev.unfinished_students([teacher], str(config)) == ["L3", "L3-baseline", "L2"]       # none finished: the file's


def test_a_baseline_left_from_another_run_is_said_not_to_be_the_twin(tmp_path, caplog):
    # a user's --overwrite run stopped after L1: the new L1 (342 steps) beside the old L1-baseline (57) showed "no
    # baseline" without a word
    rows = [row("teacher", "teacher", 0.9, None), row("L1", "distilled", 0.99, None, steps=342),
            row("L1-baseline", "baseline", 0.20, None, steps=57, name="L1"),
            row("L2", "distilled", 0.9, None, steps=10), row("L2-baseline", "baseline", 0.8, None, steps=10, name="L2")]
    assert ev.unpaired_baselines(rows, ev.paired_rows(rows)) == [
        "L1-baseline is not the matched baseline of L1 (optimizer steps 342 vs 57): the two were trained by different "
        "runs; run a stopped --overwrite command again, or train the pair anew (distill_student.py with this "
        "experiment's config and flags, --only=L1 --overwrite=true)"]
    rows[2]["match_steps"] = False                          # MATCH_STEPS off: its own steps, by design
    assert ev.unpaired_baselines(rows, ev.paired_rows(rows)) == []
    import os
    models = []
    for name in ("teacher", "L1", "L1-baseline"):                # finished at 1000 s, 3000 s, 1000 s
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
        os.utime(tmp_path / name / "metrics.json", (3000 if name == "L1" else 1000,) * 2)
        models.append((name, tmp_path / name))
    mark = tmp_path / ".overwrite-run.json"                      # the command began at 2000 s
    mark.write_text(json.dumps({"command": ["--config", "configs/tiny.toml", "--overwrite=true"]}))
    os.utime(mark, (2000, 2000))
    ev.warn_if_overwrite_unfinished(tmp_path, ["--overwrite", "--config", "configs/tiny.toml"], models)   # its own step
    assert caplog.text == ""
    said = ev.warn_if_overwrite_unfinished(tmp_path, ["--config", "configs/tiny.toml"], models)
    assert f"an --overwrite command of {tmp_path} was stopped before it finished (--config configs/tiny.toml " \
           f"--overwrite=true): teacher, L1-baseline are from before it" in caplog.text
    assert ev.unfinished_note({"stale": said}).startswith(f"**Warning**: An --overwrite command of {tmp_path} was "
                                                          f"stopped before it finished")      # under results.md's table
    caplog.clear()
    ev.warn_if_overwrite_unfinished(tmp_path, ["--config", "configs/tiny.toml"], models[1:2])      # all retrained
    assert caplog.text == ""


def test_students_that_read_fewer_tokens_than_the_teacher_are_named():
    rows = [row("teacher", "teacher", 0.9, None) | {"max_length": 512},
            row("L3", "distilled", 0.86, 1) | {"max_length": 128}, row("L3", "distilled", 0.86, 1, precision="int8") | {"max_length": 128},
            row("L6", "distilled", 0.88, 1) | {"max_length": 512}, row("old", "baseline", 0.8, 1)]     # old: no record of it
    assert ev.length_note(rows) == ("**Shorter inputs**: L3 (128) read at most that many tokens against the teacher's "
                                    "512: their speedups come partly from the shorter inputs, and their accuracy is on "
                                    "less of each text. ")
    assert ev.length_note([r | {"max_length": 512} for r in rows]) == "" and ev.length_note(rows[1:]) == ""


def test_onnx_rows_an_evaluation_does_not_measure_again_are_named():
    before = [{"model": "teacher", "precision": "fp32"}, {"model": "L1", "precision": "fp32"},
              {"model": "L1", "precision": "onnx-fp32"}, {"model": "L1", "precision": "onnx-int8"},
              {"model": "gone", "precision": "onnx-fp32"}]                 # not evaluated now: the other warning's
    now = [{"model": "teacher", "precision": "fp32"}, {"model": "L1", "precision": "fp32"}]
    assert ev.onnx_rows_dropped(before, now) == ["L1"]
    assert ev.onnx_rows_dropped(before, now + [{"model": "L1", "precision": "onnx-int8"}]) == []
    assert ev.onnx_rows_dropped([], now) == []


def test_a_recipe_whose_seeds_are_not_all_paired_gets_no_gain():
    # a seed without its baseline (a stopped run): a gain over the paired seed alone beside the mean of both would
    # compare different sets of seeds
    rows = [row("teacher", "teacher", 0.9, None),
            row("y-s1", "distilled", 0.85, 1), row("y-s1-baseline", "baseline", 0.83, 1, name="y-s1"),
            row("y-s2", "distilled", 0.80, 2)]
    g = {g["student"]: g for g in ev.seed_groups(rows)}["y"]
    assert g["models"] == ["y-s1", "y-s2"] and g["distilled"]["mean"] == pytest.approx(0.825)
    assert g["gain"] is None and g["baseline"] is None and g["f1_gain"] is None


def test_seed_groups_pair_each_seed_with_its_baseline():
    rows = [row("teacher", "teacher", 0.9, None),
            row("L3-s1", "distilled", 0.86, 1) | {"paired_test": {"p": 0.0123}},
            row("L3-s1-baseline", "baseline", 0.84, 1, name="L3-s1"),
            row("L3-s2", "distilled", 0.88, 2) | {"paired_test": {"p": 0.34}},
            row("L3-s2-baseline", "baseline", 0.83, 2, name="L3-s2"),
            row("L3-s2", "distilled", 0.10, 2, precision="int8"),                     # not an fp32 row: ignored
            row("x-a0", "distilled", 0.87, None, steps=20, alpha=0.0),                # no baseline at 20 steps
            row("x", "distilled", 0.85, None, steps=30, transfer_size=8),
            row("x-baseline", "baseline", 0.80, None, steps=30, name="x", transfer_size=8),
            row("x-T4", "distilled", 0.81, None, steps=30, transfer_size=8, temperature=4.0)]          # shares x's baseline
    groups = {g["student"]: g for g in ev.seed_groups(rows)}
    g = groups["L3"]
    assert g["models"] == ["L3-s1", "L3-s2"] and g["seeds"] == [1, 2] and g["baselines"] == ["L3-s1-baseline", "L3-s2-baseline"]
    assert g["distilled"]["mean"] == pytest.approx(0.87) and g["distilled"]["std"] == pytest.approx(0.0141421, rel=1e-4)
    assert g["gain"]["values"] == pytest.approx([0.02, 0.05]) and g["gain"]["mean"] == pytest.approx(0.035)
    assert g["gain"]["std"] == pytest.approx(0.0212132, rel=1e-4) and g["gain"]["n"] == 2
    assert groups["x-a0"]["gain"] is None and groups["x-a0"]["baseline"] is None
    assert groups["x"]["gain"]["mean"] == pytest.approx(0.05) and groups["x-T4"]["gain"]["mean"] == pytest.approx(0.01)
    table = ev.gains_table(list(groups.values()))
    assert "| L3 | 2 | 87.00 ± 1.41 | 83.50 ± 0.71 | +3.50 ± 2.12 |  | 0.012 / 0.34 |" in table
    assert "| x-a0 | 1 | 87.00 | no baseline |  |  |  |" in table and "| x | 1 | 85.00 | 80.00 | +5.00 |  |  |" in table
    # x and x-T4 have one seed: the note gives the test set's noise, the larger of 100 sqrt(0.85 x 0.15 / 250) = 2.26
    # and 100 sqrt(0.81 x 0.19 / 250) = 2.48 points
    assert ev.one_seed_note(list(groups.values()), 250).startswith(
        " One seed: on 250 texts one accuracy's standard error is ±2.5 points,")
    assert ev.one_seed_note([groups["L3"], groups["x-a0"]], 250) == ""       # seeds, or no baseline to compare with
    # several seeds: each gain judged by the README's rule (mean > 2 sd): L3's +3.50 ± 2.12 is within its spread
    # and its paired t-test: t = 0.035 / (0.0212132 / sqrt 2) = 2.3333 on 1 degree of freedom, p = 1 - 2 atan(t) / pi
    assert g["gain"]["t_test_p"] == pytest.approx(1 - 2 * math.atan(0.035 / 0.015) / math.pi) == pytest.approx(0.2578, abs=1e-4)
    assert ev.seeds_note([groups["L3"], groups["x"]]) == (
        " Over seeds (a gain is shown when its mean is more than twice its sd; at 3 seeds that rule is a paired t-test "
        "at p < 0.074, so the p is given): L3 +3.50 ± 2.12: within its spread, not shown (paired t-test over 2 seeds: p = 0.26).")
    sure = groups["L3"] | {"gain": {"mean": 0.035, "std": 0.01, "n": 3, "values": [0.025, 0.035, 0.045]}}
    worse = groups["L3"] | {"student": "L1", "gain": {"mean": -0.05, "std": 0.01, "n": 3, "values": [-0.04, -0.05, -0.06]}}
    # t = 3.5 / (1 / sqrt 3) = 6.06 and 8.66 on 2 degrees of freedom: P(|T| > t) = 1 - t / sqrt(t^2 + 2) = 0.026, 0.013
    assert ev.seeds_note([sure, worse]).endswith("L3 +3.50 ± 1.00: distillation helps (paired t-test over 3 seeds: p = 0.026); "
                                                 "L1 -5.00 ± 1.00: distillation hurts (paired t-test over 3 seeds: p = 0.013).")
    assert ev.paired_t_p([0.01]) is None and ev.paired_t_p([0.02, 0.02]) == 0.0 and ev.paired_t_p([0.0, 0.0]) == 1.0
    assert ev.seeds_note([groups["x"], groups["x-a0"]]) == ""               # one seed, or no baseline
    assert groups["L3"]["f1_gain"] is None and ev.f1_gain_note(list(groups.values())) == ""    # rows without macro F1


def test_a_gain_in_accuracy_that_is_a_loss_in_macro_f1_is_said():
    # a student copying a teacher blind to a rare class: more of the common class right (accuracy +0.33 points),
    # the rare class lost (macro F1 -8.10 points); per seed: F1 gains -0.080 and -0.082, mean -0.081
    rows = [row("L1-s1", "distilled", 0.8033, 1) | {"f1": 0.410}, row("L1-s1-baseline", "baseline", 0.8000, 1, name="L1-s1") | {"f1": 0.490},
            row("L1-s2", "distilled", 0.8033, 2) | {"f1": 0.408}, row("L1-s2-baseline", "baseline", 0.8000, 2, name="L1-s2") | {"f1": 0.490},
            row("L3", "distilled", 0.85, None, layers=(0, 1, 2)) | {"f1": 0.84},
            row("L3-baseline", "baseline", 0.83, None, layers=(0, 1, 2), name="L3") | {"f1": 0.835}]
    groups = {g["student"]: g for g in ev.seed_groups(rows)}
    assert groups["L1"]["f1_gain"]["values"] == pytest.approx([-0.080, -0.082])
    assert groups["L1"]["f1_gain"]["mean"] == pytest.approx(-0.081) and groups["L3"]["f1_gain"]["mean"] == pytest.approx(0.005)
    table = ev.gains_table(list(groups.values()))
    assert table.splitlines()[0].endswith("| distilled - baseline (points) | macro F1: distilled - baseline (points) | "
                                          "McNemar p (per text), each seed |")
    assert "| L1 | 2 | 80.33 ± 0.00 | 80.00 ± 0.00 | +0.33 ± 0.00 | -8.10 ± 0.14 |  |" in table
    assert "| L3 | 1 | 85.00 | 83.00 | +2.00 | +0.50 |  |" in table
    assert ev.f1_gain_note(list(groups.values())) == (
        " **Accuracy and macro F1 disagree on L1 (accuracy +0.33, macro F1 -8.10)**: the accuracy gain or loss comes "
        "from the common classes, the other way on a rarer one (a student copies its teacher's neglect of a class: see "
        "the teacher's per-class recall in results.json); judge by macro F1 when the classes are not balanced.")
    small = groups["L1"] | {"f1_gain": groups["L1"]["f1_gain"] | {"mean": -0.004}}     # under half a point: noise
    assert ev.f1_gain_note([small, groups["L3"]]) == ""
    even = groups["L3"] | {"gain": groups["L3"]["gain"] | {"mean": 0.0}, "f1_gain": groups["L3"]["f1_gain"] | {"mean": 0.01}}
    assert ev.f1_gain_note([even]) == ev.f1_gain_note([even | {"f1_gain": even["f1_gain"] | {"mean": -0.01}}]) == ""


def test_one_entry_trained_with_other_settings_is_two_recipes(caplog):
    # the same STUDENTS entry in two runs of other global settings (--alpha=0.2, then --alpha=0.8): not seeds of one
    def trained(model, acc, seed, alpha, **settings):
        st = {"alpha": alpha, "temperature": 2.0, "seed": seed, "epochs": 1.0} | settings
        return row(model, "distilled", acc, seed, name=model) | {"settings": st, "max_length": 64}
    rows = [trained("a02", 0.80, 42, 0.2), trained("a08", 0.85, 42, 0.8),
            trained("a08-s1", 0.84, 1, 0.8), trained("old", 0.83, 7, 0.8, hidden_weight=0.0)]   # recorded before: 0.0
    groups = ev.seed_groups(rows)
    assert [g["models"] for g in groups] == [["a02"], ["a08", "a08-s1", "old"]]
    assert groups[1]["spec"] == {"layers": [0]}                  # the entry, as gain_lines reads it
    with caplog.at_level("WARNING", logger="kd"):              # one recipe and seed twice: named, not hidden in a spread
        twice = ev.seed_groups(rows + [trained("again", 0.86, 1, 0.8)])
    assert twice[1]["models"][-1] == "again" and \
        "a08: a08-s1, again trained with the same recipe and seed (1); the spread over seeds counts them as two" \
        in caplog.text
    # recipes that share a label (an entry L1 beside L1-s1 and L1-s2, these retrained with other settings): each row
    # of the gains table and plot names its models, not three rows of "L1"
    three = ev.seed_groups([trained("L1", 0.80, 42, 0.5), trained("L1-s1", 0.81, 1, 0.5, epochs=4.0),
                            trained("L1-s2", 0.82, 2, 0.5), trained("L1-s3", 0.83, 3, 0.5),
                            *[trained(f"L3-s{i}", 0.84, i, 0.5) | {"student": {"name": f"L3-s{i}", "seed": i, "layers": [0, 1, 2]}}
                              for i in (1, 2)]])
    assert [g["student"] for g in three] == ["L1 (L1, L1-s2, L1-s3)", "L1-s1", "L3"]
    clash = ev.seed_groups([trained("L1", 0.80, 42, 0.5), trained("L1-s1", 0.81, 1, 0.5, epochs=4.0),
                            trained("L1-s1-s5", 0.82, 5, 0.5, epochs=3.0)])    # its label, L1-s1, is a model's name
    assert [g["student"] for g in clash] == ["L1", "L1-s1", "L1-s1-s5"]


def test_fp32_models_limits_fp32_rows_and_gains_compare_one_precision(monkeypatch):
    monkeypatch.setattr(ev, "HALF_PRECISION", "auto")
    monkeypatch.setattr(ev, "FP32_MODELS", ["L3"])
    assert ev.precisions("teacher", "teacher", "cuda") == ["fp32", "bf16"]      # the reference always
    assert ev.precisions("L3", "distilled", "cuda") == ["fp32", "bf16"]
    assert ev.precisions("L1", "distilled", "cuda") == ["bf16"]
    assert ev.precisions("L1", "distilled", "cpu")[0] == "fp32"                  # no bf16 row: fp32 stays
    rows = [row("teacher", "teacher", 0.9, None), row("L1", "distilled", 0.86, 1, precision="bf16"),
            row("L1-baseline", "baseline", 0.80, 1, name="L1", precision="bf16"),
            row("L3", "distilled", 0.88, 1, layers=(0, 1, 2)), row("L3", "distilled", 0.87, 1, layers=(0, 1, 2), precision="bf16"),
            row("L3-baseline", "baseline", 0.84, 1, layers=(0, 1, 2), name="L3", precision="bf16")]
    assert [(r["model"], r["precision"]) for r in ev.reference_rows(rows)] == [
        ("teacher", "fp32"), ("L1", "bf16"), ("L1-baseline", "bf16"), ("L3", "fp32"), ("L3-baseline", "bf16")]
    groups = {g["student"]: g for g in ev.seed_groups(rows)}
    assert groups["L1"]["gain"]["mean"] == pytest.approx(0.06)
    # L3's baseline has a bf16 row only: the pair is compared in bf16 (0.87 - 0.84), not fp32 against bf16
    assert groups["L3"]["gain"]["mean"] == pytest.approx(0.03) and groups["L3"]["distilled"]["mean"] == pytest.approx(0.87)


def test_time_requests_warms_up_then_times_each_request():
    calls = []

    def model(**batch):
        calls.append(batch["n"])
    times = ev.time_requests(model, [{"n": i} for i in range(4)], "cpu", warmup=3)
    assert calls == [0, 1, 2, 0, 1, 2, 3] and len(times) == 4 and all(t >= 0 for t in times)


def test_bf16_rows_and_validation_split(tiny_experiment, imdb_parquet):
    result = ev.main(tiny_args(imdb_parquet, tiny_experiment, "--half_precision=always", "--quantize=false",
                               "--split=validation", "--models=cut,cut-baseline", cache=False))
    root = tiny_experiment / "tiny"
    assert [(r["model"], r["precision"]) for r in result["rows"]] == \
        [(m, p) for m in ("teacher", "cut", "cut-baseline") for p in ("fp32", "bf16")]
    fp32, bf16 = result["rows"][0], result["rows"][1]
    assert bf16["size_mb"] < 0.65 * fp32["size_mb"] and bf16["params"] == fp32["params"]   # 2 bytes a weight + pickle overhead
    assert bf16["agreement"] >= 0.75                                      # the same model, rounded weights
    assert result["split"] == "validation" and result["texts"] == 8   # tiny.toml: val_size = 8
    saved = json.loads((root / "validation-results.json").read_text())
    assert saved["groups"][0]["student"] == "cut" and saved["groups"][0]["baselines"] == ["cut-baseline"]
    md = (root / "validation-results.md").read_text()
    assert "## Distilled vs labels-only baseline" in md
    assert "Efficiency: retention / size fraction (bf16 rows: size over the teacher's bf16 row" in md
    assert (root / "validation-gains.png").read_bytes()[:4] == b"\x89PNG" and (root / "validation-dashboard.png").exists()


def test_speedups_of_bf16_rows_are_over_the_bf16_teacher():
    # a GPU runs every model in bf16: a bf16 student over the fp32 teacher would count bf16's gain as the student's
    def row(model, kind, precision, throughput, p50):
        size = (400 if kind == "teacher" else 100) / {"fp32": 1, "bf16": 2, "int8": 4}[precision]
        return {"model": model, "kind": kind, "precision": precision, "throughput": throughput, "latency_p50_ms": p50,
                "params": 100 if kind == "teacher" else 25, "accuracy": 0.9, "size_mb": size, "pred": np.zeros(3)}
    rows = ev.relative_figures([row("teacher", "teacher", "fp32", 100, 10), row("teacher", "teacher", "bf16", 300, 5),
                                row("s", "distilled", "fp32", 400, 4), row("s", "distilled", "int8", 600, 2),
                                row("s", "distilled", "bf16", 1200, 1)])
    assert [(r["speedup"], r["latency_speedup"], r["speedup_over"]) for r in rows] == [
        (1.0, 1.0, "teacher fp32"), (3.0, 2.0, "teacher fp32"), (4.0, 2.5, "teacher fp32"), (6.0, 5.0, "teacher fp32"),
        (4.0, 5.0, "teacher bf16")]
    assert rows[4]["compression"] == 4.0 and rows[4]["retention"] == 100.0 and "pred" not in rows[4]
    # agreement is with the fp32 teacher's predictions, a bf16 row's too (its speedup is the bf16 teacher's)
    agree = ev.relative_figures([row("teacher", "teacher", "fp32", 100, 10) | {"pred": np.array([0, 0, 0])},
                                 row("teacher", "teacher", "bf16", 300, 5) | {"pred": np.array([1, 0, 0])},
                                 row("s", "distilled", "bf16", 1200, 1) | {"pred": np.array([0, 0, 0])}])
    assert agree[2]["agreement"] == 1.0 and agree[1]["agreement"] == pytest.approx(2 / 3)
    # size too: a bf16-only student compares with an fp32 one (4.0 both), a deployed int8 one with the teacher as trained
    assert [r["efficiency"] for r in rows] == [1.0, 2.0, 4.0, 16.0, 4.0]
    assert "teacher_recall" not in rows[2]                      # no recall per class measured
    recall = {"negative": {"recall": 0.56}, "positive": {"recall": 0.74}}
    rows = ev.relative_figures([row("teacher", "teacher", "fp32", 100, 10) | {"per_class": recall},
                                row("s", "distilled", "fp32", 400, 4) | {"per_class": {}}])
    assert rows[1]["teacher_recall"] == {"negative": 0.56, "positive": 0.74} and "teacher_recall" not in rows[0]


def test_gain_lines_follow_one_lever():
    def group(name, transfer, gain, **extra):
        spec = {"model": "m", "layers": [0], "transfer_size": transfer} | extra
        return {"student": name, "spec": spec, "settings": {"transfer_size": transfer, "alpha": 0.5},
                "gain": {"mean": gain, "std": 0.0, "n": 1}}
    groups = [group("x2000", 2000, 0.02), group("x0", 0, 0.004), group("x8000", 8000, 0.018),
              group("x2000-T1", 2000, 0.018, temperature=1.0),                 # another recipe: not on the line
              group("y0", 0, 0.0, layers=[0, 1]), group("y8000", 8000, 0.03, layers=[0, 1])]
    lines = ev.gain_lines(groups, "transfer_size")
    assert {k: [(x, g["student"]) for x, g in v] for k, v in lines.items()} == {
        "m layers=[0]": [(0, "x0"), (2000, "x2000"), (8000, "x8000")],
        "m layers=[0, 1]": [(0, "y0"), (8000, "y8000")]}


def test_the_gains_plot_draws_spread_only_over_seeds(tmp_path, monkeypatch):
    # one seed has no standard deviation: its bar gets no error bar (a zero-width one drew a tick read as a spread)
    figures = []
    monkeypatch.setattr(ev, "save_figure", lambda fig, path: figures.append(fig))
    groups = [{"student": "one", "gain": {"mean": 0.013, "std": 0.0, "n": 1}},
              {"student": "three", "gain": {"mean": 0.008, "std": 0.0045, "n": 3}}]
    ev.plot_gains(groups, tmp_path / "gains.png", "t")
    bars = [c for c in figures[0].axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1 and len(bars[0].lines[2][0].get_segments()) == 1         # one spread, the 3 seeds'
    assert np.allclose(bars[0].lines[2][0].get_segments()[0], [[0.8 - 0.45, 1], [0.8 + 0.45, 1]])
    ev.plot_gains(groups[:1], tmp_path / "gains.png", "t")
    assert not [c for c in figures[1].axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    # a gain whose spread crosses 0 (+0.33 ± 2.52): the whole bar is in view, its negative end too
    ev.plot_gains([{"student": "x", "gain": {"mean": 0.0033, "std": 0.0252, "n": 3}}], tmp_path / "gains.png", "t")
    assert figures[2].axes[0].get_xlim()[0] <= 0.33 - 2.52


class Contrary(torch.nn.Module):
    """Stands in for an int8 copy: always the wrong class on the tiny reviews (their label is carried by the
    words of conftest.POS), so its accuracy is 0 whatever the fp32 model scores."""

    def __init__(self, model, tokenizer):
        super().__init__()
        self.inner, self.config = model, model.config
        self.pos = torch.tensor(tokenizer.convert_tokens_to_ids(POS))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        positive = torch.isin(input_ids, self.pos).any(-1).float()
        return SimpleNamespace(logits=4 * torch.stack([positive, 1 - positive], -1))


def test_each_row_reports_its_own_model_on_the_test_split(tiny_experiment, imdb_parquet, tmp_path, monkeypatch):
    # a copy whose validation accuracies are all 0.123: any validation figure shown as a test one stands out
    shutil.copytree(tiny_experiment / "tiny", tmp_path / "tiny",     # without cut's baseline: --models=cut is cut alone
                    ignore=shutil.ignore_patterns("cache", "checkpoints", "cut-baseline"))
    for m in (tmp_path / "tiny").glob("**/metrics.json"):
        m.write_text(json.dumps(json.loads(m.read_text()) | {"val_accuracy": 0.123}))
    from models import run_fingerprint           # the edited teacher stays the one its students learned from
    config = json.loads((tmp_path / "tiny" / "students" / "cut" / "config.json").read_text())
    config["sentiment_kd"]["training_settings"]["teacher"] = run_fingerprint(tmp_path / "tiny" / "teacher")
    (tmp_path / "tiny" / "students" / "cut" / "config.json").write_text(json.dumps(config))
    _, tok = build_tiny("bert")
    monkeypatch.setattr(ev, "quantize", lambda model, per_channel: Contrary(model, tok))
    figures, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), savefig(self, *a, **k))[1])
    ev.main(tiny_args(imdb_parquet, tmp_path, "--models=cut", cache=False))
    root = tmp_path / "tiny"
    rows = json.loads((root / "results.json").read_text())["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [("teacher", "fp32"), ("teacher", "int8"), ("cut", "fp32"),
                                                            ("cut", "int8")]
    for r in rows:
        name = r["model"] + ("" if r["precision"] == "fp32" else "-int8")
        preds = list(csv.DictReader(open(root / "predictions" / f"{name}.csv")))
        assert r["accuracy"] == pytest.approx(np.mean([p["label"] == p["pred"] for p in preds]))   # test, not 0.123
        assert r["val_accuracy"] == 0.123
    # the int8 rows measured the int8 stand-in, not the fp32 model
    assert [r["accuracy"] for r in rows if r["precision"] == "int8"] == [0.0, 0.0]
    table = [line.split("|")[6].strip() for line in (root / "results.md").read_text().splitlines()[4:8]]
    assert table == [f"{r['accuracy']:.4f}" for r in rows]
    accuracy_bars = figures[0].axes[0]
    assert accuracy_bars.get_xlabel() == "test accuracy"
    assert [p.get_width() for p in accuracy_bars.patches] == pytest.approx([r["accuracy"] for r in rows])


def test_a_second_baseline_of_the_same_run_is_not_paired_and_is_named(caplog):
    rows = [row("teacher", "teacher", 0.9, None), row("L1", "distilled", 0.9, 1),
            row("L1-baseline", "baseline", 0.8, 1, name="L1"), row("L1-old", "baseline", 0.5, 1, name="L1")]
    with caplog.at_level("WARNING", logger="kd"):
        assert ev.paired_rows(rows)[0][1]["model"] == "L1-baseline"
    assert "baselines L1-baseline and L1-old are the same student" in caplog.text and "pairing with the first" in caplog.text


def test_the_confusion_panels_show_the_distilled_student_best_on_validation_and_its_baseline():
    rows = [row("teacher", "teacher", 0.9, None), row("A", "distilled", 0.80, 1), row("B", "distilled", 0.90, 2),
            row("A-baseline", "baseline", 0.7, 1, name="A"), row("B-baseline", "baseline", 0.7, 2, name="B")]
    assert [r["model"] for r in ev.confusion_rows(rows)] == ["teacher", "B", "B-baseline"]    # no val_accuracy: test's
    # the one inference.py takes and "to ship" names (best on validation), not the best on test (a user saw another)
    rows[1]["val_accuracy"], rows[2]["val_accuracy"] = 0.85, 0.84
    assert [r["model"] for r in ev.confusion_rows(rows)] == ["teacher", "A", "A-baseline"]
    rows[1]["confusion"] = [[10, 0], [10, 0]]           # A predicted one class: passed over, as inference.py does
    assert [r["model"] for r in ev.confusion_rows(rows)] == ["teacher", "B", "B-baseline"]
    # ... on validation, as its metrics.json recorded (test's matrix only for results made before)
    rows[1] |= {"val_classes_predicted": 2, "val_classes_in_labels": 2}
    assert [r["model"] for r in ev.confusion_rows(rows)] == ["teacher", "A", "A-baseline"]
    rows[1] |= {"confusion": [[5, 5], [5, 5]], "val_classes_predicted": 1}
    assert [r["model"] for r in ev.confusion_rows(rows)] == ["teacher", "B", "B-baseline"]


def test_confusion_matrices_are_normalised_by_true_class():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    teacher = {"model": "teacher", "kind": "teacher", "precision": "fp32", "accuracy": 0.875, "confusion": [[3, 1], [0, 4]]}
    fig, axes = plt.subplots(1, 3)
    ev.plot_confusions(list(axes), [teacher], ["negative", "positive"])
    np.testing.assert_allclose(axes[0].images[0].get_array(), [[0.75, 0.25], [0, 1]])    # each row (true class) sums to 1
    plt.close(fig)


def test_a_model_of_other_labels_or_their_order_is_refused():
    from types import SimpleNamespace
    config = SimpleNamespace(id2label={0: "positive", 1: "negative"}, num_labels=2)
    with pytest.raises(UsageError, match=r"model cut \(x\) predicts positive, negative, the data's labels are negative, positive"):
        ev.check_labels("cut", Path("x"), config, ["negative", "positive"])
    # no --label_names to suggest: evaluate_models.py has none (the data is the teacher's record's)
    with pytest.raises(UsageError, match=r"\(the same classes in another order\): it was not trained on the data this "
                                         r"experiment's teacher records; move it out of \., or distill it again here "
                                         r"\(distill_student.py with this experiment's config, --only=cut "
                                         r"--overwrite=true\)$"):
        ev.check_labels("cut", Path("x"), config, ["negative", "positive"])
    with pytest.raises(UsageError, match=r"the data's labels are bad, meh, good: it was not trained .* --only=cut "):
        ev.check_labels("cut-baseline", Path("x"), config, ["bad", "meh", "good"])   # trains beside cut
    ev.TEACHER_DIR = "elsewhere/teacher"          # a teacher of other data given: perhaps not the students' teacher
    try:
        with pytest.raises(UsageError, match=r"records; is --teacher_dir=elsewhere/teacher the teacher it learned "
                                             r"from\? If so, move it"):
            ev.check_labels("cut", Path("x"), config, ["bad", "meh", "good"])
    finally:
        ev.TEACHER_DIR = ""
    assert ev.check_labels("cut", Path("x"), config, ["positive", "negative"]) is None


def test_speed_is_compared_only_on_the_same_threads_and_torch():
    hw = {"device": "cpu", "cpu": "AMD EPYC", "torch_threads": 2, "torch": "2.11"}
    assert ev.machine(hw) == ev.machine(dict(hw))
    assert ev.machine(hw) != ev.machine(hw | {"torch_threads": 16}) and ev.machine(hw) != ev.machine(hw | {"torch": "2.13"})
    gpu = {"device": "cuda", "gpu": "NVIDIA H200", "cpu": "x", "torch_threads": 2, "torch": "2.11"}
    assert ev.machine(gpu) == ev.machine(gpu | {"torch_threads": 16}) != ev.machine(gpu | {"gpu": "NVIDIA H100"})


def test_long_class_names_are_slanted_in_the_confusion_panels():
    # a user's 4 classes ("movie_review" among them) ran together under the matrices: "movie_reviewnegative"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from evaluate_models import plot_confusions
    teacher = {"model": "teacher", "kind": "teacher", "precision": "fp32", "accuracy": 0.6,
               "confusion": [[3, 1, 0, 0], [1, 2, 1, 0], [0, 1, 3, 0], [0, 0, 0, 4]]}
    for names, rotation in ((["negative", "neutral", "positive", "movie_review"], 30), (["neg", "neu", "pos", "rev"], 0)):
        fig, axes = plt.subplots(1, 3)
        plot_confusions(list(axes), [teacher], names)
        ticks = axes[0].get_xticklabels()
        assert [t.get_text() for t in ticks] == names and {t.get_rotation() for t in ticks} == {rotation}
        assert not axes[1].axison                     # no student rows: the other panels are blank
        plt.close(fig)


def test_a_stopped_evaluation_leaves_predictions_and_results_of_the_same_one(tiny_experiment, imdb_parquet, tmp_path, monkeypatch):
    # predictions/ is moved into place with results.json: stopped midway (Ctrl-C), both stay the last evaluation's
    shutil.copytree(tiny_experiment / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns(".lock", "checkpoints", "cache"))
    ev.main(tiny_args(imdb_parquet, tmp_path, "--quantize=false", cache=False))
    root = tmp_path / "tiny"
    before = {p.name: p.read_bytes() for p in (root / "predictions").iterdir()} | {"results": (root / "results.json").read_bytes()}
    assert {"texts.csv", "teacher.csv", "cut.csv"} <= set(before) and not (root / "predictions.partial").exists()
    rows, calls = ev.model_rows, []

    def stop_at_the_second_model(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return rows(*args, **kwargs)
    monkeypatch.setattr(ev, "model_rows", stop_at_the_second_model)
    with pytest.raises(KeyboardInterrupt):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--quantize=false", "--test_size=10", cache=False))   # other texts
    after = {p.name: p.read_bytes() for p in (root / "predictions").iterdir()} | {"results": (root / "results.json").read_bytes()}
    assert after == before
    monkeypatch.undo()

    # Ctrl-C while the results are written: it takes effect once the predictions, cards and figures are this evaluation's
    import os
    import signal
    reports = ev.write_reports
    monkeypatch.setattr(ev, "write_reports", lambda *a: reports(*a) or os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        ev.main(tiny_args(imdb_parquet, tmp_path, "--quantize=false", "--test_size=10", cache=False))
    texts = json.loads((root / "results.json").read_text())["texts"]
    assert texts == 10 and len((root / "predictions" / "texts.csv").read_text().splitlines()) == 1 + texts
    assert "stratified 10 of 24 test texts" in (root / "students" / "cut" / "README.md").read_text()
    assert not (root / "predictions.partial").exists()
    assert (root / "dashboard.png").stat().st_mtime >= (root / "results.json").stat().st_mtime


def test_redraw_draws_the_figures_of_a_published_results_json_and_loads_no_model(tmp_path, monkeypatch):
    # a fresh clone holds results.json but no model: --redraw=true draws its figures again with today's code
    from conftest import ROOT
    (tmp_path / "quick").mkdir()
    shutil.copy(ROOT / "outputs" / "quick" / "results.json", tmp_path / "quick")
    before = (tmp_path / "quick" / "results.json").read_bytes()
    args = ["--config", str(ROOT / "configs" / "quick.toml"), f"--output_dir={tmp_path}", "--redraw=true"]
    monkeypatch.setattr(ev, "load_classifier", lambda *a, **k: pytest.fail("loaded a model"))
    drawn = []
    plot = ev.plot_dashboard
    monkeypatch.setattr(ev, "plot_dashboard", lambda rows, path, title, *a: drawn.append((len(rows), title)) or
                        plot(rows, path, title, *a))
    result = ev.main(args)
    saved = json.loads(before)
    assert drawn == [(len(saved["rows"]), "quick: teacher vs students, 5,000 IMDb test reviews, cpu")]
    assert result["rows"] == saved["rows"] and (tmp_path / "quick" / "results.json").read_bytes() == before
    assert {p.name for p in (tmp_path / "quick").iterdir()} - {".lock"} == {"results.json", "dashboard.png", "gains.png", "logs"}
    assert [p.name for p in (tmp_path / "quick" / "logs").iterdir()] == ["redraw.log"]   # evaluate.log: the evaluation's
    from PIL import Image
    assert Image.open(tmp_path / "quick" / "dashboard.png").size[0] > 1000
    # one written before results recorded their data, texts, labels and confusion matrices (IMDb, no matrix panel)
    (tmp_path / "scarce").mkdir()
    shutil.copy(ROOT / "outputs" / "scarce" / "results.json", tmp_path / "scarce")
    assert "confusion" not in json.loads((tmp_path / "scarce" / "results.json").read_text())["rows"][0]
    ev.main([*args, "--experiment=scarce"])
    assert drawn[-1] == (13, "scarce: teacher vs students, 5,000 IMDb test reviews, cpu")
    assert abs(Image.open(tmp_path / "scarce" / "dashboard.png").size[1] - 110 * (4 + 0.45 * 13)) <= 1   # 110 dpi, no matrices
    with pytest.raises(UsageError, match=r"^--redraw=true: no \S+/other/results.json to draw from; evaluate the "
                                         r"experiment first \(without --redraw\)$"):
        ev.main([*args, "--experiment=other"])
    assert not (tmp_path / "other").exists()           # refused before its log was written


def test_a_model_whose_classes_are_the_datas_in_another_order_is_told_what_to_do(tmp_path):
    from types import SimpleNamespace
    config = SimpleNamespace(id2label={0: "1", 1: "10", 2: "2"}, num_labels=3)   # sorted as text, before today's reading
    with pytest.raises(UsageError, match=r"predicts 1, 10, 2, the data's labels are 1, 2, 10; its classes are the data's "
                                         r"in another order, as when integer labels written as text were sorted as text "
                                         r"\(before they were read as integers\): retrain it on this data"):
        ev.check_labels("teacher", tmp_path, config, ["1", "2", "10"])
    config = SimpleNamespace(id2label={0: "pos", 1: "neg"}, num_labels=2)
    # names in another order: no --label_names to give (evaluate_models.py has none: the names are the teacher's record's)
    with pytest.raises(UsageError, match=r"labels are neg, pos \(the same classes in another order\): it was not "
                                         r"trained on the data this experiment's teacher records; train it again on "
                                         r"this data \(fine_tuning_teacher.py --overwrite=true\)$"):
        ev.check_labels("teacher", tmp_path, config, ["neg", "pos"])
    with pytest.raises(UsageError, match=r"labels are bad, good: it was not trained on the data"):
        ev.check_labels("teacher", tmp_path, config, ["bad", "good"])


def test_no_pair_means_no_gains_plot_and_an_earlier_one_is_removed(tmp_path, monkeypatch):
    # evaluating only the teacher (or --models=a baseline) after a full evaluation: the old gains.png showed the
    # gains of models these results no longer hold, and the log said it was written
    monkeypatch.setattr(ev, "save_figure", lambda fig, path: path.write_bytes(b"png"))
    path = tmp_path / "gains.png"
    assert ev.plot_gains([{"student": "L1", "gain": {"mean": 0.02, "std": 0.0, "n": 1}}], path, "t") is True
    assert path.read_bytes() == b"png"
    assert ev.plot_gains([{"student": "L1", "gain": {}}], path, "t") is False and not path.exists()
    assert ev.plot_gains([], path, "t") is False and not path.exists()          # nothing there: nothing to remove
    monkeypatch.setattr(ev, "plot_dashboard", lambda *a: None)
    result = {"experiment": "x", "data": "imdb", "split": "test", "texts": 10, "labels": ["neg", "pos"], "rows": [],
              "groups": [], "config": {}, "hardware": {"device": "cpu"}}
    monkeypatch.setattr(ev, "figure_where", lambda r: "here")
    assert ev.draw_figures(tmp_path, result) == "dashboard.png (no gains.png: no distilled student beside its baseline)"
    result["groups"] = [{"student": "L1", "gain": {"mean": 0.02, "std": 0.0, "n": 1}}]
    assert ev.draw_figures(tmp_path, result, "validation-") == "validation-dashboard.png and validation-gains.png"
    assert (tmp_path / "validation-gains.png").exists()


def test_the_choice_table_says_why_a_candidate_was_passed_over():
    students = [{"student": "m layers [0]", "chosen": "b", "candidates": [
        {"model": "a", "accuracy": 0.7, "baseline": "a-baseline", "baseline_accuracy": 0.6, "gain": 0.1,
         "missed": "it predicted one class for every validation text"},
        {"model": "b", "accuracy": 0.65, "baseline": "b-baseline", "baseline_accuracy": 0.6, "gain": 0.05, "missed": ""},
        {"model": "c", "accuracy": 0.6, "baseline": "c-baseline", "baseline_accuracy": 0.6, "gain": 0.0}]}]  # older record
    assert ev.chosen_table(students).splitlines()[2:] == [
        "| m layers [0] | a (it predicted one class for every validation text) | 70.00 | a-baseline | 60.00 | +10.00 |  |",
        "| m layers [0] | b | 65.00 | b-baseline | 60.00 | +5.00 | yes |",
        "| m layers [0] | c | 60.00 | c-baseline | 60.00 | +0.00 |  |"]


def test_onnx_asked_for_on_a_gpu_is_said_to_measure_nothing(monkeypatch, caplog, tmp_path):
    # ONNX Runtime rows are CPU rows: on a GPU onnx = true exported and measured nothing, without a word, and the
    # README's next command (inference on L3/onnx) found no folder
    monkeypatch.setattr(ev, "ONNX", True)
    monkeypatch.setattr(ev, "OUTPUT_DIR", str(tmp_path))
    with caplog.at_level("WARNING", logger="kd"):
        ev.keep_onnx_rows({"_sources": {"ONNX": "file"}}, [], "cpu")
        assert "ONNX Runtime rows are measured on a CPU only" not in caplog.text
        ev.keep_onnx_rows({"_sources": {"ONNX": "file"}}, [], "cuda")
    assert "onnx = true: ONNX Runtime rows are measured on a CPU only, and this evaluation runs on cuda: none here, " \
        "nor exports; export with export.py (any machine) and evaluate on a CPU with --device=cpu" in caplog.text
