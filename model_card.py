"""The model card (README.md, Hugging Face format) of every saved model folder.

Nothing here runs on its own. training.save_finished writes a card when a model is saved (validation
metrics); evaluate_models.py rewrites it with the test metrics and speed; export.py copies it into the
ONNX folder. The metadata is built with huggingface_hub's ModelCardData / EvalResult (so it is the
hub's `model-index` format and parses back with huggingface_hub.metadata_load); the body is written
here from what the folder itself records: config.json's `sentiment_kd` entry and metrics.json.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from data_utils import accuracy_se, atomic_path, classes_missed, classes_neglected, read_json, recalled
from models import label_names, local_path, near_chance, unpredicted_classes
from onnx_runtime import INT8_FILE, is_onnx_folder

# licenses of the base models this project names in its configs (others: left out, not guessed)
LICENSES = {"sentence-transformers/all-MiniLM-L6-v2": "apache-2.0", "sentence-transformers/all-mpnet-base-v2": "apache-2.0",
            "bert-base-uncased": "apache-2.0", "google-bert/bert-base-uncased": "apache-2.0", "roberta-base": "mit",
            "FacebookAI/roberta-base": "mit", "distilroberta-base": "apache-2.0", "distilbert-base-uncased": "apache-2.0"}
DATASET = "stanfordnlp/imdb"
USAGE, LIMITS = "## How to use", "## Limits"     # the card's sections that onnx_card replaces and keeps
RESULTS = "## Test results and speed"              # its table: onnx_card says above it whose figures they are


def data_facts(config: dict) -> dict:
    """What the model was trained on, from its config.json: {name (for the text), hub (a hub dataset id or
    None), labels (names in id order), domain (for the limits), language (hub metadata; None where unknown)}."""
    rc = config.get("sentiment_kd", {}).get("run_config", {})
    data = rc.get("data", "imdb")
    labels = label_names(config)
    if data.lower() == "imdb":
        return {"name": "IMDb movie reviews", "hub": DATASET, "labels": labels, "domain": "English movie reviews (IMDb)",
                "language": "en", "task": "sentiment"}
    from data_utils import is_local
    shown = Path(data).name if is_local(data) else data    # a card may be published: no path of this machine
    return {"name": f"`{shown}`", "hub": None if is_local(data) else data, "labels": labels,
            "domain": f"texts like those of `{shown}`", "language": None,      # the user's data: not known here
            "task": "sentiment" if labels and {str(n).strip().lower() for n in labels} <= SENTIMENT_LABELS else "text"}


# label names that make a user's classifier a sentiment one (its card says so and is tagged sentiment-analysis);
# other classes (topics, intents) make it a text classifier
SENTIMENT_LABELS = {"negative", "positive", "neutral", "mixed", "very negative", "very positive", "neg", "pos", "neu"}


def is_local_model(name: str) -> bool:
    """A model given as a local folder, not a hub id (models.local_path)."""
    return local_path(name) is not None


def model_words(name: str | None) -> str:
    """A model as a card names it: a hub id as it is, a local folder by its name alone (no path of this machine)."""
    if name and is_local_model(name):
        return f"the local model `{Path(name).name}`"
    return f"`{name}`"


def base_model(kd: dict) -> str | None:
    """The hub model a folder descends from: the teacher's base model, a student's own `model`, or for a
    student cut from the teacher, the teacher's base model (read from the teacher folder when present)."""
    name = kd.get("base_model") or (kd.get("student") or {}).get("model")
    if not name and kd.get("teacher") and (Path(kd["teacher"]) / "config.json").is_file():
        name = read_json(Path(kd["teacher"]) / "config.json").get("sentiment_kd", {}).get("base_model")
    return name if name and not name.startswith("tiny:") and not is_local_model(name) else None


METRIC_NAMES = {"accuracy": "Accuracy", "f1": "Macro F1", "recall_macro": "Macro recall"}


