"""Predict the sentiment of new text with any saved model (teacher or student).

Reads  a model folder written by fine_tuning_teacher.py or distill_student.py (default: the distilled
       student with the best validation accuracy of the experiment trained most recently under outputs/, or
       of EXPERIMENT (--experiment, or the one --config names), else its best student, else its teacher; the
       choice is printed on stderr),
       and texts from the command line, a file (one review per line, or a CSV/TSV/JSON Lines/parquet table's
       TEXT_COLUMN, by default the column the model was trained on) or standard input.
Writes to stdout, one line per text: label, confidence, text (line breaks shown as spaces, cut at 70
       characters); or JSON with --json (the whole text, every class's probability); with --output, a table
       instead, in the format its suffix names (a table's own columns, e.g. its ids, then label, score, p_<label>).
       Notes go to stderr.
       Any number of classes: the labels are the model's own (config.json id2label).

    python inference.py "I loved it" "Worst film ever"
    python inference.py --file reviews.txt            # one review per line; --file - reads stdin
    python inference.py --file new.csv --text_column=review --json    # a table's column (CSV/TSV/JSONL/parquet)
    python inference.py --file new.csv --output=predicted.csv          # the table, with the predictions added (.csv,
                                                                       # .tsv, .jsonl, .json or .parquet, by its suffix)
    cat reviews.txt | python inference.py -           # "-" among texts (or beside --file) reads stdin there
    python inference.py --model outputs/quick/students/L3 --json "A slow start, then wonderful."
    python inference.py --config configs/tweets.toml "so happy today"   # that experiment's best distilled student
    python inference.py                               # a few built-in examples
    python inference.py --model outputs/quick/students/L3/onnx "I loved it"   # ONNX export (export.py)
    python inference.py --model distilbert-base-uncased-finetuned-sst-2-english "I loved it"   # a hub classifier

An ONNX folder (export.py) is run with ONNX Runtime and the `tokenizers` library only: no torch or
transformers import, so one review answers in about 0.3 s instead of about 4 (2-core CPU, outputs/readme-figures); ONNX_FILE picks the
fp32 model.onnx (default; same predictions as the torch model) or the int8 model_quantized.onnx.

From Python:
    from inference import predict
    predict(["a great film"], model="outputs/quick/students/L3")
    # [{'label': 'positive', 'score': 0.97, 'probs': {'negative': 0.03, 'positive': 0.97}}]

Long texts are truncated the way the model was trained (its config.json); batched, on GPU when present.
"""
import json
import sys
from pathlib import Path

import models
import onnx_runtime
from configurator import PROJECT_DIR, UsageError, check_run_folder, configure, defined_constants, run_main
from data_utils import FORMATS, as_trained, atomic_path, file_stamps, is_blank, read_json, read_lines, read_table
from models import (batched_logits, default_device, experiment_of, is_finished, is_saved_model, load_classifier, saved_models,
                    truncation_settings)
from onnx_runtime import is_onnx_folder, onnx_logits, softmax

# --- I/O ---------------------------------------------------------------------------------------
MODEL: str = ""                   # model folder; "" = best distilled student of EXPERIMENT (stderr says which)
OUTPUT_DIR: str = "outputs"       # where experiments are looked for
EXPERIMENT: str = ""              # with MODEL "": the experiment to take it from (--config sets it); "" = the newest
FILE: str = ""                    # one review per line; "-" = standard input; a .csv/.tsv/.jsonl/.json/.parquet file: its TEXT_COLUMN
TEXT_COLUMN: str = ""             # the column that holds the texts, when FILE is a table; "" = the model's training data's
JSON: bool = False                # print JSON instead of a table (--json; a word after it is a text: --json=false)
OUTPUT: str = ""                  # write the predictions to this file instead of printing them (a table's columns kept; --json
                                  # still prints), not over an existing one; its suffix names the format: .csv | .tsv | .jsonl | .json (rows) | .parquet
# --- system ------------------------------------------------------------------------------------
BATCH_SIZE: int = 32              # texts per forward pass
DEVICE: str = "auto"              # auto | cpu | cuda
ONNX_FILE: str = onnx_runtime.FP32_FILE # in an ONNX folder: model.onnx (fp32) | model_quantized.onnx (int8)

