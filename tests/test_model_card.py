"""model_card.py: every saved model folder carries a README.md in the hub's format (metadata_load parses it)."""
import json

import pytest
from huggingface_hub import ModelCard, metadata_load


def metrics_of(meta: dict) -> dict:
    """{(split, metric): value} from a card's model-index."""
    return {(r["dataset"]["split"], m["type"]): m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}


def test_a_classifier_of_other_classes_than_sentiment_is_called_a_text_classifier():
    # a user's 5-topic student was carded "A distilled student sentiment classifier (food / music / ...)"
    from model_card import data_facts
    config = lambda *names: {"id2label": {str(i): n for i, n in enumerate(names)},          # noqa: E731
                             "sentiment_kd": {"run_config": {"data": "/home/me/data/five.csv"}}}
    assert data_facts(config("food", "music", "sports"))["task"] == "text"
    assert data_facts(config("NEGATIVE", "Neutral", "positive"))["task"] == "sentiment"
    assert data_facts({"id2label": {"0": "negative", "1": "positive"}})["task"] == "sentiment"           # IMDb


def test_every_saved_model_has_a_card_that_parses(tiny_experiment):
    from data_utils import accuracy_se, read_json
    root = tiny_experiment / "tiny"
    folders = [root / "teacher"] + sorted(p for p in (root / "students").iterdir() if p.is_dir())
    assert len(folders) == 4
    for folder in folders:
        meta = metadata_load(folder / "README.md")
        assert meta["pipeline_tag"] == "text-classification" and "knowledge-distillation" in meta["tags"]
        assert "sentiment-analysis" in meta["tags"]
        assert meta["datasets"] == ["stanfordnlp/imdb"] and meta["model-index"][0]["name"] == folder.name
        assert meta["language"] == "en"
        val, n = read_json(folder / "metrics.json")["val_accuracy"], read_json(folder / "metrics.json")["val_examples"]
        assert metrics_of(meta)[("validation", "accuracy")] == pytest.approx(val, abs=1e-4)
        assert n == read_json(root / "teacher" / "config.json")["sentiment_kd"]["run_config"]["val_size"]   # all held out
        assert f"Validation accuracy {val:.4f} (macro F1 " in (text := (folder / "README.md").read_text()) and f", {n} texts: ±{accuracy_se(val, n):.1f} points standard error), " in text
        assert "base_model" not in meta          # tiny:bert is no hub model: not named
        card = ModelCard.load(folder / "README.md")
        assert card.data.eval_results and "## Limits" in card.text and ".partial" not in card.text
    cut = (root / "students" / "cut" / "README.md").read_text()
    assert "alpha" in cut and "inference.py --model" in cut
    # the pipeline keeps a long text's head, training its head and tail (tiny: 64 tokens, head 16)
    assert "The pipeline takes texts as they are; training read them with IMDb's `<br />` line breaks as spaces, as " \
           "`inference.py` does: prepare yours so." in cut
    assert "For texts longer than 64 tokens the two differ: the pipeline keeps the first 64 tokens, `inference.py` " \
           "the first 16 and the last ones, as in training." in cut
    baseline = (root / "students" / "cut-baseline" / "README.md").read_text()
    assert ("A student sentiment classifier (negative / positive) for IMDb movie reviews, trained on the labels alone, "
            "without the teacher (the labels-only baseline its distilled twin is measured against).") in baseline
    assert "- layers kept from the teacher `tiny/teacher`: [1]\n- loss: the labels' cross-entropy alone\n" in baseline
    assert str(root) not in baseline.split("## How to use")[0]        # no path of this machine above the usage lines
    assert "No license is set above: the base model's is unknown here; add it and the terms of the training data " \
        "(IMDb movie reviews) before publishing." in baseline
    assert "temperature" not in baseline and "alpha" not in baseline       # no teacher, no soft labels
    from model_card import write_card
    unevaluated = write_card(root / "students" / "cut", "cut").read_text()
    assert "Its labels-only baseline" in unevaluated
    assert "Not evaluated yet: `python evaluate_models.py --config " in unevaluated and "tiny.toml` adds" in unevaluated