def eval_results(metrics: dict, test: dict | None, facts: dict, subset: str = ""):
    """The hub's eval results: validation accuracy and macro F1 (metrics.json), test accuracy, macro F1 and macro
    recall (the test row). subset: how the test texts were drawn when they are not the whole split (in the names)."""
    from huggingface_hub import EvalResult
    out = []
    for split, src, keys in (("validation", metrics, ("val_accuracy", "val_f1")),
                             ("test", test or {}, ("accuracy", "f1", "recall_macro"))):
        for key in keys:
            if src.get(key) is not None:
                metric = key.removeprefix("val_")
                out.append(EvalResult(task_type="text-classification", dataset_type=facts["hub"] or "custom",
                                      dataset_name=facts["name"].strip("`"), dataset_split=split,
                                      metric_type=metric.removesuffix("_macro"),
                                      metric_name=f"{split.capitalize()} {METRIC_NAMES[metric].lower()}"
                                      + (f" ({subset})" if split == "test" and subset else ""),
                                      metric_args={"average": "macro"} if metric != "accuracy" else None,
                                      metric_value=round(float(src[key]), 4)))
    return out


def subset_words(test_size: int | None, test_of: int | None) -> str:
    """How the evaluated test texts were drawn, when not all of the split: "stratified 5,000 of 25,000"."""
    return f"stratified {test_size:,} of {test_of:,}" if test_size and test_of and test_size < test_of else ""


def recipe_lines(kd: dict, facts: dict, metrics: dict) -> list[str]:
    """What the model is and how it was trained, from its sentiment_kd record and metrics.json."""
    labels, task = " / ".join(facts["labels"]), facts.get("task", "sentiment")
    rc, st = kd.get("run_config") or {}, kd.get("settings") or {}
    how = st if kd.get("role") != "teacher" else rc                  # a student's own settings, the teacher's run's
    trained = (f"- trained on {metrics.get('train_examples', 0):,} examples, {round(metrics.get('epochs', how.get('epochs')) or 0, 2):g} "
               f"epochs ({metrics.get('optimizer_steps')} optimizer steps), learning rate {how.get('learning_rate')}, "
               f"batch size {how.get('batch_size')}, seed {how.get('seed')}")
    if kd.get("role") == "teacher" and metrics.get("untrained"):     # fine_tuning_teacher.py --fine_tune=false
        return [f"A {task} classifier ({labels}) fine-tuned elsewhere, {model_words(kd.get('base_model'))}, taken as it "
                f"is (not trained here) as the teacher of this experiment's distilled students on {facts['name']}.", "",
                "- its training data is not known here: if it included these validation or test texts, its figures "
                "below read high"]
    if kd.get("role") == "teacher":
        return [f"A {task} classifier ({labels}) fine-tuned from {model_words(kd.get('base_model'))} on {facts['name']}; "
                f"the teacher of this experiment's distilled students.", "", trained] + \
            (["- its base model is a classifier fine-tuned elsewhere, on data not known here: if that included these "
              "validation or test texts, its figures below read high"] if kd.get("base_classifier") else [])
    spec = kd.get("student") or {}
    teacher = "/".join(Path(kd.get("teacher") or "teacher").parts[-2:])    # <experiment>/teacher: no path of this machine
    source = model_words(spec["model"]) if spec.get("model") else f"the teacher `{teacher}`"
    if kd.get("kind") == "baseline":
        return [f"A student {task} classifier ({labels}) for {facts['name']}, trained on the labels alone, "
                f"without the teacher (the labels-only baseline its distilled twin is measured against).", "",
                f"- layers kept from {source}: {spec.get('layers')}", "- loss: the labels' cross-entropy alone", trained]
    return [f"A distilled student {task} classifier ({labels}) for {facts['name']}, learned from the teacher "
            f"`{teacher}`.", "",
            f"- layers kept from {model_words(spec['model']) if spec.get('model') else 'the teacher'}: {spec.get('layers')}",
            f"- alpha (weight of the labels' cross-entropy; 1 - alpha weighs the teacher's soft labels): "
            f"{st.get('alpha')}, temperature T: {st.get('temperature')}",
            f"- unlabeled transfer texts: {st.get('transfer_size', 0)}", trained]