EXAMPLES = (
    "One of the best films I have seen in years: moving, funny and beautifully acted.",
    "A tedious, badly written mess. I want those two hours of my life back.",
    "The first half drags, but the ending more than makes up for it.",
    "Not bad, not great either. The lead tries hard but the script gives her nothing.",
)
_LOADED: dict = {}   # {(folder, device): (its files' stamps, (model, tokenizer, truncation settings))}


def default_model(output_dir: str, experiment: str = "") -> Path:
    """The model used without --model: in `experiment` ("" = the one trained most recently), the distilled
    student with the best validation accuracy (what the experiment is about, not its labels-only baselines),
    else the best of its other students, else its teacher; of the models that learned (not_learned: each predicted
    every class on validation) where any did."""
    if experiment:      # --experiment=outputs/quick: one folder name, as the other scripts require
        check_run_folder(output_dir, experiment)
    found = saved_models(output_dir)
    models = [p for p in found if experiment_of(p) == Path(output_dir) / experiment] if experiment else found
    if not models:
        there = sorted({experiment_of(p).name for p in found})
        raise UsageError(f"no saved model under {(Path(output_dir) / experiment).resolve()}/; train one "
                         f"(fine_tuning_teacher.py, distill_student.py), pass --model=PATH, or --output_dir=DIR where "
                         f"your experiments are (in Python: predict(texts, model=PATH) or output_dir=DIR)" +
                         (f"; experiments with saved models: {', '.join(there)}" if there else ""))
    newest = experiment_of(max(models, key=lambda p: (p / "metrics.json").stat().st_mtime))
    mine = [p for p in models if experiment_of(p) == newest]
    return max([p for p in mine if not not_learned(p)] or mine, key=preference)


def preference(folder: Path) -> tuple:
    """How default_model ranks an experiment's models: distilled students first (what the experiment is about),
    then other students (labels-only baselines), then the teacher; within each, by validation accuracy."""
    kind = read_json(folder / "config.json").get("sentiment_kd", {}).get("kind")
    rank = 2 if kind == "distilled" else 0 if folder.name == "teacher" else 1
    return rank, read_json(folder / "metrics.json").get("val_accuracy", 0)


def default_reason(folder: Path, experiment: str = "") -> str:
    """Why default_model picked `folder` (from `experiment`, "" = the newest), for the line that names it: the
    models ranked above it that it passed over for not learning, and, when its labels-only baseline did as well or
    better on validation (and learned), that one's folder. Of an ONNX export (runnable): of the model it was exported from."""
    folder = folder.parent if is_onnx_folder(folder) else folder
    kind = read_json(folder / "config.json").get("sentiment_kd", {}).get("kind")
    of = f"experiment {experiment}" if experiment else "the newest experiment"
    rank = preference(folder)
    above = [p for p in models.finished_models(experiment_of(folder)) if preference(p) > rank]
    skipped = {p: why for p in above if (why := not_learned(p))} if not not_learned(folder) else {}
    passed = "; passed over, as they did not learn: " + "; ".join(f"{p.name} ({why})" for p, why in skipped.items()) \
        if skipped else ""
    learned = " that learned" if passed else ""
    if kind == "distilled":
        twin = folder.with_name(f"{folder.name}-baseline")
        ours, theirs = (read_json(f / "metrics.json").get("val_accuracy", 0) if is_finished(f) else 0 for f in (folder, twin))
        did = "better than it" if theirs > ours else "as well"     # a tie: results.md's "to ship" may name either
        better = f"; its labels-only baseline did {did} on validation ({theirs:.4f} against {ours:.4f}): " \
                 f"--model={twin} takes it" if theirs >= ours and is_finished(twin) and not not_learned(twin) else ""
        return f"the best distilled student of {of}{learned}{better}{passed}"
    if folder.name != "teacher":
        return f"the best student of {of}, which has no distilled one{learned}{passed}"
    return f"the teacher of {of}, which has no finished student{learned}{passed}"


def not_learned(folder: Path) -> str:
    """What a finished model's metrics.json says of the classes it never predicted on validation
    (models.unpredicted_classes: "it predicted one class for every validation text", ...), or "" for a model that
    predicted them all."""
    m, classes = read_json(folder / "metrics.json"), len(models.label_names(read_json(folder / "config.json")))
    return models.unpredicted_classes(m, classes)