def test_card_names_a_known_base_model_and_its_license(tmp_path):
    from data_utils import write_json
    from model_card import write_card
    write_json(tmp_path / "config.json", {"sentiment_kd": {"role": "teacher", "max_length": 128, "truncation": "head",
                                                            "base_model": "sentence-transformers/all-MiniLM-L6-v2"}})
    write_json(tmp_path / "metrics.json", {"val_accuracy": 0.87, "val_f1": 0.86, "parameters": 22_700_000})
    rows = [{"precision": "fp32", "accuracy": 0.855, "f1": 0.854, "recall_macro": 0.853, "agreement": 1.0, "size_mb": 90.9,
             "latency_p50_ms": 37.8, "throughput": 34.0}]
    meta = metadata_load(write_card(tmp_path, "teacher", rows=rows, test_size=5000, test_of=25000,
                                    hardware={"cpu": "AMD EPYC", "torch_threads": 2, "cpu_features": "avx2"}))
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    assert "the two differ" not in (tmp_path / "README.md").read_text()     # head truncation: the pipeline's own
    assert metrics_of(meta) == {("validation", "accuracy"): 0.87, ("validation", "f1"): 0.86,
                                ("test", "accuracy"): 0.855, ("test", "f1"): 0.854, ("test", "recall"): 0.853}
    # the F1 and recall are macro averages, and the test texts a subset of the split: both said, in the metadata too
    names = {m["name"]: m.get("args") for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert names == {"Validation accuracy": None, "Validation macro f1": {"average": "macro"},
                     "Test accuracy (stratified 5,000 of 25,000)": None,
                     "Test macro f1 (stratified 5,000 of 25,000)": {"average": "macro"},
                     "Test macro recall (stratified 5,000 of 25,000)": {"average": "macro"}}
    text = (tmp_path / "README.md").read_text()
    assert "a fixed stratified 5,000 of 25,000 test texts of IMDb movie reviews; AMD EPYC" in text
    assert "Validation accuracy 0.8700 (macro F1 0.8600), 22.7M parameters. " in text and "Warning" not in text
    write_json(tmp_path / "metrics.json", {"val_accuracy": 0.5, "val_f1": 0.33, "val_classes_predicted": 1, "parameters": 1})
    assert "0.8600" not in (text := write_card(tmp_path, "teacher").read_text())
    assert "**Warning: it predicted one class for every validation text.**" in text      # models.unpredicted_classes


def test_a_card_of_a_gpu_evaluation_names_the_gpu_and_its_bf16_test_figures(tmp_path):
    from data_utils import write_json
    from model_card import write_card
    write_json(tmp_path / "config.json", {"sentiment_kd": {"role": "teacher", "max_length": 128, "truncation": "head"}})
    write_json(tmp_path / "metrics.json", {"val_accuracy": 0.9, "val_f1": 0.9, "parameters": 1000})
    rows = [{"precision": "bf16", "accuracy": 0.941, "f1": 0.94, "agreement": 0.99, "size_mb": 45.0,   # FP32_MODELS: no fp32 row
             "latency_p50_ms": 3.1, "throughput": 9000.0}]
    card = write_card(tmp_path, "s", rows=rows, test_size=25000, test_of=25000, hardware={
        "device": "cuda", "gpu": "NVIDIA H200", "torch": "2.11.0", "cpu": "x86_64", "torch_threads": 16, "cpu_features": "avx512f"})
    text = card.read_text()
    assert "25,000 test texts of IMDb movie reviews; GPU NVIDIA H200, torch 2.11.0" in text and "CPU features" not in text
    assert metrics_of(metadata_load(card))[("test", "accuracy")] == 0.941
    rows.insert(0, rows[0] | {"precision": "fp32", "accuracy": 0.9})          # an fp32 row beside it: the card's figure
    card = write_card(tmp_path, "s", rows=rows[::-1], test_size=25000, test_of=25000, hardware={
        "device": "cuda", "gpu": "NVIDIA H200", "torch": "2.11.0", "cpu": "x86_64", "torch_threads": 16, "cpu_features": "avx512f"})
    assert metrics_of(metadata_load(card))[("test", "accuracy")] == 0.9


def test_a_card_of_your_data_names_its_file_not_this_machines_path(tmp_path):
    from data_utils import write_json
    from model_card import write_card
    data = tmp_path / "private" / "tweets_small.csv"
    data.parent.mkdir()
    data.write_text("text,label\na,b\n")
    write_json(tmp_path / "config.json", {"id2label": {"0": "neg", "1": "pos"}, "sentiment_kd": {
        "role": "teacher", "max_length": 64, "truncation": "head", "run_config": {"data": str(data)}}})
    write_json(tmp_path / "metrics.json", {"val_accuracy": 0.8, "val_f1": 0.8, "parameters": 1000})
    card = write_card(tmp_path, "teacher").read_text()
    assert "`tweets_small.csv`" in card and "private" not in card


def test_a_distilled_students_card_says_plainly_when_its_baseline_won_on_test(tiny_experiment, tmp_path):
    # a shipper reads the card, not results.md: the test figures beside the baseline's, per-class recall, the
    # recipe, and a busy CPU's timings flagged
    import shutil
    from model_card import onnx_card, write_card
    folder = shutil.copytree(tiny_experiment / "tiny" / "students" / "cut", tmp_path / "cut")
    row = lambda name, acc: {"model": name, "precision": "fp32", "accuracy": acc, "f1": acc - 0.01, "agreement": 0.9,  # noqa: E731
                             "size_mb": 0.1, "latency_p50_ms": 2.0, "throughput": 500.0,
                             "per_class": {"negative": {"recall": 0.41}, "positive": {"recall": 0.8}}}
    ours, theirs = row("cut", 0.626), row("cut-baseline", 0.645)
    busy = {"device": "cpu", "cpu": "AMD EPYC", "torch_threads": 2, "cpu_features": "avx2", "cpu_count": 2,
            "load_average_1min": 3.6}
    text = write_card(folder, "cut", rows=[ours], hardware=busy, test_size=24, versus=(ours, theirs)).read_text()
    assert ("Its labels-only baseline `cut-baseline` (same student, seed and optimizer steps) on the same test texts "
            "(fp32): accuracy 0.6450, macro F1 0.6350; this model -1.90 points: distillation did not beat training on "
            "the labels alone here; consider shipping the baseline.") in text           # no validation figures
    # which to ship follows validation, where the choice is made (inference.py's default too), not test
    ahead = write_card(folder, "cut", rows=[ours], hardware=busy, test_size=24, versus=(
        ours | {"val_accuracy": 0.875}, theirs | {"val_accuracy": 0.75})).read_text()
    assert ("this model -1.90 points: distillation did not beat training on the labels alone here; on validation, "
            "where the choice is made, this model did better (0.8750 against 0.7500), so it stays the one to ship unless "
            "more seeds say otherwise.") in ahead
    behind = write_card(folder, "cut", rows=[ours], hardware=busy, test_size=24, versus=(
        ours | {"val_accuracy": 0.75}, theirs | {"val_accuracy": 0.875})).read_text()
    assert "it also did better on validation (0.8750 against 0.7500): consider shipping the baseline." in behind
    tied = write_card(folder, "cut", rows=[ours], hardware=busy, test_size=24, versus=(      # a tie: as inference.py's
        ours | {"val_accuracy": 0.875}, theirs | {"val_accuracy": 0.875})).read_text()      # default, the distilled one
    assert "where the choice is made, this model did as well (0.8750 against 0.8750), so it stays the one to ship" in tied
    one_class = {"confusion": [[5, 0], [5, 0]]}                 # ours predicted one class on test: not "keep it"
    lost = write_card(folder, "cut", rows=[ours | one_class], hardware=busy, test_size=24, versus=(
        ours | one_class | {"val_accuracy": 0.875}, theirs | {"val_accuracy": 0.75, "confusion": [[4, 1], [1, 4]]})).read_text()
    assert "the labels alone here; and this model predicted only some of the classes on test (below): consider " \
           "shipping the baseline." in lost and "stays the one to ship" not in lost
    assert "Beside the teacher" not in behind                      # rows of results made before retention was kept
    # evaluation's per-text test of the pair, where it has one, judges the gap instead of one accuracy's standard error
    counted = {"confusion": [[10, 2], [3, 9]]}                     # 24 texts: one accuracy's standard error ~10 points
    plain = write_card(folder, "cut", rows=[ours | counted], test_size=24, versus=(ours | counted, theirs)).read_text()
    assert "On 24 texts one accuracy's standard error is" in plain and "Text by text" not in plain
    test = {"baseline": "cut-baseline", "only_distilled": 20, "only_baseline": 26, "p": 0.4614}
    paired = write_card(folder, "cut", rows=[ours | counted], test_size=24,
                        versus=(ours | counted | {"paired_test": test}, theirs)).read_text()
    assert ("consider shipping the baseline. Text by text: 20 only this model got right, 26 only the baseline (exact "
            "McNemar p = 0.46: within this test set's noise, at one seed).") in paired and "accuracy's standard error" not in paired
    sure = write_card(folder, "cut", rows=[ours], test_size=24, versus=(ours | {"accuracy": 0.7, "paired_test": test | {
        "only_distilled": 40, "only_baseline": 12, "p": 0.00013}}, theirs)).read_text()
    assert "this model +5.50 points. Text by text: 40 only this model got right, 12 only the baseline (exact McNemar " \
           "p = 0.00013)." in sure
    beside = write_card(folder, "cut", rows=[ours | {"kind": "distilled", "retention": 97.5, "speedup": 3.14}],
                        hardware=busy, test_size=24).read_text()
    assert "Beside the teacher on the same test texts: 97.5% of its accuracy (teacher 0.6421), at 3.1x its throughput " \
           "(fp32)." in beside                                      # 0.626 / 0.975
    slowed = write_card(folder, "cut", rows=[ours | {"kind": "distilled", "retention": 97.5, "speedup": 33.3,
                                                     "speedup_busy": True}], test_size=24).read_text()
    assert "at 33.3x its throughput (fp32; timed while other work slowed it or the teacher: unreliable)." in slowed
    assert "Test recall per class (fp32): negative 0.4100, positive 0.8000." in text
    three = {"per_class": {"negative": {"recall": 0.41, "support": 10}, "neutral": {"recall": 0.0, "support": 0},
                           "positive": {"recall": 0.8, "support": 14}}, "confusion": [[9, 0, 1], [0, 0, 0], [3, 0, 11]]}
    small = write_card(folder, "cut", rows=[ours | three], test_size=24).read_text()   # a test file without neutral
    assert "Test recall per class (fp32): negative 0.4100, positive 0.8000; no test text is neutral." in small
    assert "Warning" not in small                                   # a class the texts lack is not one it missed
    from model_card import above_teacher
    assert above_teacher({"accuracy": 0.6, "retention": 97.5, "confusion": [[100, 50], [40, 110]]}) == ""   # below it
    assert above_teacher({"accuracy": 0.6, "retention": 100.0, "confusion": [[100, 50], [40, 110]]}) == ""  # level: not above
    # a student above its teacher (a new user's 109% on 300 texts, below it on validation and on other test texts),
    # each class's recall beside the teacher's (its 99% hid a negative recall of 0.29 against the teacher's 0.56)
    above = write_card(folder, "cut", rows=[ours | {"kind": "distilled", "retention": 109.3, "confusion": [[100, 50], [40, 110]],
                                                    "teacher_recall": {"negative": 0.56, "positive": 0.74}}],
                       test_size=300).read_text()
    assert ("(teacher 0.5727). Above its teacher: on 300 texts one accuracy's standard error is ±2.8 points, and a student "
            "seldom truly beats the teacher it learned from, so read this as noise or as a teacher that learned little "
            "(compare their validation accuracies) before taking retention over 100% as a gain.") in above
    assert "Test recall per class (fp32; the teacher's in brackets): negative 0.4100 (0.5600), positive 0.8000 (0.7400)." in above
    assert "Warning" not in above                                  # 15 points below the teacher's: no warning
    per = {"negative": {"recall": 0.41, "support": 156}, "positive": {"recall": 0.8, "support": 97}}
    lost = write_card(folder, "cut", rows=[ours | {"kind": "distilled", "retention": 99.0, "per_class": per,
                                                   "teacher_recall": {"negative": 0.8013, "positive": 0.74}}],
                      test_size=253).read_text()     # a user's 99% of the accuracy, half the teacher's negatives
    assert ("**Warning: on test it recalls negative 0.4100 against the teacher's 0.8013 (fp32): the accuracy it keeps "
            "hides a class it has lost much of; compare macro F1 and its confusion matrix with the teacher's before "
            "shipping it.**") in lost
    from model_card import recall_behind
    assert recall_behind({"per_class": {"a": {"recall": 0.4, "support": 19}}, "teacher_recall": {"a": 0.9}}) == {}
    assert "load average 3.6 on 2 cores): latency and throughput are slower than on a quiet machine" in text
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (f"- trained on {metrics['train_examples']:,} examples, {round(metrics['epochs'], 2):g} epochs "
            f"({metrics['optimizer_steps']} optimizer steps), learning rate ") in text
    won = write_card(folder, "cut", rows=[ours], hardware=busy | {"load_average_1min": 2.9}, test_size=24,
                     versus=(ours | {"accuracy": 0.7}, theirs)).read_text()
    assert "this model +5.50 points." in won and "consider shipping" not in won and "quiet machine" not in won
    shared = write_card(folder, "cut", rows=[ours], hardware=busy | {"other_cores_busy": 0.9}, test_size=24).read_text()
    assert "(other processes kept 0.9 of its 2 cores busy): latency and throughput are slower" in shared
    quiet = write_card(folder, "cut", rows=[ours], hardware=busy | {"other_cores_busy": 0.1}, test_size=24).read_text()
    assert "quiet machine" not in quiet      # measured quiet, whatever the load average said
    # its ONNX card says whether the export's own rows were measured
    unmeasured = onnx_card(text, folder / "onnx").split("## Test results and speed\n\n", 1)[1]
    assert unmeasured.startswith("These files have not been evaluated yet: the figures below are the torch model's")
    measured = onnx_card(text.replace("| fp32 |", "| onnx-int8 |"), folder / "onnx").split("## Test results and speed\n\n", 1)[1]
    assert measured.startswith("Rows onnx-fp32 / onnx-int8 are this folder's files; fp32, int8 and bf16 are the torch model's.")
    bare = onnx_card(write_card(folder, "cut").read_text(), folder / "onnx").split("## Test results and speed\n\n", 1)[1]
    assert bare.startswith("Add `--onnx=true` to the evaluation below to measure this folder's files beside the torch "
                           "model.\n\nNot evaluated yet: `python evaluate_models.py --config ")
    edited = onnx_card(text.replace("## Test results and speed", "## Figures"), folder / "onnx")      # a hand-edited card
    assert "torch model's (`evaluate_models.py --onnx=true` measures them).\n\n## How to use" in edited
    # its usage or limits heading renamed by hand (export.py crashed): the rest kept, the ONNX usage before the limits
    limits = text.split("\n## Limits\n", 1)[1]
    for renamed, keeps in (("## Limits", "## Caveats"), ("## How to use", "## Usage")):
        card = onnx_card(text.replace(renamed, keeps), folder / "onnx")
        assert keeps in card and "## How to use\n\nThis folder is the ONNX export of" in card
        assert card.count("## How to use") == 1 and limits.strip().splitlines()[-1] in card
    no_usage = onnx_card(text.replace("## How to use", "## Usage"), folder / "onnx")
    assert no_usage.index("## How to use") < no_usage.index("## Limits") and no_usage.endswith(limits)
    from huggingface_hub import ModelCard           # its metadata: the model's, tagged onnx, not a transformers library
    torch_meta, onnx_meta = (ModelCard(card).data.to_dict() for card in (text, onnx_card(text, folder / "onnx")))
    assert torch_meta.pop("library_name") == "transformers" and "library_name" not in onnx_meta
    assert onnx_meta.pop("tags") == [*torch_meta.pop("tags"), "onnx"] and onnx_meta == torch_meta
    assert torch_meta["model-index"] and torch_meta["pipeline_tag"]       # the rest kept, test results too
    from model_card import onnx_metadata              # cards edited by hand: one tag as a string; YAML broken
    assert "tags:\n- student\n- onnx\n" in onnx_metadata("---\ntags: student\n---\n# m\n")
    assert onnx_metadata("---\ntags: [a\n---\n# m\n") == "---\ntags: [a\n---\n# m\n"


def test_a_matched_baselines_fractional_epochs_are_rounded():
    from model_card import recipe_lines
    kd = {"role": "student", "kind": "baseline", "settings": {"learning_rate": 3e-4, "batch_size": 32, "seed": 1}}
    lines = recipe_lines(kd, {"labels": ["negative", "positive"], "name": "IMDb"},
                         {"train_examples": 798, "epochs": 2.6315789473684212, "optimizer_steps": 50})
    assert any("trained on 798 examples, 2.63 epochs (50 optimizer steps)" in line for line in lines), lines


def test_a_one_seed_gap_within_the_test_sets_noise_says_so():
    # the standard error of an accuracy p on n texts: 100 sqrt(p (1 - p) / n) points (by hand: 0.62, 250 -> 3.07)
    from data_utils import accuracy_se
    from model_card import result_notes
    assert accuracy_se(0.62, 250) == pytest.approx(3.0699, abs=1e-4) and accuracy_se(0.5, 10_000) == pytest.approx(0.5)
    assert accuracy_se(1.0, 8) == pytest.approx(100 * (0.9375 * 0.0625 / 8) ** 0.5) == accuracy_se(0.0, 8)   # not 0
    def note(acc, base, n):
        ours = {"model": "L1", "precision": "fp32", "accuracy": acc, "f1": acc, "confusion": [[n // 2, 0], [0, n - n // 2]]}
        baseline = {"model": "L1-baseline", "precision": "fp32", "accuracy": base, "f1": base, "confusion": [[1, 0], [0, 1]]}
        return " ".join(result_notes(ours, (ours, baseline), None))
    assert "this model +2.80 points. On 250 texts one accuracy's standard error is ±3.1 points, so this gap, at one " \
        "seed, is within the noise" in note(0.62, 0.592, 250)
    assert "standard error" not in note(0.62, 0.592, 25_000)          # 0.3 points: 2.8 is past twice that
    assert "standard error" not in note(0.70, 0.62, 250)              # 8 points: past 2 x 2.9