def cpu_was_busy(hardware: dict) -> bool:
    """Whether other work shared the CPU while speed was measured: other processes kept over a fifth of its cores
    busy (other_cores_busy, measured: configurator.others_cores), or, in records made before that was measured,
    a 1-minute load average above 1.5 x its cores. Latency and throughput are then slower than on a quiet machine."""
    if hardware.get("device") != "cpu":
        return False
    cores, others = hardware.get("cpu_count") or 1, hardware.get("other_cores_busy")
    if others is not None:
        return others > 0.2 * cores
    load = hardware.get("load_average_1min")
    return load is not None and load > 1.5 * cores


def ship_advice(ours: dict, baseline: dict) -> str:
    """Which of a distilled student and its baseline to ship when the baseline did as well on test: the one better on
    validation (where inference.py's default, and every choice here, is made; test is for reporting), unless one of
    them predicted only some classes on test. ours, baseline: their result rows (val_accuracy: their metrics.json's)."""
    if classes_missed(baseline):
        return "but the baseline predicted only some of the classes, so it is no model to ship either."
    if classes_missed(ours):       # whatever validation said: the warning below rules it out
        return "and this model predicted only some of the classes on test (below): consider shipping the baseline."
    a, b = ours.get("val_accuracy"), baseline.get("val_accuracy")
    if a is None or b is None:
        return "consider shipping the baseline."
    if b > a:
        return f"it also did better on validation ({b:.4f} against {a:.4f}): consider shipping the baseline."
    return (f"on validation, where the choice is made, this model did {'as well' if a == b else 'better'} ({a:.4f} "
            f"against {b:.4f}), so it stays the one to ship unless more seeds say otherwise.")


def above_teacher(test: dict) -> str:
    """For a student above the teacher on test (retention over 100%): what that most likely means, with one accuracy's
    standard error on these texts; else ""."""
    n = sum(map(sum, test.get("confusion") or []))
    if test["retention"] <= 100 or not n:
        return ""
    return (f" Above its teacher: on {n:,} texts one accuracy's standard error is ±{accuracy_se(test['accuracy'], n):.1f} "
            f"points, and a student seldom truly beats the teacher it learned from, so read this as noise or as a teacher "
            f"that learned little (compare their validation accuracies) before taking retention over 100% as a gain.")


def recall_behind(test: dict, gap: float = 0.2, min_support: int = 20) -> dict:
    """{class name: (its recall, the teacher's)} of the classes a student's test row (per_class, teacher_recall)
    recalls `gap` or more below its teacher (0.2: 20 points), each with at least `min_support` texts: a student that
    keeps 99% of the accuracy while recalling half the teacher's negatives (a user's 0.41 against 0.80)."""
    theirs = test.get("teacher_recall") or {}
    return {n: (c["recall"], theirs[n]) for n, c in (test.get("per_class") or {}).items()
            if n in theirs and c.get("support", 0) >= min_support and theirs[n] - c["recall"] >= gap}