def check_model(path: str, output_dir: str) -> Path:
    """The model folder, after checking that it holds a sentiment classifier that can be used as is:
    config.json and weights, a tokenizer, and a trained classification head with named labels."""
    folder = Path(path)
    have = lambda: ", ".join(f"{p}{' (and its onnx/)' if is_onnx_folder(p / 'onnx') else ''}"   # noqa: E731
                             for p in saved_models(output_dir)) or f"none under {output_dir}/"
    if folder.is_file():      # the .onnx file, or a file of the folder: the folder is what is meant
        pick = f" --onnx_file={folder.name}" if folder.suffix == ".onnx" and folder.name != onnx_runtime.FP32_FILE else ""
        raise UsageError(f"--model={folder} is a file; give its folder: --model={folder.parent}{pick}")
    if not folder.is_dir() and models.local_path(path) is None:     # a hub id: its files, from the cache or the hub
        snapshot = hub_snapshot(path, have)
        try:
            return check_model(str(snapshot), output_dir)
        except UsageError as e:                                      # named as the user named it
            raise UsageError(str(e).replace(str(snapshot), path)) from None
    if not folder.is_dir():
        raise UsageError(f"model folder {folder} does not exist; saved models: {have()}")
    if is_onnx_folder(folder):
        return folder             # written by export.py from a checked model folder
    config, weights = (folder / "config.json").is_file(), any((folder / w).is_file() for w in models.WEIGHT_FILES)
    if not config and not weights:      # an experiment's folder, its students/, or no model's at all
        inside = [p for p in models.finished_models(experiment_of(folder)) if folder.resolve() in p.resolve().parents]
        raise UsageError(f"{folder} is not a model folder (no config.json or model weights); " + (
            f"the models in it: {', '.join(map(str, inside))}" if inside else f"saved models: {have()}"))
    if not config or not weights:
        raise UsageError(f"model folder {folder} is incomplete (needs config.json and model weights); saved models: {have()}")
    if not is_saved_model(folder):
        raise UsageError(f"model folder {folder} has no tokenizer (tokenizer.json or tokenizer_config.json), so every "
                         f"text would become unknown tokens; save the tokenizer beside the weights "
                         f"(tokenizer.save_pretrained) or use a folder written by fine_tuning_teacher.py / distill_student.py")
    config = read_json(folder / "config.json")
    heads = [a for a in config.get("architectures") or [] if a.endswith("ForSequenceClassification")]
    if not heads:
        what = ", ".join(config.get("architectures") or []) or config.get("model_type", "model")
        raise UsageError(f"{folder} holds a {what} without a trained classification head, so its predictions "
                         f"would be random; fine-tune it first (fine_tuning_teacher.py --model_name={folder}) or pass "
                         f"a model folder written by this project")
    labels = [str(v) for v in models.label_names(config)]
    # LABEL_0, LABEL_1, ... are transformers' placeholders, unless the model is ours (then they are its data's labels)
    if len(labels) < 2 or ("sentiment_kd" not in config and all(v.upper().startswith("LABEL_") for v in labels)):
        raise UsageError(f"{folder} is a classifier without label names ({', '.join(labels) or 'no id2label'}), so its "
                         f"predictions cannot be read; pass a model written by this project, or set id2label in its config.json")
    return folder


def hub_snapshot(repo_id: str, have) -> Path:
    """The local folder of a hub model's files (huggingface_hub's cache; downloaded where the hub is reachable and the
    model not cached), for a hub sentiment classifier given as --model; UsageError when it is neither (`have`: the
    saved models here, for the message)."""
    from configurator import offline_if_hub_unreachable
    reason = offline_if_hub_unreachable()       # before huggingface_hub's retries, not after
    if reason:
        print(f"note: the Hugging Face hub is not reachable ({reason}): --model={repo_id} from the local cache "
              f"(HF_HUB_OFFLINE=1 skips this check)", file=sys.stderr)
    from huggingface_hub import snapshot_download
    top = ["*.json", "*.txt", "*.model"]          # config, tokenizer files; the repo's top level only (no onnx/ etc.)
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=top + ["*.safetensors"], ignore_patterns=["*/*"]))
        if not any(folder.glob("*.safetensors")):  # an older repo: its PyTorch weights instead
            folder = Path(snapshot_download(repo_id, allow_patterns=top + ["*.bin"], ignore_patterns=["*/*"]))
        return folder
    except Exception as e:      # offline and not cached, no such repo, a gated one, a network error
        reason = str(e).strip().split(". ")[0].splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UsageError(f"--model={repo_id}: no such folder here, and not a hub model at hand ({type(e).__name__}: "
                         f"{reason}); saved models: {have()}") from None


def check_onnx_file(folder: Path, onnx_file: str, device: str = "auto") -> None:
    """UsageError for an ONNX file the folder does not hold, one asked of a torch model folder (it would run
    the torch model while the user believes the ONNX one ran), or a GPU asked of an ONNX folder (it runs on the CPU)."""
    if is_onnx_folder(folder):
        if device == "cuda":
            raise UsageError(f"--device=cuda: {folder} is an ONNX export, which runs on the CPU here (ONNX Runtime's CPU "
                             f"provider); leave --device out, or pass --model={folder.parent} to run the torch model on the GPU")
        if not (folder / onnx_file).is_file():
            have = ", ".join(sorted(p.name for p in folder.glob("*.onnx"))) or "none"
            raise UsageError(f"--onnx_file={onnx_file}: no such file in {folder} (it holds {have})")
    elif onnx_file != onnx_runtime.FP32_FILE:
        raise UsageError(f"--onnx_file={onnx_file} picks a file of an ONNX export, but {folder} is a torch model folder; "
                         f"pass --model={folder / 'onnx'} (written by export.py or evaluate_models.py --onnx=true)")


def validation_accuracy(folder: Path, onnx_file: str = onnx_runtime.FP32_FILE) -> str:
    """'validation accuracy 0.8620' of a model folder, or ''; of an ONNX export, which file runs and the accuracy
    of the model it was exported from (an int8 file's own is not measured at training)."""
    if is_onnx_folder(folder):
        found = validation_accuracy(folder.parent)
        return f"ONNX Runtime, {onnx_file}" + (f"; exported from a model of {found}" if found else "")
    if (folder / "metrics.json").is_file():
        metrics = read_json(folder / "metrics.json")
        little = models.near_chance(metrics)
        warn = not_learned(folder) or (f"it learned little: {little}" if little else "")
        return f"validation accuracy {metrics.get('val_accuracy', float('nan')):.4f}" + (f"; WARNING: {warn}" if warn else "")
    return ""


def load(folder: Path, device: str):
    """(model, tokenizer, truncation settings) of a saved model (models.load_classifier), cached per folder and device
    (predict() in a loop loads it once) and read again when its files change (a model retrained or replaced in place:
    the modification times of its files)."""
    key, stamps = (str(folder.resolve()), device), file_stamps(folder)
    if key not in _LOADED or _LOADED[key][0] != stamps:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()      # keep the terminal output to the predictions
        model, tok = load_classifier(str(folder))
        kd = read_json(folder / "config.json").get("sentiment_kd", {})
        _LOADED[key] = (stamps, (model.to(device).eval(), tok, truncation_settings(kd, tok, model.config)))
    return _LOADED[key][1]