def result_notes(test: dict | None, versus: tuple | None, hardware: dict | None) -> list[str]:
    """Below the test table: a distilled student's test accuracy beside its labels-only baseline's (versus: their
    rows in one precision), the recall of each class, and a warning when the CPU was busy while timing."""
    if test is None:
        return []
    lines = []
    if versus is not None:
        ours, baseline = versus
        gain = 100 * (ours["accuracy"] - baseline["accuracy"])
        lines.append(f"Its labels-only baseline `{baseline['model']}` (same student, seed and optimizer steps) on the same "
                     f"test texts ({baseline['precision']}): accuracy {baseline['accuracy']:.4f}, macro F1 {baseline['f1']:.4f}; "
                     f"this model {gain:+.2f} points" + ("." if gain > 0 else ": distillation did not beat training on "
                                                           "the labels alone here; " + ship_advice(ours, baseline)))
        n = sum(map(sum, ours.get("confusion") or []))       # the texts evaluated
        se = accuracy_se(ours["accuracy"], n) if n else 0.0
        t = ours.get("paired_test")                          # evaluate_models.paired_tests: the sharper judge
        if t and t.get("baseline") == baseline["model"]:
            lines[-1] += (f" Text by text: {t['only_distilled']:,} only this model got right, {t['only_baseline']:,} only "
                          f"the baseline (exact McNemar p = {t['p']:.2g}" + (": within this test set's noise, at one seed)."
                                                                             if t["p"] >= 0.05 else ")."))
        elif abs(gain) < 2 * se:
            lines[-1] += (f" On {n:,} texts one accuracy's standard error is ±{se:.1f} points, so this gap, at one "
                          f"seed, is within the noise (the experiment's results.md gives the mean ± sd over seeds "
                          f"where there are several).")
    if test.get("kind") in ("distilled", "baseline") and test.get("retention"):   # a student beside its teacher
        lines.append(f"Beside the teacher on the same test texts: {test['retention']:.1f}% of its accuracy (teacher "
                     f"{test['accuracy'] / (test['retention'] / 100):.4f})" + (
                         f", at {test['speedup']:.1f}x its throughput ({test['precision']}"
                         + ("; timed while other work slowed it or the teacher: unreliable" if test.get("speedup_busy")
                            else "")
                         + ")." if test.get("speedup") else ".")
                     + above_teacher(test))
    per = test.get("per_class") or {}
    if classes_missed(test):
        lines.append(f"**Warning: on test it predicted only {classes_missed(test)} classes ({test['precision']}): "
                     f"it has not learned; do not ship it.**")
    elif neglected := classes_neglected(test):
        lines.append(f"**Warning: on test it all but never recognised {recalled(neglected)} "
                     f"({test['precision']}): look at its confusion matrix before shipping it.**")
    elif behind := recall_behind(test):
        lines.append("**Warning: on test it recalls " + ", ".join(f"{n} {ours:.4f} against the teacher's {theirs:.4f}"
                                                               for n, (ours, theirs) in behind.items())
                     + f" ({test['precision']}): the accuracy it keeps hides a class it has lost much of; compare macro "
                       f"F1 and its confusion matrix with the teacher's before shipping it.**")
    if per:
        theirs, absent = test.get("teacher_recall") or {}, [n for n, c in per.items() if c.get("support", 1) == 0]
        lines.append(f"Test recall per class ({test['precision']}" + ("; the teacher's in brackets" if theirs else "")
                     + "): " + ", ".join(f"{n} {c['recall']:.4f}" + (f" ({theirs[n]:.4f})" if n in theirs else "")
                                         for n, c in per.items() if n not in absent)
                     + (f"; no test text is {', '.join(map(str, absent))}" if absent else "") + ".")
    if hardware and cpu_was_busy(hardware):
        shared = (f"other processes kept {hardware['other_cores_busy']} of its {hardware.get('cpu_count')} cores busy"
                  if hardware.get("other_cores_busy") is not None else
                  f"load average {hardware['load_average_1min']} on {hardware.get('cpu_count')} cores")
        lines.append(f"Speed measured while other work shared the CPU ({shared}): latency and throughput are slower "
                     "than on a quiet machine.")
    return [line for x in lines for line in ("", x)]