def predict(texts: str | list[str], model: str | None = None, batch_size: int | None = None, device: str | None = None,
            output_dir: str | None = None, onnx_file: str | None = None, experiment: str | None = None) -> list[dict]:
    """Sentiment of each text: [{"label": the most probable label, "score": its probability, "probs": {label:
    probability} of every class}], in the order of `texts`. Labels are the model's (IMDb: negative, positive).

    texts: a list of strings, or one string (one text). An empty list gives []. A blank text (only
    whitespace or a byte-order mark) raises ValueError naming its position: there is nothing to predict,
    and skipping it would shift the results against the inputs (the command line skips blank lines
    with a note instead). model: a saved model folder ("" = the default model, see the module docstring),
    or its ONNX export (export.py; run on the CPU with ONNX Runtime, `onnx_file` in it). experiment: with no model,
    the experiment under output_dir to take the default from ("" = the newest). A setting left None is this file's
    constant (MODEL, BATCH_SIZE, DEVICE, OUTPUT_DIR, ONNX_FILE, EXPERIMENT), as edited at its top.
    """
    c = defined_constants(globals(), "inference")          # as edited, not as an earlier main() in this process set them
    model, batch_size, device, output_dir, onnx_file, experiment = (
        c["MODEL"] if model is None else model, c["BATCH_SIZE"] if batch_size is None else batch_size,
        c["DEVICE"] if device is None else device, c["OUTPUT_DIR"] if output_dir is None else output_dir,
        c["ONNX_FILE"] if onnx_file is None else onnx_file, c["EXPERIMENT"] if experiment is None else experiment)
    texts = [texts] if isinstance(texts, str) else list(texts)
    bad = [i for i, t in enumerate(texts, 1) if not isinstance(t, str)]
    if bad:
        raise UsageError(f"predict(): text #{bad[0]} is a {type(texts[bad[0] - 1]).__name__}, not a str")
    blank = [str(i) for i, t in enumerate(texts, 1) if is_blank(t)]
    if blank:
        raise UsageError(f"predict(): text #{', #'.join(blank[:10])} is blank; remove blank texts "
                         f"(the command line skips them with a note)")
    if not texts:
        return []
    folder = check_model(model, output_dir) if model else runnable(default_model(output_dir, experiment))
    if not model:       # the newest experiment's: it changes as experiments are trained, so it is named (once per model)
        import warnings
        about = "; ".join(filter(None, [default_reason(folder, experiment), validation_accuracy(folder, onnx_file)]))
        warnings.warn(f"predict(): no model given, so {folder} ({about}); pass model=... "
                      f"to choose", stacklevel=2)
    check_onnx_file(folder, onnx_file, device)
    config = read_json(folder / "config.json")
    texts = as_trained(texts, config.get("sentiment_kd", {}))
    if is_onnx_folder(folder):
        probs = softmax(onnx_logits(folder, texts, batch_size, onnx_file))
        return labelled(probs, dict(enumerate(models.label_names(config))))
    try:
        import torch
    except ImportError:      # a deploy machine with onnxruntime alone
        export = folder / "onnx"
        raise UsageError(f"{folder} is a torch model and torch is not installed here; run its ONNX export instead: "
                         + (f"--model={export}" if is_onnx_folder(export) else
                            f"python export.py --model={folder} where torch is, then --model={export}")) from None
    device = default_device(device)
    net, tok, settings = load(folder, device)
    probs = torch.softmax(torch.from_numpy(batched_logits(net, tok, texts, settings, batch_size, device)), -1).numpy()
    return labelled(probs, net.config.id2label)


def runnable(folder: Path) -> Path:
    """The default model `folder`, or its ONNX export where torch is not installed (a deploy machine with
    onnxruntime alone: the default stays usable; a note on stderr says so)."""
    if is_onnx_folder(folder) or not is_onnx_folder(folder / "onnx"):
        return folder
    import importlib.util
    try:
        missing = importlib.util.find_spec("torch") is None
    except ValueError:            # a module without a spec in its place: not importable either
        missing = True
    if missing:
        print(f"note: torch is not installed here: {folder}'s ONNX export runs instead", file=sys.stderr)
        return folder / "onnx"
    return folder


def labelled(probs, id2label: dict) -> list[dict]:
    """Rows of class probabilities (N, C) as [{label, score, probs: {label: probability}}]."""
    return [{"label": id2label[int(p.argmax())], "score": round(float(p.max()), 4),
             "probs": {id2label[i]: round(float(v), 4) for i, v in enumerate(p)}} for p in probs]


def gather_texts(args: list[str], file: str, column: str = "text") -> tuple[list[str], object]:
    """(texts, table): texts from --file (a text file, one per line, or a table's `column`), then the positional
    arguments ("-" among them: standard input's lines, there), or else the built-in examples; and the table they
    came from, all its columns as a pandas DataFrame (for --output), or None."""
    for n, text in enumerate(args, 1):     # bytes that are not UTF-8 reach Python as lone surrogates
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"text argument #{n} is not valid UTF-8 (the terminal's encoding?); pass it in a UTF-8 "
                             f"file with --file=PATH") from None
    if file and file != "-" and Path(file).expanduser().is_dir():
        raise UsageError(f"--file={file} is a folder; give a file in it: a CSV/TSV/JSON Lines/parquet table, or a text "
                         f"file (one text per line)")
    if file and Path(file).suffix.lower() in FORMATS:     # checked as training texts are; predict prepares them
        import pandas as pd
        texts, parts = read_table(file, column, "--file")
        return texts + with_stdin(args, file), pd.concat([d.to_pandas() for d in parts], ignore_index=True)
    if TEXT_COLUMN and (file or "-" in args):
        print(f"note: --text_column={TEXT_COLUMN} is for tables ({', '.join(FORMATS)}); every line of "
              f"{file if file not in ('', '-') else 'standard input'} is a text", file=sys.stderr)
    if file:
        return read_lines(file) + with_stdin(args, file), None
    if not args:
        print(f"note: no text given: {len(EXAMPLES)} built-in movie reviews (give texts, --file=PATH, or - for standard "
              f"input)", file=sys.stderr)
    return with_stdin(args, file) if args else list(EXAMPLES), None


def with_stdin(args: list[str], file: str = "") -> list[str]:
    """The positional texts with a "-" among them replaced by standard input's lines, there (stdin is read once:
    a second "-", or "-" beside --file=-, is a UsageError)."""
    if "-" not in args:
        return args
    if args.count("-") > 1 or file == "-":
        raise UsageError("standard input is given twice (" + ("--file=- and " if file == "-" else "") + "\"-\" as "
                         "a text); it can be read once: give \"-\" once")
    i = args.index("-")
    return args[:i] + read_lines("-") + args[i + 1:]


def main(argv=None) -> list[dict]:
    cfg = configure(globals(), argv, "inference")
    if cfg["_ignored"]:
        print(f"note: ignored {', '.join('--' + n.lower() for n in cfg['_ignored'])} (settings of other scripts)", file=sys.stderr)
    if OUTPUT and Path(OUTPUT).exists():
        raise UsageError(f"--output={OUTPUT} exists; remove it or give another path (predictions are not written over a file)")
    if OUTPUT and Path(OUTPUT).suffix.lower() not in WRITERS:
        raise UsageError(f"--output={OUTPUT}: its suffix says no format written here; end it in {', '.join(WRITERS)}")
    # 1. the model (a table's text column defaults to the one it was trained on), 2. the texts
    folder = check_model(MODEL, OUTPUT_DIR) if MODEL else runnable(default_model(OUTPUT_DIR, EXPERIMENT))
    column = TEXT_COLUMN or trained_setting(folder, "text_column") or "text"
    texts, table = gather_texts(cfg["_args"], FILE, column)
    texts = nonblank(texts, FILE or ("-" if cfg["_args"] == ["-"] else ""))
    names = output_columns(table, models.label_names(read_json(folder / "config.json")),
                           trained_setting(folder, "label_column")) if OUTPUT else []
    # 3. predict, 4. print them (JSON as asked; a table only without OUTPUT, which holds them: 25,000 rows on a terminal)
    results = predict(texts, str(folder), BATCH_SIZE, DEVICE, OUTPUT_DIR, ONNX_FILE)
    print_model_line(folder)
    if JSON:
        print(json.dumps({"model": str(folder), "predictions": [{"text": t, **r} for t, r in zip(texts, results)]}, indent=2))
    elif not OUTPUT:
        print_table(texts, results)
    if OUTPUT:
        write_predictions(Path(OUTPUT), texts, results, table, column, names)
        print(f"wrote {len(results)} predictions to {OUTPUT}", file=sys.stderr)
    return results


def trained_setting(folder: Path, name: str) -> str:
    """A data setting (text_column, label_column) of the run that trained `folder`'s model (its config.json), else ""."""
    return read_json(folder / "config.json").get("sentiment_kd", {}).get("run_config", {}).get(name) or ""


def nonblank(texts: list[str], source: str = "") -> list[str]:
    """`texts` without the blank ones (a note on stderr names them); a UsageError if none is left, naming `source`
    (--file's path, or "-" for standard input) when they came from there."""
    keep = [t for t in texts if not is_blank(t)]
    if keep and len(keep) < len(texts):
        skipped = [str(i + 1) for i, t in enumerate(texts) if is_blank(t)]
        print(f"note: skipped {len(skipped)} empty text(s) (#{', #'.join(skipped[:10])})", file=sys.stderr)
    if not keep:
        if source:
            raise UsageError(f"{'standard input' if source == '-' else source} holds no text to predict (empty, or "
                             f"blank lines only); give it one text per line")
        raise UsageError("no non-empty text to predict; pass texts, --file=PATH or - for standard input")
    return keep