def speed_lines(rows: list[dict], kd: dict) -> list[str]:
    if not rows:
        rc = kd.get("run_config", {})
        how = f"--config {shell(rc['config_file'])}" if rc.get("config_file") else \
            f"--experiment={shell(rc.get('experiment', '<experiment>'))}"
        return [f"Not evaluated yet: `python evaluate_models.py {how}` adds the test metrics."]
    lines = ["| precision | test accuracy | macro F1 | agreement with teacher | size (MB) | p50 ms (batch 1) | texts/s |",
             "|---|---|---|---|---|---|---|"]
    agree = lambda r: "" if r["agreement"] is None else f"{r['agreement']:.4f}"   # noqa: E731  (None: a published teacher row)
    lines += [f"| {r['precision']} | {r['accuracy']:.4f} | {r['f1']:.4f} | {agree(r)} | {r['size_mb']:.1f} | "
              f"{r['latency_p50_ms']:.1f} | {r['throughput']:.0f} |" for r in rows]
    return lines


def card_text(folder: Path, name: str, rows: list[dict] | None = None, hardware: dict | None = None,
              test_size: int | None = None, shown: Path | None = None, versus: tuple | None = None,
              test_of: int | None = None) -> str:
    """README.md of a model folder: YAML metadata (hub format) and the body. rows: this model's evaluation
    rows, on test_size texts of the test split's test_of; versus: a distilled student's row and its labels-only
    baseline's, in one precision; shown: the folder's path as the usage lines name it (default: folder)."""
    from huggingface_hub import ModelCardData
    folder = Path(folder)
    config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    kd, where_used = config.get("sentiment_kd", {}), shown or folder
    # its fp32 row, else (a model evaluated in bf16 only: evaluate_models' FP32_MODELS) its half-precision one
    test = next((r for p in ("fp32", "bf16", "fp16") for r in rows or [] if r["precision"] == p), None)
    base, facts = base_model(kd), data_facts(config)
    subset = subset_words(test_size, test_of)
    data = ModelCardData(base_model=base, datasets=[facts["hub"]] if facts["hub"] else None, pipeline_tag="text-classification",
                         language=facts["language"],
                         license=LICENSES.get(base or ""), library_name="transformers", model_name=name,
                         tags=["knowledge-distillation", "sentiment-analysis" if facts["task"] == "sentiment" else
                               "text-classification", kd.get("role", "student")],
                         eval_results=eval_results(metrics, test, facts, subset) or None)
    baseline = folder.parent / f"{name}-baseline" / "metrics.json"
    compare = (f"Its labels-only baseline (same student, seed and steps): validation accuracy "
               f"{read_json(baseline)['val_accuracy']:.4f}; this model: {metrics.get('val_accuracy', float('nan')):.4f}."
               if kd.get("kind") == "distilled" and baseline.is_file() else "")
    drawn = f"a fixed {subset} test texts" if subset else f"{test_size or 0:,} test texts"
    where = f"{drawn} of {facts['name']}; {machine_words(hardware)}" if hardware else ""
    body = [f"# {name}", "", *recipe_lines(kd, facts, metrics), "",
            f"Validation accuracy {metrics.get('val_accuracy', float('nan')):.4f} (macro F1 {metrics.get('val_f1', float('nan')):.4f}"
            + (f", {metrics['val_examples']:,} texts: ±{accuracy_se(metrics['val_accuracy'], metrics['val_examples']):.1f} "
               "points standard error" if metrics.get("val_examples") and metrics.get("val_accuracy") is not None else "")
            + "), "
            f"{metrics.get('parameters', 0) / 1e6:.1f}M parameters.{one_sided(metrics, facts)} {compare}", "",
            RESULTS, "", *([where, ""] if where else []), *speed_lines(rows or [], kd),
            *result_notes(test, versus, hardware), "",
            USAGE, "", "```python", "from transformers import pipeline",
            f'clf = pipeline("text-classification", model="{where_used}", truncation=True)  # or its hub id, once pushed',
            'clf("I loved it")', "```", "",
            f"or `python inference.py --model {shell(where_used)} \"I loved it\"` ({onnx_words(folder, where_used)})."
            f"{pipeline_note(kd)}", "",
            LIMITS, "",
            f"{facts['domain'][0].upper() + facts['domain'][1:]} only; {len(facts['labels'])} labels. "
            f"{'Evaluated here' if metrics.get('untrained') else 'Trained'} on at most {kd.get('max_length')} tokens "
            f"({kd.get('truncation')} truncation{', head ' + str(kd.get('head_tokens')) if kd.get('truncation') == 'head+tail' else ''}): "
            f"`inference.py` cuts longer texts the same way. Not evaluated on other domains or languages.", "",
            ("The license above is the base model's; add the terms of the " if data.license else
             "No license is set above: the base model's is unknown here; add it and the terms of the ")
            + f"training data ({facts['name']}) before publishing.", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def one_sided(metrics: dict, facts: dict) -> str:
    """A warning when the model predicted only some of its classes on validation (models.unpredicted_classes), or
    scored barely above always predicting the most common class (models.near_chance)."""
    little = near_chance(metrics)
    warn = unpredicted_classes(metrics, len(facts["labels"])) or (f"it learned little: validation accuracy {little}"
                                                                  if little else "")
    return f" **Warning: {warn}.**" if warn else ""


def onnx_words(folder: Path, where_used: Path) -> str:
    """How to run the model with ONNX Runtime: its export in <folder>/onnx, or how to make one."""
    if is_onnx_folder(folder / "onnx"):
        return f"its ONNX export, for ONNX Runtime without torch: `--model {shell(f'{where_used}/onnx')}`"
    return f"an ONNX export: `python export.py --model={shell(where_used)}`, then `--model {shell(f'{where_used}/onnx')}`"


def shell(path) -> str:
    """`path` as typed in a shell command (quoted where it holds spaces or other special characters)."""
    return shlex.quote(str(path))


def machine_words(hardware: dict) -> str:
    """Where the speed figures were measured: the GPU, or the CPU with its threads and features."""
    if hardware.get("device") == "cuda":
        return f"GPU {hardware.get('gpu')}, torch {hardware.get('torch')}"
    return f"{hardware.get('cpu')}, {hardware.get('torch_threads')} threads, CPU features {hardware.get('cpu_features')}"


def pipeline_note(kd: dict) -> str:
    """What the transformers pipeline does otherwise than training: it takes texts as they are, where training
    prepared them (data_utils.as_trained), and the first tokens of a text past the trained length."""
    from data_utils import preparation
    done = {"imdb": "IMDb's `<br />` line breaks as spaces", "escapes": "literal `\\uXXXX` escapes (`I\\u2019m`) decoded",
            "": ""}[preparation(kd)]
    note = f" The pipeline takes texts as they are; training read them with {done}, as `inference.py` does: prepare yours so." \
        if done else ""
    if kd.get("truncation") == "head+tail":
        note += (f" For texts longer than {kd.get('max_length')} tokens the two differ: the pipeline keeps the first "
                 f"{kd.get('max_length')} tokens, `inference.py` the first {kd.get('head_tokens')} and the last ones, as in training.")
    return note


def onnx_card(card: str, export: Path) -> str:
    """The card of an ONNX export (export: its folder) from its model's card: the same metadata, recipe and
    figures, a line above the speed table saying which of its rows are this folder's files, and the usage section
    telling how to run this folder (ONNX Runtime, no torch), in place of the model's usage section (up to the next
    heading); a card edited by hand without that heading gets it before its limits, else at the end."""
    text = onnx_metadata(card)
    head, used, rest = text.partition(f"\n{USAGE}\n")
    if used:
        tail = rest[rest.index("\n## "):] if "\n## " in rest else "\n"
    else:
        head, limited, rest = text.partition(f"\n{LIMITS}\n")
        tail = f"\n{LIMITS}\n{rest}" if limited else "\n"
    whose = ("Rows onnx-fp32 / onnx-int8 are this folder's files; fp32, int8 and bf16 are the torch model's."
             if "| onnx-fp32 |" in head or "| onnx-int8 |" in head else
             "These files have not been evaluated yet: the figures below are the torch model's (`evaluate_models.py "
             "--onnx=true` measures them)." if "| precision |" in head else
             "Add `--onnx=true` to the evaluation below to measure this folder's files beside the torch model.")
    if f"\n{RESULTS}\n" in head:                    # above the table it is about (a card edited by hand: at the end)
        head = head.replace(f"\n{RESULTS}\n", f"\n{RESULTS}\n\n{whose}\n", 1)
    else:
        head = head.rstrip("\n") + f"\n\n{whose}\n"
    int8 = (export / INT8_FILE).is_file()           # --quantize=false exports fp32 alone
    use = [f"This folder is the ONNX export of `{export.parent}` (`export.py`): `model.onnx` (fp32)"
           + (f" and `{INT8_FILE}` (ONNX Runtime dynamic int8)" if int8 else "")
           + ", with config.json and the tokenizer; it runs without torch.", "",
           "```bash", f'python inference.py --model {shell(export)} "I loved it"',
           *([f'python inference.py --model {shell(export)} --onnx_file={INT8_FILE} "I loved it"   # int8'] if int8 else []),
           "```", "",
           f"or in Python: `from inference import predict; predict([\"I loved it\"], model=\"{export}\")`, which cuts long "
           f"texts as training did.", "", *plain_onnx_lines(export)]
    return head + f"\n{USAGE}\n\n" + "\n".join(use) + tail


def onnx_metadata(card: str) -> str:
    """`card` with its YAML metadata made an ONNX folder's: tagged `onnx`, and no `library_name: transformers` (the
    folder holds no weights transformers loads; the hub tells an ONNX repository by its files). A card without
    metadata, or with metadata that is not valid YAML (edited by hand), is returned as it is."""
    import yaml
    if not card.startswith("---\n") or "\n---\n" not in card[4:]:
        return card
    meta_text, body = card[4:].split("\n---\n", 1)
    try:
        meta = yaml.safe_load(meta_text) or {}
    except yaml.YAMLError:          # a card edited by hand into invalid YAML: left as it is
        return card
    if not isinstance(meta, dict):
        return card
    meta.pop("library_name", None)
    tags = meta.get("tags") or []
    meta["tags"] = [*[t for t in ([tags] if isinstance(tags, str) else tags) if t != "onnx"], "onnx"]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


def plain_onnx_lines(export: Path) -> list[str]:
    """How to run the export with onnxruntime and tokenizers alone (no torch, transformers or this repository), as
    a tested Python block: texts prepared and cut to the trained length as training did (head, tail or head+tail:
    models.truncate_ids, written out), one text at a time (no padding)."""
    if not ((export / "config.json").is_file() and (export / "tokenizer.json").is_file()):
        return []
    from onnx_runtime import OnnxTokenizer
    config, tok = read_json(export / "config.json"), OnnxTokenizer(export)
    kd = config.get("sentiment_kd", {})
    prepare = prepare_lines(kd)
    cut = {"head": ["        ids = ids[:budget]"], "tail": ["        ids = ids[len(ids) - budget:]"],
           "head+tail": ["        ids = ids[:HEAD] + ids[len(ids) - (budget - HEAD):]"]}[tok.truncation]
    what = {"head": "its first tokens", "tail": "its last tokens",
            "head+tail": f"its first {tok.head_tokens} tokens and its last ones"}[tok.truncation]
    return ["Without this repository (onnxruntime and tokenizers only):", "", "```python", *(["import re"] if prepare else []),
            "import numpy as np", "import onnxruntime as ort", "from tokenizers import Tokenizer", "", f'folder = "{export}"',
            'tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")', "tokenizer.no_truncation()",
            "tokenizer.no_padding()",
            '# providers named: a GPU build of onnxruntime refuses a session without them (since 1.9)',
            'session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])'
            + (f'  # int8: "{INT8_FILE}"' if (export / INT8_FILE).is_file() else ""),
            f"labels = {label_names(config)!r}",
            f"MAX_LENGTH = {tok.max_length}  # tokens, special ones included, as trained: a longer text keeps {what}",
            *([f"HEAD = {min(tok.head_tokens, tok.max_length - len(tok.prefix) - len(tok.suffix))}"]
              if tok.truncation == "head+tail" else []),
            f"PREFIX, SUFFIX = {tok.prefix}, {tok.suffix}  # the special tokens around a text", "", *prepare,
            "def token_ids(text):", f"    ids = tokenizer.encode({'prepare(text)' if prepare else 'text'}, add_special_tokens=False).ids",
            "    budget = MAX_LENGTH - len(PREFIX) - len(SUFFIX)", "    if len(ids) > budget:", *cut,
            "    return PREFIX + ids + SUFFIX", "", "",
            "def classify(text):", "    ids = token_ids(text)",
            '    feed = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}',
            '    logits = session.run(["logits"], feed)[0][0]',
            "    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()",
            "    return labels[int(probs.argmax())], float(probs.max())", "", 'print(classify("I loved it"))', "```", ""]


def raw(pattern: str) -> str:
    """`pattern` as a raw string literal (as a person writes a regular expression)."""
    assert '"' not in pattern and not pattern.endswith("\\"), pattern
    return f'r"{pattern}"'


def prepare_lines(kd: dict) -> list[str]:
    """The snippet's `prepare(text)`: the preparation the model's training texts had (data_utils.as_trained), written
    out from data_utils' own patterns; [] for a model trained elsewhere (texts as they are)."""
    from data_utils import BR_TAG, ESCAPE, preparation
    kind = preparation(kd)
    if not kind:
        return []
    if kind == "imdb":
        return [f"BR = re.compile({raw(BR_TAG.pattern)}, re.IGNORECASE)", "",
                "def prepare(text):  # as the training reviews were: IMDb's <br /> line breaks as spaces",
                '    return BR.sub(" ", text)', "", ""]
    return [f"ESCAPE = re.compile({raw(ESCAPE.pattern)})", "",
            "def unescape(m):  # one \\uXXXX escape, or two that write one character (an emoji)",
            "    if m[3]:", "        return chr(int(m[3], 16))",
            "    return chr(0x10000 + ((int(m[1], 16) - 0xD800) << 10) + int(m[2], 16) - 0xDC00)", "",
            "def prepare(text):  # as the training texts were: literal \\uXXXX escapes decoded", "    return ESCAPE.sub(unescape, text)",
            "", ""]


def card_after_export(folder: Path, fresh: bool) -> None:
    """After export.py: <folder>/README.md (atomically) names its export in the usage line, not how to make one; a
    fresh export (written now, over files that may have been evaluated) drops the card's onnx-fp32 / onnx-int8 rows,
    which measured the files it replaced (`evaluate_models.py --onnx=true` measures the new ones); then the
    export's own card (write_onnx_card)."""
    import re
    path = Path(folder) / "README.md"
    if not path.is_file():
        return
    text = re.sub(r"an ONNX export: `python export\.py --model=[^`]+`, then `--model ([^`]+)`",
                  r"its ONNX export, for ONNX Runtime without torch: `--model \1`", path.read_text())
    if fresh:
        text = "".join(line for line in text.splitlines(keepends=True) if not re.match(r"\| onnx-(fp32|int8) \|", line))
    if text != path.read_text():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    write_onnx_card(folder)


def write_onnx_card(folder: Path) -> None:
    """<folder>/onnx/README.md from <folder>/README.md (onnx_card), if both folders hold what they need."""
    folder = Path(folder)
    if (folder / "README.md").is_file() and (folder / "onnx").is_dir():
        with atomic_path(folder / "onnx" / "README.md") as tmp:
            tmp.write_text(onnx_card((folder / "README.md").read_text(), folder / "onnx"))


def write_card(folder: Path, name: str | None = None, **evaluation) -> Path:
    """Write <folder>/README.md (evaluation: rows, hardware, test_size from evaluate_models)."""
    path = Path(folder) / "README.md"
    text = card_text(Path(folder), name or Path(folder).name, **evaluation)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