def print_model_line(folder: Path) -> None:
    """On stderr, whatever the output's form: the model, its validation accuracy and warnings, and why it is the
    default when no --model was given."""
    why = "" if MODEL else f"the default: {default_reason(folder, EXPERIMENT)}; --model=PATH picks another"
    trained = folder.parent if is_onnx_folder(folder) else folder       # an export: the model it was exported from
    beside = (trained / "config.json").is_file()                          # (unless the export was shipped alone)
    teacher = experiment_of(trained) / "teacher"
    elsewhere = models.learned_from_elsewhere(trained, teacher) if beside else ""   # --teacher_dir, as written
    which = f"its teacher {elsewhere}" if elsewhere else "the teacher beside it"
    if elsewhere and not Path(elsewhere).exists():    # relative to the checkout the run wrote it in, read from elsewhere
        learned_from = PROJECT_DIR / elsewhere
    else:
        learned_from = Path(elsewhere or teacher)
    stale = f"WARNING: it learned from an earlier training of {which} (retrained since; evaluate_models.py refuses it " \
        f"until it is retrained)" if beside and models.teacher_retrained_since(trained, learned_from) else ""
    about = "; ".join(filter(None, [validation_accuracy(folder, ONNX_FILE), stale, why]))
    print(f"model: {folder}" + (f" ({about})" if about else ""), file=sys.stderr)


def print_table(texts: list[str], results: list[dict]) -> None:
    """One line per text on stdout: label, confidence, the text cut to 70 characters."""
    width = max(9, *(len(r["label"]) for r in results))
    for t, r in zip(texts, results):
        t = " ".join(t.split())           # one line per text: its line breaks and tabs shown as spaces
        short = t if len(t) <= 70 else t[:67] + "..."
        print(f"{r['label']:<{width}} {r['score']:.3f}  {short}")


def output_columns(table, labels: list[str], label_column: str = "") -> list[str]:
    """The columns --output adds: label, score and p_<label> for each of the model's `labels`, named predicted_label,
    predicted_score and predicted_p_<label> when the input table (a pandas DataFrame, or None) has a column of one of
    the plain names, or the labels column the model was trained with (`label_column`: a plain `label` beside the true
    `sentiment` reads as the truth; a note says so). A UsageError, before anything is predicted, when the table has
    the predicted_ names too."""
    names = ["label", "score", *(f"p_{n}" for n in labels)]
    have = [] if table is None else list(table.columns)
    taken = [c for c in names + [label_column] if c and c in have]
    if not taken:
        return names
    names = [f"predicted_{c}" for c in names]
    clash = [c for c in names if c in have]
    if clash:
        raise UsageError(f"--file's table has columns {taken[0]!r} and {clash[0]!r}, which the predictions would be "
                         f"written over; rename one of them")
    print(f"note: the table has a column {taken[0]!r}, kept as it is; the predictions are written as "
          f"{', '.join(names)}", file=sys.stderr)
    return names


WRITERS = {                          # --output's suffix: how a pandas DataFrame is written to a path
    ".csv": lambda t, p: t.to_csv(p, index=False),
    ".tsv": lambda t, p: t.to_csv(p, index=False, sep="\t"),
    ".jsonl": lambda t, p: t.to_json(p, orient="records", lines=True, force_ascii=False),
    ".json": lambda t, p: t.to_json(p, orient="records", force_ascii=False, indent=1),
    ".parquet": lambda t, p: t.to_parquet(p, index=False),
}


def write_predictions(path: Path, texts: list[str], results: list[dict], table, column: str, names: list[str]) -> None:
    """A table of the predictions in the format `path`'s suffix names (WRITERS), one row per text in input order:
    the input table's own columns (table: a pandas DataFrame, all its columns, so ids travel with their predictions;
    texts given as arguments too get empty ones), else `text`; then the predicted label, its score and each class's
    probability as the columns `names` (output_columns). Written atomically."""
    import pandas as pd
    if table is None:
        table = pd.DataFrame({"text": texts})
    elif len(texts) > len(table):                # texts given as arguments too: a row each, other columns empty
        table = pd.concat([table, pd.DataFrame({column: texts[len(table):]})], ignore_index=True).convert_dtypes()   # ids stay ints
    values = [[r["label"] for r in results], [r["score"] for r in results],
              *([r["probs"][n] for r in results] for n in results[0]["probs"])]
    table = table.assign(**dict(zip(names, values, strict=True)))
    try:
        with atomic_path(path, replace=False) as tmp:
            WRITERS[path.suffix.lower()](table, tmp)
    except FileExistsError:        # checked at the start; made since by another command
        raise UsageError(f"--output={path} appeared while predicting (another command writing it?); not written "
                         f"over: remove it or give another path") from None


if __name__ == "__main__":
    run_main(main)
