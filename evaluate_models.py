"""Evaluate the teacher and every student of an experiment side by side on the test split (IMDb or your data).

Reads  outputs/<EXPERIMENT>/teacher/ (or TEACHER_DIR; without either, the teacher its students were distilled
       from; for students of published soft labels, the teacher row of a published results.json: TEACHER_RESULTS)
       and outputs/<EXPERIMENT>/students/*/ (each model with its own tokenizer and the truncation settings it was
       trained with, from its config.json), and the test split
       of the teacher's data (as saved with the teacher, or from DATA when it has moved; IMDb: all 25,000
       reviews), or a fixed stratified seeded subset of TEST_SIZE; with SPLIT=validation the teacher's
       validation split instead, for choosing settings without touching the test set.
Writes outputs/<EXPERIMENT>/results.json, results.csv, results.md (the tables), dashboard.png,
       gains.png (each distilled student's gain over its labels-only baseline, mean and standard
       deviation over seeds; none when no distilled student is evaluated beside its baseline) and, for error
       analysis, predictions/<model>.csv (text index, label, prediction,
       and the probability of each class) beside predictions/texts.csv (index, label, text, and the split and row
       of the data it is: source, row); with
       SPLIT=validation the same files named validation-*.

Per model: accuracy, macro F1/precision/recall (and per class, with the confusion matrix, in results.json),
agreement with the teacher, parameters, size on disk,
compression (teacher params / params), retention (accuracy / teacher accuracy), efficiency (retention /
size fraction), and speed: batch-1 latency p50/p95 after warm-up, throughput at EVAL_BATCH_SIZE
(model forward only, batches sorted by length), tokenization timed separately, the whole evaluation
pipeline's throughput and its ratio to the bare forward, speedup over the teacher. Extra rows: with
QUANTIZE an int8 dynamic-quantized copy of each model whose kind is in QUANTIZE_KINDS (Linear layers,
a weight scale per output channel with QUANTIZE_PER_CHANNEL, CPU only); with ONNX the model's ONNX
export (export.py, made here where missing) run by ONNX Runtime in fp32 and dynamic int8 (rows
onnx-fp32 / onnx-int8, kinds in ONNX_KINDS, CPU only, as many threads as torch, the same reviews and
tokenization); with HALF_PRECISION a bf16 copy (fp16 where bf16 is unsupported; on GPUs by default).
On GPUs every timing is synchronised (batch-1 latency with CUDA events after a warm-up of at least
GPU_WARMUP_S seconds). Hardware, device and threads are recorded with the results.

Distilled vs baseline: each distilled student is paired with the labels-only run of the same student
(model, layers, seed, learning rate, batch size, max_length) at the same number of optimizer steps;
students whose specs differ only in name and `seed` are one recipe, reported as mean and standard
deviation over the seeds (labeled by the name without a `-s<seed>` suffix).

    python evaluate_models.py --config configs/quick.toml      # 5,000-review test subset, CPU
    python evaluate_models.py --experiment=paper               # full test set
    python evaluate_models.py --config configs/quick.toml --quantize=false --models=teacher,L3
    python evaluate_models.py --config configs/mine.toml --data=/new/place/of/mine   # the teacher's data, moved since
    python evaluate_models.py --config configs/full-study.toml   # the recipes chosen on validation (--models=chosen)
    python evaluate_models.py --config configs/quick.toml --redraw=true   # the figures again, from results.json
"""
import collections
import csv
import gc
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from configurator import (UsageError, cpu_sample, log, others_cores, public_config, run_main, start_run, stops_held,
                          toml_inline)
from data_utils import (IMDB_LABELS, DataSpec, accuracy_se, atomic_path, check_data, check_digests, class_shares, classes_missed,
                        classes_neglected, classification_metrics, is_path_setting, load_splits, located, moved_copy,
                        per_class_metrics, percentile, portable, read_json, recalled, replace_dir, same_setting,
                        shift_note, stratified_indices, texts_digest, write_json)
from models import (PadCollator, count_parameters, default_device, encode, finished_models, is_finished, load_classifier,
                    logits_in_order, model_config, recipe, run_fingerprint, student_fields, student_key,
                    learned_from_elsewhere, reorder_hint, teacher_folder, teacher_retrained_since, teacher_run_of,
                    truncation_settings, unpredicted_classes)

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT: str = "paper"         # evaluates OUTPUT_DIR/EXPERIMENT/{teacher,students/*}
OUTPUT_DIR: str = "outputs"
TEACHER_DIR: str = ""             # the teacher (the reference row); "" = OUTPUT_DIR/EXPERIMENT/teacher, else the one
                                  # its students were distilled from (distill_student.py's TEACHER_DIR)
TEACHER_RESULTS: str = ""         # instead of a teacher folder (students of published soft labels): a results.json whose
                                  # fp32 teacher row is the reference (same data, split and texts; no agreement figure)
MODELS: list = [""]               # only these model names (teacher, student names; a distilled student brings its
                                  # <name>-baseline); "chosen" = the recipes distill_student.py chose on validation
                                  # (BEST_SEEDS: chosen.json), at each seed, with their baselines; [""] = all
# --- data: the teacher's (its saved data and split settings); every model must have its labels -----
DATA: str = ""                    # where the teacher's data file or folder lies now, if no longer where its record
                                  # says (checked against its record of the splits); "" = where that says
DATA_DIR: str = ""                # imdb: a local copy; "" = $IMDB_DIR, else the hub
DATASET_NAME: str = "stanfordnlp/imdb" # imdb: the hub dataset used when no local copy is given
SPLIT: str = "test"               # test | validation (the teacher's validation split, for choosing settings)
TEST_SIZE: int = 0                # stratified seeded subset of the test split (IMDb: 25,000 reviews); 0 = all
# --- evaluation --------------------------------------------------------------------------------
EVAL_BATCH_SIZE: int = 64         # batch for accuracy and throughput (reviews sorted by length)
LATENCY_SAMPLES: int = 100        # batch-1 requests timed for latency p50/p95 (random test reviews)
WARMUP: int = 5                   # untimed batches / requests before each measurement
GPU_WARMUP_S: float = 1.0         # GPUs: warm up each model for at least this many seconds before timing
QUANTIZE: bool = True             # add int8 dynamic-quantized rows (CPU only)
QUANTIZE_PER_CHANNEL: bool = True # int8 rows: a weight scale per output channel (false: one per tensor, as the
                                  # int8 rows published before 2 Dec 2026; outputs/int8-choice says why); the
                                  # onnx-int8 rows measure the export's file, made as its export.json says
HALF_PRECISION: str = "auto"      # bf16 rows (fp16 if bf16 is unsupported): auto = on GPUs | always | never
FP32_MODELS: list = [""]          # models that also get an fp32 row when they get a bf16 one ([""] = all; the
                                  # teacher always does); the others are compared by their bf16 rows
GAIN_PLOT_BY: str = ""            # a student setting (e.g. transfer_size): gains.png also plots the gain against it
REDRAW: bool = False              # only draw dashboard.png and gains.png again from the experiment's results.json
                                  # (SPLIT=validation: validation-*), loading no model and measuring nothing
                                  # (logged to logs/redraw.log: evaluate.log stays the evaluation's)
QUANTIZE_KINDS: list = ["teacher", "distilled", "baseline", "student"]  # which models get an int8 row (student: not from distill_student.py)
ONNX: bool = False                # add ONNX Runtime rows onnx-fp32 / onnx-int8 (CPU; exports to <model>/onnx/ where missing);
                                  # left unset, on where the previous results.json has them (--onnx=false drops them)
ONNX_KINDS: list = ["teacher", "distilled", "baseline", "student"]  # which models get the ONNX rows
DEVICE: str = "auto"              # auto | cpu | cuda
THREADS: int = 0                  # torch CPU threads; 0 = torch's default (all cores)
# --- system ------------------------------------------------------------------------------------
SEED: int = 42                    # picks the test subset and the latency requests


# ----------------------------------------------------------------------------------------------
# pure formulas
# ----------------------------------------------------------------------------------------------
def compression_ratio(teacher_params: int, params: int) -> float:
    """teacher parameters / model parameters (the teacher is 1.0)."""
    return teacher_params / params


def retention(accuracy: float, teacher_accuracy: float) -> float:
    """Accuracy kept, in percent of the teacher's: 100 * accuracy / teacher_accuracy."""
    return 100.0 * accuracy / teacher_accuracy


def retention_interval(right: np.ndarray, teacher_right: np.ndarray, z: float = 1.96) -> tuple[float, float] | None:
    """95% interval of retention (percent) for a model and the teacher judged on the same N texts. right,
    teacher_right: (N,) bool, each text answered correctly. With a = mean(right), t = mean(teacher_right) and
    b = mean(right & teacher_right), the delta method on log(a / t) for paired proportions gives
    var = [(1 - a) / a + (1 - t) / t - 2 (b - a t) / (a t)] / N, and the interval 100 * (a / t) * exp(±z sqrt(var)).
    None when either accuracy is 0 (no log)."""
    a, t, b = float(np.mean(right)), float(np.mean(teacher_right)), float(np.mean(right & teacher_right))
    if a == 0 or t == 0:
        return None
    var = max(((1 - a) / a + (1 - t) / t - 2 * (b - a * t) / (a * t)) / len(right), 0.0)
    return 100 * a / t * math.exp(-z * math.sqrt(var)), 100 * a / t * math.exp(z * math.sqrt(var))


def efficiency_ratio(retention_pct: float, size_mb: float, teacher_size_mb: float) -> float:
    """Accuracy kept per unit of size: (retention / 100) / (size / teacher size). Teacher = 1.0."""
    return (retention_pct / 100.0) / (size_mb / teacher_size_mb)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test of two models on the same texts: only_a texts only model A got right, only_b only
    model B; under no difference each of the n = only_a + only_b discordant texts goes either way with probability
    1/2, so p = min(1, 2 P(X <= min(only_a, only_b))) for X ~ Binomial(n, 1/2); 1.0 when n = 0. It counts the test
    set's sampling noise for one pair (one seed), which a spread over seeds does not."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)                 # in logs: C(n, i) / 2^n of thousands of texts is past a float's range
    return min(1.0, 2 * math.exp(top) * sum(math.exp(x - top) for x in logs))


def latency_stats(seconds: list[float]) -> dict:
    """{p50_ms, p95_ms, mean_ms} of per-request times given in seconds."""
    ms = np.asarray(seconds, dtype=float) * 1000
    return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "mean_ms": float(ms.mean())}


# ----------------------------------------------------------------------------------------------
# finding and measuring models
# ----------------------------------------------------------------------------------------------
def find_models(root: Path, teacher_dir: Path | None) -> list[tuple[str, Path]]:
    """(name, folder) of the finished teacher (None: none is measured) and students of an experiment,
    teacher first (models.is_finished: not a save in progress)."""
    found = [("teacher", teacher_dir)] if teacher_dir and is_finished(teacher_dir) else []
    return found + [(p.name, p) for p in finished_models(root) if p != root / "teacher"]


def students_teacher(root: Path) -> Path | None:
    """The teacher folder that every finished student of the experiment `root` was distilled from (the teacher each
    one's config.json records: distill_student.py's TEACHER_DIR, or its experiment's own), when they name one and it
    is finished; else None (no students, students of published soft labels, or of several teachers)."""
    named = [read_json(p / "config.json").get("sentiment_kd", {}).get("teacher") for p in finished_models(root)
             if p != root / "teacher"]
    if not named or None in named or len({Path(t).resolve() for t in named}) > 1:   # one folder, however written
        return None
    return Path(named[0]) if is_finished(Path(named[0])) else None


def hardware(device: str) -> dict:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"device": device, "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform(), "cpu_features": cpu_features()}
    if ONNX:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_load(device: str) -> float | None:
    """The 1-minute load average when measuring begins (recorded with the results), with a warning when other
    work clearly shares the CPU (load above 1.5 x its cores): CPU latency and throughput are then too slow."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        return None
    from model_card import cpu_was_busy
    if cpu_was_busy({"device": device, "load_average_1min": load, "cpu_count": os.cpu_count()}):
        log.warning("load average %.1f on %d cores: other work shares this CPU, so its latency and throughput "
                    "figures will be slow; evaluate on a quiet machine for figures to publish", load, os.cpu_count())
    return load


def timing_slowed(row: dict, device: str, cores: int | None) -> bool:
    """Whether other processes slowed a row's CPU timings (model_card.cpu_was_busy: over a fifth of the cores busy
    with other work while it was measured); a published row (TEACHER_RESULTS) was timed elsewhere and is not judged."""
    from model_card import cpu_was_busy
    return not row.get("published") and cpu_was_busy({"device": device, "other_cores_busy": row.get("other_cores_busy"),
                                                      "cpu_count": cores})


def slowed_rows(rows: list[dict], device: str, cores: int | None) -> list[str]:
    """'model precision (other cores busy)' of the rows whose timings other processes slowed (timing_slowed)."""
    return [f"{r['model']} {r['precision']} ({r['other_cores_busy']})" for r in rows if timing_slowed(r, device, cores)]


def mark_busy_speedups(rows: list[dict], device: str, cores: int | None) -> list[dict]:
    """`rows` (relative_figures') with speedup_busy True on those whose speedup divides two timings one of which
    other processes slowed (timing_slowed: this row's, or the teacher row's it is taken against): a slowed teacher
    makes every speedup read high (a user's 33x for a 6.5x student), a slowed student its own low."""
    teachers = {f"teacher {r['precision']}": r for r in rows if r["kind"] == "teacher"}
    for r in rows:
        over = teachers.get(r.get("speedup_over", ""))
        if r.get("speedup") is not None and r is not over and \
                any(x is not None and timing_slowed(x, device, cores) for x in (r, over)):
            r["speedup_busy"] = True
    return rows


def busy_note(rows: list[dict]) -> str:
    """The footnote of the speedups marked † (mark_busy_speedups), or ""."""
    if not any(r.get("speedup_busy") for r in rows):
        return ""
    return ("† Speedup from a timing that other processes slowed (this row's, or the teacher's it divides): "
            "unreliable; evaluate again on a quiet machine for speedups to publish.")


def warn_if_shared(device: str, rows: list[dict]) -> None:
    """A warning naming the rows slowed_rows finds."""
    slowed = slowed_rows(rows, device, os.cpu_count())
    if slowed:
        log.warning("other processes kept cores busy while speed was measured (of %d cores; a fifth slows timings): %s; "
                    "their timings are slow: evaluate on a quiet machine for figures to publish%s", os.cpu_count(),
                    ", ".join(slowed), "" if device != "cpu" or THREADS == 1 else " (where it cannot be quiet, --threads=1 "
                    "keeps torch's threads from waiting on each other's turn, which slows them most)")


def cpu_features() -> str:
    """The CPU's vector extensions that int8 and fp32 kernels depend on (AVX2, AVX-512, VNNI, AMX), from /proc/cpuinfo."""
    try:
        flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "avx_vnni", "amx"))]
    return " ".join(sorted(found)) or "no AVX2/AVX-512/VNNI"


def size_on_disk_mb(model, folder: Path | None) -> float:
    """Weights' size in MB: the saved weight files (model*.safetensors, pytorch_model*.bin, shards included; not the
    Trainer's training_args.bin), or (quantized models) the serialized state dict."""
    if folder is not None:
        files = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin") and f.name.startswith(("model", "pytorch_model"))]
        if files:
            return sum(f.stat().st_size for f in files) / 1e6
    import io

    import torch
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


def quantize(model, per_channel: bool = True):
    """int8 dynamic quantization of the Linear layers: weights int8 with a scale per output channel (per_channel)
    or one per tensor, activations quantized on the fly (in 7 bits: torch's x86 kernels reduce their range)."""
    import warnings

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch marks the quantized tensor API as deprecated
        return quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)


def time_requests(model, batches: list[dict], device: str, warmup: int, warmup_s: float = 0.0) -> list[float]:
    """Seconds each batch takes through `model`, one at a time (batch-1 latency).

    CPU: wall clock around each call. GPU: CUDA events recorded around each call and read after
    synchronising, so the time is the device's, not the launch's; before timing, the model is warmed
    up for at least `warmup` calls and `warmup_s` seconds (clocks, allocator, kernel selection).
    """
    import torch
    with torch.inference_mode():
        t0, n = time.perf_counter(), 0
        while n < warmup or (device == "cuda" and time.perf_counter() - t0 < warmup_s):
            model(**batches[n % len(batches)])
            n += 1
        times = []
        if device == "cuda":
            torch.cuda.synchronize()
            for b in batches:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(**b)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000)
        else:
            for b in batches:
                t = time.perf_counter()
                model(**b)
                times.append(time.perf_counter() - t)
    return times


def measure(model, tokenizer, texts: list[str], kd: dict, device: str, batch_size: int, latency_idx, warmup: int,
            warmup_s: float = 0.0) -> dict:
    """Predict every text and time each stage. Returns class probabilities (N, C) in input order and timings.

    tokenize: all texts at once (fast tokenizer, truncation as trained), reported per review;
    pipeline: models.logits_in_order over all texts (sort, pad, forward, rows back in order);
    forward: the model calls alone inside it, so pipeline/forward throughput shows the overhead;
    latency: batch-1 requests.
    """
    import torch
    model.to(device).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    settings = truncation_settings(kd, tokenizer, model.config)
    t0 = time.perf_counter()
    ids, _ = encode(tokenizer, texts, settings["max_length"], settings["truncation"], settings["head_tokens"])
    tokenize_s = time.perf_counter() - t0
    collate = PadCollator(tokenizer)
    forward_s = 0.0

    def timed_forward(batch):
        nonlocal forward_s
        sync()
        t = time.perf_counter()
        logits = model(**batch).logits
        sync()
        forward_s += time.perf_counter() - t
        return logits
    longest = sorted(range(len(ids)), key=lambda j: -len(ids[j]))[:warmup * batch_size]
    logits_in_order(model, collate, [ids[j] for j in longest], batch_size, device)   # warm-up: allocator, kernels
    sync()
    t_pipe = time.perf_counter()
    logits = logits_in_order(model, collate, ids, batch_size, device, forward=timed_forward)
    pipeline_s = time.perf_counter() - t_pipe
    probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    one = [{k: v.to(device) for k, v in collate([{"input_ids": ids[j]}]).items()} for j in latency_idx]
    times = time_requests(model, one, device, warmup, warmup_s)
    n = len(texts)
    return {"probs": probs, "tokenize_ms_per_review": 1000 * tokenize_s / n,
            "throughput": n / forward_s, "pipeline_throughput": n / pipeline_s,
            "pipeline_over_forward": forward_s / pipeline_s, **latency_stats(times)}


_KINDS = {"teacher", "distilled", "baseline", "student"}


def model_kind(name: str, kd: dict) -> str:
    return "teacher" if name == "teacher" else kd.get("kind", "student")


def precisions(name: str, kind: str, device: str) -> list[str]:
    """The rows one model gets: fp32 (unless it has a bf16 row and is not in FP32_MODELS), int8 (CPU,
    QUANTIZE, kind in QUANTIZE_KINDS), onnx-fp32 / onnx-int8 (CPU, ONNX, kind in ONNX_KINDS), bf16
    (HALF_PRECISION; last, as it converts the model in place)."""
    half = HALF_PRECISION == "always" or (HALF_PRECISION == "auto" and device == "cuda")
    fp32 = not half or kind == "teacher" or not [m for m in FP32_MODELS if m] or name in FP32_MODELS
    return (["fp32"] if fp32 else []) + (["int8"] if QUANTIZE and device == "cpu" and kind in QUANTIZE_KINDS else []) + \
        (["onnx-fp32", "onnx-int8"] if ONNX and device == "cpu" and kind in ONNX_KINDS else []) + \
        (["bf16"] if half else [])


def reference_rows(rows: list[dict]) -> list[dict]:
    """Each model's row that stands for it in comparisons: fp32, or its half-precision row when it has
    no fp32 one (FP32_MODELS)."""
    with_fp32 = {r["model"] for r in rows if r["precision"] == "fp32"}
    return [r for r in rows if r["precision"] == "fp32" or
            (r["precision"] in ("bf16", "fp16") and r["model"] not in with_fp32)]


def onnx_variant(folder: Path, config, precision: str):
    """The model's ONNX export (exported now if missing) in an ONNX Runtime session with torch's thread count."""
    import torch

    from model_card import card_after_export
    from onnx_runtime import FP32_FILE, INT8_FILE, OrtClassifier, export_model, is_exported, onnx_dir
    if not is_exported(folder):
        export_model(folder)          # the cards now, as export.py writes them: a stopped or validation run has them too
        card_after_export(folder, fresh=True)
    path = onnx_dir(folder) / (INT8_FILE if precision == "onnx-int8" else FP32_FILE)
    return OrtClassifier(path, config, torch.get_num_threads())


def to_half(model, device: str):
    """The model converted in place to bf16 (fp16 on GPUs without bf16): the last variant measured."""
    import torch
    dtype = torch.float16 if device == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False) \
        else torch.bfloat16
    return model.to(dtype), "bf16" if dtype == torch.bfloat16 else "fp16"


# ----------------------------------------------------------------------------------------------
# distilled vs baseline, over seeds
# ----------------------------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    """mean and sample standard deviation (0 for one value) of accuracies, and the values."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v),
            "values": [float(x) for x in v]}


def same_precision(r: dict, b: dict | None, rows: list[dict]) -> tuple[dict, dict | None]:
    """A distilled row and its baseline's in one precision: their reference rows, or, when only one of the two
    has an fp32 row (FP32_MODELS), both their half-precision rows."""
    if b is None or r["precision"] == b["precision"]:
        return r, b
    half = {(x["model"], x["precision"]): x for x in rows if x["precision"] in ("bf16", "fp16")}
    p = b["precision"] if b["precision"] != "fp32" else r["precision"]
    return half.get((r["model"], p), r), half.get((b["model"], p), b)


def paired_rows(rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """(distilled row, its baseline's row or None) for each distilled model: its reference row (fp32, else bf16:
    reference_rows) and the labels-only run with the same student_key, the two in one precision (same_precision)."""
    fp32 = reference_rows(rows)
    baselines = {}
    for r in fp32:
        if r["kind"] == "baseline":
            if student_key(r) in baselines:
                log.warning("baselines %s and %s are the same student, seed, steps and settings; pairing with the first",
                            baselines[student_key(r)]["model"], r["model"])
            baselines.setdefault(student_key(r), r)
    return [same_precision(r, baselines.get(student_key(r)), rows) for r in fp32 if r["kind"] == "distilled"]


def unpaired_baselines(rows: list[dict], pairs: list[tuple]) -> list[str]:
    """Why a distilled student found no baseline although `<name>-baseline` was evaluated: what of models.student_key
    differs (the student and its training settings, the seed, the optimizer steps), as one sentence each; such a pair
    was trained by two runs (an --overwrite stopped between the twins, a twin retrained alone)."""
    base = {r["model"]: r for r in reference_rows(rows) if r["kind"] == "baseline"}
    said = []
    for r, b in pairs:
        twin = base.get(f"{r['model']}-baseline")
        if b is not None or twin is None or twin.get("match_steps") is False:     # unmatched by design: its own steps
            continue
        ours, theirs = student_key(r), student_key(twin)
        what = [f"{n} {x} vs {y}" for n, x, y in zip(("student and training settings", "seed", "optimizer steps"), ours, theirs)
                if x != y]
        said.append(f"{twin['model']} is not the matched baseline of {r['model']} ({'; '.join(what)}): the two were "
                    f"trained by different runs; run a stopped --overwrite command again, or train the pair anew "
                    f"(distill_student.py with this experiment's config and flags, --only={r['model']} --overwrite=true)")
    return said


def onnx_rows_dropped(before: list[dict], rows: list[dict]) -> list[str]:
    """The models of this evaluation that had ONNX Runtime rows (onnx-*) in the previous results (`before`: its rows)
    and have none now (ONNX off this time)."""
    now = {r["model"] for r in rows if r["precision"].startswith("onnx")}
    measured = {r["model"] for r in rows}
    return sorted({r["model"] for r in before if r.get("precision", "").startswith("onnx")} & measured - now)


def keep_onnx_rows(cfg: dict, models: list[tuple[str, Path]], device: str) -> None:
    """With --onnx left unset on a CPU, turn ONNX on (here and in `cfg`, as recorded) when the previous results
    (results.json) hold ONNX Runtime rows of models evaluated now: an evaluation run by hand after one with
    onnx = true measures them again instead of dropping them, for the kinds it measured (its onnx_kinds, unless
    --onnx_kinds is given). --onnx=false drops them (warned: onnx_rows_dropped)."""
    global ONNX, ONNX_KINDS
    if ONNX and device != "cpu":       # ONNX Runtime's rows are CPU deployment's (and QUANTIZE's int8 rows too)
        log.warning("onnx = true: ONNX Runtime rows are measured on a CPU only, and this evaluation runs on %s: none "
                    "here, nor exports; export with export.py (any machine) and evaluate on a CPU with --device=cpu",
                    device)
    previous = Path(OUTPUT_DIR) / EXPERIMENT / f"{split_prefix()}results.json"
    if ONNX or device != "cpu" or cfg["_sources"].get("ONNX", "default") != "default" or not previous.is_file():
        return
    before = read_json(previous)
    had = {r["model"] for r in before["rows"] if r.get("precision", "").startswith("onnx")}
    kept = sorted(had & {n for n, _ in models})
    if kept:
        ONNX = cfg["ONNX"] = True
        kinds = (before.get("config") or {}).get("onnx_kinds")
        if kinds and cfg["_sources"].get("ONNX_KINDS", "default") == "default":
            ONNX_KINDS = cfg["ONNX_KINDS"] = list(kinds)
        log.info("measuring ONNX Runtime rows too, as the previous evaluation did (of %s); --onnx=false leaves them "
                 "out", ", ".join(kept))


def unfinished_students(models: list[tuple[str, Path]], config_file: str, root: Path | None = None) -> list[str]:
    """The students (and labels-only baselines) that the runs of the finished ones were asked for (their recorded
    run_config: STUDENTS, ONLY, BASELINE, flags included), or, none finished yet, that the config file lists, which
    are not finished, so not evaluated (a stopped distill_student.py); with --models=chosen, the chosen recipes'
    seeds and baselines in root/chosen.json not finished (a study stopped in its second phase); none with other
    --models, which pick."""
    from configurator import read_config_file
    finished = {n for n, _ in models}
    if "chosen" in MODELS and root is not None and (root / "chosen.json").is_file():
        chosen = read_json(root / "chosen.json")["students"]
        return [n for c in chosen for n in c["models"] + c["baselines"] if n not in finished]
    if any(MODELS):
        return []
    asked = [rc for _, folder in models          # the teacher's run asked for no students
             for rc in [read_json(folder / "config.json").get("sentiment_kd", {}).get("run_config") or {}] if "students" in rc]
    if not asked and config_file:
        values, _ = read_config_file(config_file, "distill_student")
        asked = [{k.lower(): v for k, v in values.items()}]
    names = [n for rc in asked for s in rc.get("students") or [] if isinstance(s, dict) and "name" in s
             and (s["name"] in (rc.get("only") or [""]) or not any(rc.get("only") or []))
             for n in [s["name"]] + ([f"{s['name']}-baseline"] if s.get("baseline", rc.get("baseline", True)) else [])]
    return list(dict.fromkeys(n for n in names if n not in finished))


def paired_tests(rows: list[dict], labels: np.ndarray) -> None:
    """Each distilled row paired with its baseline (paired_rows), both with predictions on the same texts, gets
    paired_test: {baseline, only_distilled (texts only it got right), only_baseline, p (mcnemar_p)}.
    labels: (N,) the true label ids; each row's pred: (N,) its predicted ids."""
    for r, b in paired_rows(rows):
        if b is not None and r.get("pred") is not None and b.get("pred") is not None:
            right, base = r["pred"] == labels, b["pred"] == labels
            mine, theirs = int((right & ~base).sum()), int((base & ~right).sum())
            r["paired_test"] = {"baseline": b["model"], "only_distilled": mine, "only_baseline": theirs,
                                "p": mcnemar_p(mine, theirs)}


def retention_intervals(rows: list[dict], labels: np.ndarray) -> None:
    """Each row but the fp32 teacher's, with its and the teacher's predictions on the same texts, gets retention_ci:
    [low, high] % (retention_interval). labels: (N,) the true label ids; each row's pred: (N,) its predicted ids."""
    t = next((r for r in rows if r["kind"] == "teacher" and r["precision"] == "fp32"), None)
    if t is None or t.get("pred") is None:          # a published teacher row: no predictions to pair with
        return
    for r in rows:
        if r is not t and r.get("pred") is not None:
            ci = retention_interval(r["pred"] == labels, t["pred"] == labels)
            r["retention_ci"] = None if ci is None else [round(ci[0], 2), round(ci[1], 2)]


def seed_groups(rows: list[dict], pairs: list[tuple] | None = None) -> list[dict]:
    """One entry per distilled recipe: its accuracy over seeds, its baselines' and the paired gain distilled -
    baseline per seed, the paired gain in macro F1 (f1_gain), as spread()s, and each seed's per-text test p
    (paired_tests; None where not measured) (pairs: paired_rows(rows), computed here unless given)."""
    groups: dict[str, dict] = {}
    for r, b in paired_rows(rows) if pairs is None else pairs:
        label, key = recipe(r)
        g = groups.setdefault(key, {"student": label, "spec": json.loads(key).get("entry"), "settings": r.get("settings") or {},
                                    "models": [], "seeds": [], "distilled": [], "baseline": [], "baselines": [], "gain": [],
                                    "f1_gain": [], "p": []})
        g["models"].append(r["model"])
        g["seeds"].append(r.get("seed"))
        g["distilled"].append(r["accuracy"])
        if b is not None:
            g["baselines"].append(b["model"])
            g["baseline"].append(b["accuracy"])
            g["gain"].append(r["accuracy"] - b["accuracy"])
            g["p"].append((r.get("paired_test") or {}).get("p"))
            if r.get("f1") is not None and b.get("f1") is not None:
                g["f1_gain"].append(r["f1"] - b["f1"])
    named = collections.Counter(g["student"] for g in groups.values())
    for g in groups.values():     # recipes of one label (L1 beside L1-s1 retrained otherwise): told apart by their models
        if named[g["student"]] > 1:
            g["student"] = g["models"][0] if len(g["models"]) == 1 else f"{g['student']} ({', '.join(g['models'])})"
    named = collections.Counter(g["student"] for g in groups.values())
    for g in groups.values():     # a model's name that is another recipe's label too: all its models named
        if named[g["student"]] > 1:
            g["student"] = ", ".join(g["models"])
    out = []
    for g in groups.values():
        for seed in sorted({s for s in g["seeds"] if s is not None and g["seeds"].count(s) > 1}):   # one measurement twice
            log.warning("%s: %s trained with the same recipe and seed (%s); the spread over seeds counts them as two",
                        g["student"], ", ".join(m for m, s in zip(g["models"], g["seeds"]) if s == seed), seed)
        paired = len(g["gain"]) == len(g["distilled"])
        out.append(g | {"distilled": spread(g["distilled"]),
                        "baseline": spread(g["baseline"]) if paired else None,
                        "gain": spread(g["gain"]) | {"t_test_p": paired_t_p(g["gain"])} if paired else None,
                        "f1_gain": spread(g["f1_gain"]) if paired and len(g["f1_gain"]) == len(g["gain"]) else None})
    return out


# ----------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------
_COLUMNS = [("model", "{}"), ("kind", "{}"), ("precision", "{}"), ("params_m", "{:.1f}"), ("size_mb", "{:.1f}"),
         ("accuracy", "{:.4f}"), ("f1", "{:.4f}"), ("recall_macro", "{:.4f}"), ("agreement", "{:.4f}"), ("compression", "{:.2f}x"),
         ("retention", "{:.2f}%"), ("efficiency", "{:.2f}"), ("latency_p50_ms", "{:.1f}"),
         ("latency_p95_ms", "{:.1f}"), ("throughput", "{:.0f}"), ("speedup", "{:.2f}x")]
_HEADERS = {"f1": "macro F1", "recall_macro": "macro recall", "params_m": "params (M)", "size_mb": "size (MB)", "latency_p50_ms": "p50 ms (bs 1)",
           "latency_p95_ms": "p95 ms (bs 1)", "throughput": "reviews/s", "speedup": "speedup"}


def text_noun(data: str) -> str:
    """What the evaluated texts are called in tables and titles: IMDb's are reviews."""
    return "reviews" if data == "IMDb" else "texts"


def markdown_table(rows: list[dict], noun: str = "reviews") -> str:
    """The results table; `noun` names the texts in the throughput column (reviews for IMDb, texts otherwise)."""
    ci = any(r.get("retention_ci") for r in rows)      # results made before it: the retention alone
    head = [_HEADERS.get(k, k).replace("reviews/s", f"{noun}/s") + (" (95% CI)" if ci and k == "retention" else "")
            for k, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ["" if r[k] is None else fmt.format(r[k]) for k, fmt in _COLUMNS]
        if r.get("retention_ci"):
            cells[[k for k, _ in _COLUMNS].index("retention")] += " ({:.1f}-{:.1f})".format(*r["retention_ci"])
        if r.get("speedup_busy"):
            cells[[k for k, _ in _COLUMNS].index("speedup")] += " †"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_table(groups: list[dict]) -> str:
    """Markdown: each distilled recipe against its labels-only baseline, accuracy in %, mean ± sd, the gain in
    macro F1 points (each class weighed equally: on unbalanced classes an accuracy gain can be a loss there), and
    each seed's per-text McNemar p (the test set's own noise; results before it: empty)."""
    pm = lambda s: f"{100 * s['mean']:.2f}" + (f" ± {100 * s['std']:.2f}" if s["n"] > 1 else "")   # noqa: E731
    signed = lambda s: ("+" if s["mean"] >= 0 else "") + pm(s) if s else ""                          # noqa: E731
    lines = ["| student | seeds | distilled acc (%) | baseline acc (%) | distilled - baseline (points) | "
             "macro F1: distilled - baseline (points) | McNemar p (per text), each seed |", "|---|---|---|---|---|---|---|"]
    for g in groups:
        ps = g.get("p") or []
        lines.append(f"| {g['student']} | {g['distilled']['n']} | {pm(g['distilled'])} | "
                     f"{pm(g['baseline']) if g['baseline'] else 'no baseline'} | {signed(g['gain'])} | "
                     f"{signed(g.get('f1_gain'))} | {' / '.join(f'{p:.2g}' for p in ps) if ps and None not in ps else ''} |")
    return "\n".join(lines)


def unlearned_gain_note(groups: list[dict], rows: list[dict]) -> str:
    """A warning beside the gains naming the recipes with a model, distilled or baseline, that predicted only some
    of the classes (classes_missed) in the rows the gains compare (paired_rows: fp32, else half precision; one_sided_note
    under the first table names any precision's): a gain over a model that has not learned measures that, not
    distillation; else ""."""
    missed = {x["model"] for pair in paired_rows(rows) for x in pair if x is not None and classes_missed(x)}
    said = [f"{g['student']} ({', '.join(m for m in g['models'] + g['baselines'] if m in missed)})"
            for g in groups if missed & set(g["models"] + g["baselines"])]
    return (f" **Not a measure of distillation: {'; '.join(said)} predicted only some of the classes**, so the gain "
            f"compares with a model that has not learned; train the students longer (README, *Your own data*) and "
            f"evaluate again." if said else "")


def f1_gain_note(groups: list[dict], floor: float = 0.005) -> str:
    """A warning naming the recipes whose accuracy gain and macro-F1 gain have opposite signs, the F1 one at least
    `floor` (0.005: half a point): such a gain comes from the common classes at a rare one's cost (a student that
    copies a teacher blind to a class), else ""."""
    said = [f"{g['student']} (accuracy {100 * g['gain']['mean']:+.2f}, macro F1 {100 * g['f1_gain']['mean']:+.2f})"
            for g in groups if g["gain"] and g.get("f1_gain") and abs(g["f1_gain"]["mean"]) >= floor
            and g["gain"]["mean"] * g["f1_gain"]["mean"] < 0]
    return (f" **Accuracy and macro F1 disagree on {', '.join(said)}**: the accuracy gain or loss comes from the common "
            f"classes, the other way on a rarer one (a student copies its teacher's neglect of a class: see the teacher's "
            f"per-class recall in results.json); judge by macro F1 when the classes are not balanced." if said else "")


def missed_on_validation(row: dict) -> str:
    """What an evaluation row's model left out of the classes on validation, as inference.py's default model reads
    it (models.unpredicted_classes of the val_classes_predicted / val_classes_in_labels its metrics.json recorded),
    "" when it predicted every class there; for a row of results made before those were recorded, what its test
    confusion matrix says (classes_missed)."""
    if row.get("val_classes_predicted") is None:
        return classes_missed(row)
    return unpredicted_classes(row, row.get("val_classes_in_labels") or len(row.get("confusion") or []))


def ship_precision(rows: list[dict]) -> str:
    """The precision whose rows every student has, to compare them in: fp32, else (on a GPU, FP32_MODELS giving fp32
    rows to a few) the half precision they all ran in; fp32 when none is common to all."""
    students = {r["model"] for r in rows if r["kind"] != "teacher"}
    return next((p for p in ("fp32", "bf16", "fp16") if students and students <= {
        r["model"] for r in rows if r["kind"] != "teacher" and r["precision"] == p}), "fp32")


def ship_choice(rows: list[dict], faster: float = 1.2) -> tuple[dict, dict, float] | None:
    """(best, fastest, se) among the students (distilled or not), in the precision all have (ship_precision), that
    predicted every class on validation (missed_on_validation) and recorded their validation accuracy and its size:
    `best` of the highest validation accuracy (ties: the faster), `fastest` the highest throughput among those within
    one standard error of it on validation (se: accuracy_se, points) and at least `faster` times best's throughput
    (two seeds of one architecture differ by timing noise alone), else best; so the choice reads no test figure
    (speed is no accuracy: it is measured on test texts). None without such a student."""
    precision = ship_precision(rows)
    pool = [r for r in rows if r["kind"] != "teacher" and r["precision"] == precision and r.get("val_accuracy") is not None
            and r.get("val_examples") and not missed_on_validation(r)]
    if not pool:
        return None
    best = max(pool, key=lambda r: (r["val_accuracy"], r["throughput"]))
    se = accuracy_se(best["val_accuracy"], best["val_examples"])
    faster = [r for r in pool if 100 * (best["val_accuracy"] - r["val_accuracy"]) <= se
              and r["throughput"] >= faster * best["throughput"]]
    return best, max(faster, key=lambda r: r["throughput"], default=best), se


def ship_note(rows: list[dict]) -> str:
    """What to ship, chosen on validation (ship_choice), with its test figures: the most accurate student, and the
    fastest one within a standard error of it (and at least 1.2x its throughput) when that is another."""
    choice = ship_choice(rows)
    if choice is None:
        return ""
    best, fast, se = choice

    def said(r):
        name = r["model"] if r["precision"] == "fp32" else f"{r['model']} in {r['precision']}"
        return (f"{name} (validation {r['val_accuracy']:.4f}; test {r['accuracy']:.4f}, "
                f"{r['retention']:.1f}% of the teacher's, at {r['speedup']:.2f}x its throughput"
                f"{', timed on a busy CPU' if r.get('speedup_busy') else ''})") if r.get("speedup") \
            else f"{name} (validation {r['val_accuracy']:.4f}; test {r['accuracy']:.4f})"
    text = f"\n\n**To ship**, chosen on validation: the most accurate student is {said(best)}"
    if fast is not best:
        text += (f"; within one standard error of it ({se:.1f} points on {best['val_examples']:,} validation texts), "
                 f"the fastest is {said(fast)}")
    failed = [f"{r['model']} predicted only {classes_missed(r)} classes" for r in [best] + [fast] * (fast is not best)
              if classes_missed(r)]        # seen after the choice, which reads no test figure: the card says so too
    return text + "." + (f" **But on test {' and '.join(failed)}: not learned, do not ship "
                         f"{'it' if len(failed) == 1 else 'them'}** (train again: README, *Your own data*)."
                         if failed else "")


def one_seed_note(groups: list[dict], texts: int) -> str:
    """For recipes compared at one seed: the test set's own noise, the standard error of one accuracy p on n texts,
    data_utils.accuracy_se (the largest over those recipes), and what to do about it; "" when every
    recipe with a baseline has several seeds."""
    single = [g["distilled"]["mean"] for g in groups if g["gain"] and g["distilled"]["n"] == 1]
    if not single or not texts:
        return ""
    se = max(accuracy_se(p, texts) for p in single)
    return (f" One seed: on {texts:,} texts one accuracy's standard error is ±{se:.1f} points, and another seed moves a "
            f"student too, so a gain below about twice that cannot be told from noise; train the recipe at more seeds (a `seed` per "
            f"student, or distill_student.py's BEST_SEEDS) and compare the mean ± sd.")


def paired_t_p(gains: list[float]) -> float | None:
    """Two-sided p of a paired t-test over seeds: gains (n,) distilled - baseline, one per seed, tested against 0.
        t = mean / (sd / sqrt(n)), sd with ddof 1;  p = 2 P(T > |t|), T ~ Student's t with n - 1 degrees of freedom
    (n = 2: p = 1 - 2 atan(|t|) / pi). None for fewer than 2 seeds; 0.0 for a nonzero gain with no spread. The README's
    rule (mean > 2 sd) is t > 2 sqrt(n): at 3 seeds p < 0.074, at 2 p < 0.22, hence this p beside it."""
    from scipy.stats import t as student_t    # scipy comes with scikit-learn
    v = np.asarray(gains, dtype=float)
    if len(v) < 2:
        return None
    sd = v.std(ddof=1)
    if sd == 0:
        return 1.0 if v.mean() == 0 else 0.0
    return float(2 * student_t.sf(abs(v.mean()) / (sd / math.sqrt(len(v))), len(v) - 1))


def seeds_note(groups: list[dict]) -> str:
    """For recipes compared at several seeds: whether each gain is shown, by the rule the README states (the mean
    more than twice the standard deviation of the paired gains, its sign then said), else that it is within its
    spread, each with its paired t-test p over the seeds (paired_t_p: the rule alone is weak at few seeds);
    "" when none has several seeds."""
    said = []
    for g in groups:
        if not g["gain"] or g["gain"]["n"] < 2:
            continue
        m, sd, n = 100 * g["gain"]["mean"], 100 * g["gain"]["std"], g["gain"]["n"]
        said.append(f"{g['student']} {m:+.2f} ± {sd:.2f}: " + (
            ("distillation helps" if m > 0 else "distillation hurts") if abs(m) > 2 * sd else "within its spread, not shown")
            + f" (paired t-test over {n} seeds: p = {paired_t_p(g['gain']['values']):.2g})")
    return (f" Over seeds (a gain is shown when its mean is more than twice its sd; at 3 seeds that rule is a paired "
            f"t-test at p < 0.074, so the p is given): {'; '.join(said)}." if said else "")


def chosen_table(students: list[dict]) -> str:
    """Markdown: each candidate of a study's choice (chosen.json, distill_student.py BEST_SEEDS) with its validation
    accuracy, its matched baseline's and the gain, in %, the chosen one marked; a candidate passed over for predicting
    only some classes on validation (its `missed`, recorded from 2 Dec 2026) is said so."""
    lines = ["| student | candidate | validation acc (%) | matched baseline | baseline acc (%) | gain (points) | chosen |",
             "|---|---|---|---|---|---|---|"]
    for c in students:
        lines += [f"| {c['student']} | {x['model']}{f' ({m})' if (m := x.get('missed')) else ''} | "
                  f"{100 * x['accuracy']:.2f} | {x['baseline']} | "
                  f"{100 * x['baseline_accuracy']:.2f} | {100 * x['gain']:+.2f} | {'yes' if x['model'] == c['chosen'] else ''} |"
                  for x in c["candidates"]]
    return "\n".join(lines)


def write_reports(root: Path, result: dict, prefix: str = "") -> None:
    """results.json / .csv / .md (prefix `validation-` for the validation split), written atomically."""
    rows = result["rows"]
    write_json(root / f"{prefix}results.json", result)
    with atomic_path(root / f"{prefix}results.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))   # a published row has more
        w.writeheader()      # per_class, confusion, settings as JSON (json.loads reads them back), not Python's repr
        w.writerows({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in rows)
    hw, noun = result["hardware"], text_noun(result["data"])
    gains = ("\n\n## Distilled vs labels-only baseline (same student, seed and optimizer steps)\n\n"
             + gains_table(result["groups"]) + "\n\nMean ± sample standard deviation over seeds; the gain is "
             "paired by seed." + unlearned_gain_note(result["groups"], rows) + seeds_note(result["groups"])
             + one_seed_note(result["groups"], result["texts"]) + f1_gain_note(result["groups"])) \
        if result["groups"] else ""
    if result.get("chosen"):
        gains += (f"\n\n## How the recipes were chosen: on validation, before any test {noun[:-1]} was read\n\n"
                  + chosen_table(result["chosen"]["students"]) + "\n\nChosen by "
                  + result["chosen"].get("by", "validation accuracy of each distilled entry minus its matched baseline's")
                  + f". Each chosen entry was then trained at "
                  f"{result['chosen']['best_seeds']} seeds in all, each beside its own baseline (chosen.json).")
    one_sided = " ".join(x for x in [one_sided_note(rows, noun).strip(), length_note(rows).strip(), unfinished_note(result),
                                     busy_note(rows)] if x)                                  # under the table
    text = (f"# {result['experiment']}: teacher vs students on {result['texts']:,} {result['data']} "
            f"{result['split']} {noun} ({', '.join(result['labels'])})\n\n" + markdown_table(rows, noun)
            + (f"\n\n{one_sided}" if one_sided else "") + gains
            + (ship_note(rows) if result["split"] == "test" else "") + "\n\n"
            f"Hardware: {hw['cpu']} ({hw['torch_threads']} torch threads), device {hw['device']}"
            + (f" ({hw['gpu']})" if "gpu" in hw else "") + f", torch {hw['torch']}"
            + (f", onnxruntime {hw['onnxruntime']}" if "onnxruntime" in hw else "")
            + (f"; CPU features: {hw['cpu_features']}" if "cpu_features" in hw else "")
            + (f"; load average {hw['load_average_1min']} when measuring began" if hw.get("load_average_1min") is not None else "")
            + (f"; other processes kept {hw['other_cores_busy']} of its {hw['cpu_count']} cores busy while measuring"
               if hw.get("other_cores_busy") is not None else "")
            + "".join(f" (over a fifth while timing {', '.join(s)}: their speed figures are slow)"
                      for s in [slowed_rows(rows, hw["device"], hw.get("cpu_count"))] if s)
            + ". " + result_shift_note(result, noun) +
            f"Latency: batch 1, after {result['config']['warmup']} warm-up requests, over "
            f"{min(result['config']['latency_samples'], result['texts'])} {result['split']} {noun}. Throughput: model forward at batch "
            f"{result['config']['eval_batch_size']}, batches sorted by length, tokenization excluded "
            f"(timed separately: `tokenize_ms_per_review` in results.json). Speedup: throughput over the "
            f"fp32 teacher's{half_note(rows)}. Compression: teacher parameters / parameters (an int8 row counts its "
            f"fp32 model's: its smaller file shows in size MB). Retention: accuracy / teacher accuracy (with its 95% "
            f"interval on the same texts, paired: retention_interval). Efficiency: "
            f"retention / size fraction{half_note(rows, 'size')}. Written by evaluate_models.py.\n"
            + "".join(f"\nThe teacher row is published in {r['published']} (its speed measured there"
                      + (f", {r['no_speedups']}: no speedups" if r.get("no_speedups") else "")
                      + "; no agreement figures without its predictions).\n" for r in rows[:1] if r.get("published")))
    with atomic_path(root / f"{prefix}results.md") as tmp:
        tmp.write_text(text)


def unfinished_note(result: dict) -> str:
    """Under the first table: the configured students not finished, so missing from it, the baselines that are not
    their twin's matched ones, and a stopped --overwrite command's models not retrained yet (publish:
    unfinished_students, unpaired_baselines, warn_if_overwrite_unfinished), else ""."""
    missing, unpaired = result.get("not_finished") or [], result.get("unpaired") or []
    whose = "the study's seeds in chosen.json" if "chosen" in result else "asked for by the runs that trained the others"
    stale = result.get("stale") or ""
    return " ".join(([f"**Not finished, so not here**: {', '.join(missing)} ({whose})."]
                     if missing else []) + [f"**Not paired**: {u}." for u in unpaired]
                    + ([f"**Warning**: {stale[0].upper()}{stale[1:]}."] if stale else []))


def result_shift_note(result: dict, noun: str) -> str:
    """shift_note for a test evaluation's result (its class_shares; none in results written before they were)."""
    shares = result.get("class_shares") or {}
    return shift_note(result["labels"], shares["validation"], shares["test"], noun) if "test" in shares else ""


def one_sided_note(rows: list[dict], noun: str) -> str:
    """A warning naming the rows that predicted only some of the classes on these texts (a model that has not
    learned: its accuracy is the share of the classes it predicts; the teacher's first when it is one of them), and
    one naming those that all but never recognised a class they do predict (classes_neglected), else ""."""
    some = [f"{r['model']} ({r['precision']}: {classes_missed(r)})" for r in rows if classes_missed(r)]
    few = [f"{r['model']} ({r['precision']}: {recalled(neglected)})" for r in rows if (neglected := classes_neglected(r))]
    blind = any(r.get("kind") == "teacher" and classes_missed(r) for r in rows)
    return ((f"**Warning: {', '.join(some)} predicted only some of the classes on these {noun}**: such a model has not "
             f"learned; give it more steps (README, *Your own data*)" + (
                 ", the teacher first: students distilled from it learn to miss the classes it misses" if blind else "")
             + ". " if some else "")
            + (f"**Warning: {', '.join(few)} all but never recognised a class on these {noun}** (recall under 5%): look "
               f"at its confusion matrix (results.json) before shipping it. " if few else ""))


def length_note(rows: list[dict]) -> str:
    """A note naming the students that read fewer tokens than the teacher (their max_length, from their records): their
    speedup is partly the shorter input's, not the smaller model's, and their accuracy is on less of each text; else ""."""
    teacher = next((r.get("max_length") for r in rows if r.get("kind") == "teacher"), None)
    short = {r["model"]: r["max_length"] for r in rows if r.get("kind") != "teacher" and teacher and r.get("max_length")
             and r["max_length"] < teacher}
    return (f"**Shorter inputs**: {', '.join(f'{m} ({n})' for m, n in short.items())} read at most that many tokens "
            f"against the teacher's {teacher}: their speedups come partly from the shorter inputs, and their accuracy "
            f"is on less of each text. " if short else "")


def half_note(rows: list[dict], what: str = "") -> str:
    """How the speedups (or, with `what`, that figure) of half-precision rows are taken (relative_figures), for
    the results' footnote."""
    half = next((r["precision"] for r in rows if r["precision"] in ("bf16", "fp16")), None)
    of = f"{what} " if what else ""
    return f" ({half} rows: {of}over the teacher's {half} row, and that one over the fp32 teacher's)" if half else ""


def gain_lines(groups: list[dict], key: str) -> dict[str, list[tuple[float, dict]]]:
    """Recipes that differ only in the setting `key`, as lines {label: [(value, group), ...]} sorted by
    value, for plotting the gain against that lever (lines of one point are left out)."""
    lines: dict[str, list] = {}
    for g in groups:
        if not g["gain"] or key not in g["settings"]:
            continue
        rest = {k: v for k, v in g["spec"].items() if k not in (key, "baseline")}
        label = " ".join([str(rest.pop("model", "teacher")).split("/")[-1]] + [f"{k}={v}" for k, v in sorted(rest.items())])
        lines.setdefault(label, []).append((g["settings"][key], g))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in lines.items() if len(v) > 1}


def plot_gains(groups: list[dict], path: Path, title: str, by: str = "") -> bool:
    """Bars: each distilled recipe's gain over its baseline in accuracy points, with the standard
    deviation over seeds as error bars; with `by` (a student setting, GAIN_PLOT_BY), a second panel
    draws the gain against that setting for the recipes that differ only in it. Whether it drew one: with no
    distilled-baseline pair there is none, and a gains plot left at `path` by an earlier evaluation is removed (it
    would show the gains of models these results no longer hold)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = [g for g in groups if g["gain"]]
    if not groups:
        path.unlink(missing_ok=True)
        return False
    lines = gain_lines(groups, by) if by else {}
    fig, axes = plt.subplots(1, 2 if lines else 1, figsize=(16 if lines else 9, 1.6 + 0.5 * len(groups)), squeeze=False)
    ax = axes[0, 0]
    y = np.arange(len(groups))
    gain = [100 * g["gain"]["mean"] for g in groups]
    err = [100 * g["gain"]["std"] for g in groups]
    ax.barh(y, gain, color=["#1f77b4" if v >= 0 else "#d62728" for v in gain])
    seeds = [i for i, g in enumerate(groups) if g["gain"]["n"] > 1]       # one seed has no spread: no error bar
    if seeds:
        ax.errorbar([gain[i] for i in seeds], y[seeds], xerr=[err[i] for i in seeds], fmt="none", ecolor="black", capsize=4)
    for i, g in enumerate(groups):
        ax.text(max(gain[i] + err[i], 0), i, f"  {gain[i]:+.2f}" + (f" ± {err[i]:.2f} ({g['gain']['n']} seeds)"
                                                                   if g["gain"]["n"] > 1 else ""), va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    low = min(0, min(gain) * 1.2, min(gain[i] - err[i] for i in seeds) * 1.1 if seeds else 0)   # whole error bars
    ax.set_xlim(low, max(max(g + e for g, e in zip(gain, err)), 0.5) * 1.45)
    ax.set_yticks(y, [g["student"] for g in groups])
    ax.invert_yaxis()
    ax.set_xlabel("distilled - labels-only baseline (accuracy points; same student, seed and optimizer steps)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if lines:
        ax = axes[0, 1]
        for label, points in lines.items():
            x = [v for v, _ in points]
            ax.errorbar(x, [100 * g["gain"]["mean"] for _, g in points], yerr=[100 * g["gain"]["std"] for _, g in points],
                        marker="o", capsize=4, label=label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel(by)
        ax.set_ylabel("distilled - baseline (accuracy points)")
        ax.set_title(f"gain against {by}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def confusion_rows(rows: list[dict]) -> list[dict]:
    """The fp32 teacher, the distilled student of the best validation accuracy among those that predicted every class
    on validation (missed_on_validation; reference rows; any, when none did), chosen without a test figure, as
    inference.py's default is (test accuracy breaks ties and orders results made before val_accuracy was recorded),
    and the baseline of that student."""
    ref = reference_rows(rows)
    picked = [r for r in ref if r["kind"] == "teacher"][:1]
    distilled = sorted((r for r in ref if r["kind"] == "distilled"),
                       key=lambda r: (bool(missed_on_validation(r)), -(r.get("val_accuracy") or 0), -r["accuracy"]))[:1]
    if distilled:
        key = student_key(distilled[0])
        picked += distilled + [r for r in ref if r["kind"] == "baseline" and student_key(r) == key][:1]
    return picked


def plot_confusions(axes, rows: list[dict], names: list[str] | None) -> None:
    """Row-normalised confusion matrices (true class down, predicted across) of confusion_rows()."""
    picked = confusion_rows(rows)
    for ax, r in zip(axes, picked):
        m = np.asarray(r["confusion"], dtype=float)
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v > 0.6 else "black")
        labels = names or [str(i) for i in range(len(m))]
        crowded = sum(len(n) for n in labels) > 24      # side by side they would run together: slanted
        ax.set_xticks(range(len(m)), labels, fontsize=8, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_yticks(range(len(m)), labels, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        kind = "" if r["kind"] == r["model"] else f" ({r['kind']})"          # "teacher (teacher)" said twice
        ax.set_title(f"{r['model']}{kind}: recall per class", fontsize=9)
    for ax in axes[len(picked):]:
        ax.axis("off")


def accuracy_label(row: dict) -> str:
    """A dashboard accuracy bar's label: accuracy (retention %), and a model that predicted only some of its classes
    said so (results.md's warning, on the picture people share without the table)."""
    missed = classes_missed(row)
    return f"{row['accuracy']:.4f} ({row['retention']:.2f}%)" + (f", predicts only {missed} classes!" if missed else "")


def plot_dashboard(rows: list[dict], path: Path, title: str, split: str = "test", names: list[str] | None = None,
                   noun: str = "reviews") -> None:
    """Panels: accuracy, size, batch-1 latency per model, accuracy vs throughput (`noun`/s: the data's texts), and
    the confusion matrices (rows: true class, normalised) of the teacher, the distilled student best on validation and
    its baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"teacher": "#d62728", "distilled": "#1f77b4", "baseline": "#7f7f7f", "student": "#2ca02c"}
    labels = [f"{r['model']}" + (f" ({r['precision']})" if r["precision"] != "fp32" else "") for r in rows]
    color = [colors.get(r["kind"], "#2ca02c") for r in rows]
    alpha = [0.45 if r["precision"] != "fp32" else 1.0 for r in rows]
    y = np.arange(len(rows))
    matrices = any(r.get("confusion") for r in confusion_rows(rows))   # none in results.json before they were kept
    fig = plt.figure(figsize=(15, 4 + 0.45 * len(rows) + 3.6 * matrices))
    grid = fig.add_gridspec(2 + matrices, 6, height_ratios=[4 + 0.45 * len(rows)] * 2 + [7.2] * matrices)
    axes = np.array([[fig.add_subplot(grid[i, 0:3]), fig.add_subplot(grid[i, 3:6])] for i in range(2)])
    teacher = next(r for r in rows if r["kind"] == "teacher" and r["precision"] == "fp32")

    def bars(ax, key, xlabel, fmt):
        vals = [r[key] for r in rows]
        for i, (v, c, a) in enumerate(zip(vals, color, alpha)):
            ax.barh(i, v, color=c, alpha=a, hatch="//" if rows[i]["kind"] == "baseline" else None, edgecolor="white")
            ax.text(v, i, " " + fmt(rows[i]), va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_xlim(0, max(vals) * 1.3)
        ax.grid(axis="x", alpha=0.3)

    acc = [r["accuracy"] for r in rows]
    bars(axes[0, 0], "accuracy", f"{split} accuracy", accuracy_label)
    axes[0, 0].set_xlim(max(0, min(acc) - 0.05), min(1, max(acc) + 0.03))
    axes[0, 0].axvline(teacher["accuracy"], color=colors["teacher"], ls="--", lw=1)
    axes[0, 0].set_title("Accuracy (retention of the teacher's)")
    bars(axes[0, 1], "size_mb", "size on disk (MB)", lambda r: f"{r['size_mb']:.3g} MB, {r['compression']:.2f}x compression")
    axes[0, 1].set_title("Size and compression")
    bars(axes[1, 0], "latency_p50_ms", "latency, batch 1, p50 (ms)", lambda r: f"{r['latency_p50_ms']:.1f} ms")
    axes[1, 0].set_title("Latency (lower is better)")
    ax = axes[1, 1]
    for r, c, a in zip(rows, color, alpha):
        ax.scatter(r["throughput"], r["accuracy"], s=60, color=c, alpha=a,
                   marker="*" if r["kind"] == "teacher" else ("s" if r["kind"] == "baseline" else "o"))
    ax.set_xscale("log")
    ax.margins(y=0.1)                                       # room for the labels of the top and bottom points
    ax.set_xlabel(f"throughput ({noun}/s, batch {rows[0].get('batch', '')}, log scale)")
    ax.set_ylabel(f"{split} accuracy")
    ax.set_title("Accuracy vs speed (up and right is better)")
    ax.grid(alpha=0.3)
    if matrices:
        plot_confusions([fig.add_subplot(grid[2, 2 * i:2 * i + 2]) for i in range(3)], rows, names)
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=colors["teacher"], label="teacher"), Patch(color=colors["distilled"], label="distilled student"),
                        Patch(facecolor=colors["baseline"], hatch="//", label="labels-only baseline"),
                        Patch(color="#888888", alpha=0.45, label="int8 / ONNX / bf16 (lighter)")], loc="lower center", ncol=4, frameon=False)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))       # first: the labels are placed in the axes' final size
    label_points(ax, [(r["throughput"], r["accuracy"]) for r in rows], labels,
                 [r["kind"] == "baseline" for r in rows])   # a baseline often sits right next to its distilled twin
    save_figure(fig, path)


def label_points(ax, points: list[tuple], labels: list[str], below: list[bool], size: float = 8) -> None:
    """Label each scattered point (x, y in data units) beside it (to its right, or to its left where the label would
    leave the axes), a baseline's (`below`) under its point, the others over it, and no two labels on top of each
    other: labels whose spans across overlap (about 0.6 `size` points wide a character) are moved apart in height by
    spread_labels (in points on the page), a label moved off its point joined to it by a thin line."""
    to_points = 72 / ax.figure.dpi
    ax.get_xlim(), ax.get_ylim()                    # settles a pending autoscale: the limits the labels are placed in
    xy = ax.transData.transform(np.asarray(points, dtype=float)) * to_points         # (N, 2) points on the page
    right_edge = ax.get_window_extent().x1 * to_points
    width = np.array([0.6 * size * len(lab) for lab in labels])
    left = xy[:, 0] + 5 + width > right_edge                     # 5 points: clear of the marker (s=60: ~8 across)
    start = np.where(left, xy[:, 0] - 5 - width, xy[:, 0] + 5)
    wanted = xy[:, 1] + np.where(below, -size - 2, 3)             # where each label's baseline would sit
    height = wanted.copy()
    for group in overlapping_spans(list(zip(start, start + width))):
        height[group] = spread_labels(wanted[group], gap=size + 2)
    line = dict(arrowstyle="-", color="0.6", lw=0.5, shrinkA=0, shrinkB=4)
    for point, y, lab, h, moved, on_left in zip(points, xy[:, 1], labels, height, abs(height - wanted), left):
        ax.annotate(lab, point, fontsize=size, xytext=(-5 if on_left else 5, h - y), textcoords="offset points",
                    ha="right" if on_left else "left", va="baseline", arrowprops=line if moved > size / 2 else None)


def overlapping_spans(spans: list[tuple]) -> list[list[int]]:
    """The indices of `spans` ((start, end) pairs) grouped by overlap: spans that overlap, directly or through
    others, share a group; each group in start order, the groups by their first start."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    groups, end = [], -math.inf
    for i in order:
        start, stop = spans[i]
        if start > end:             # clear of every span so far: a new group
            groups.append([])
        groups[-1].append(i)
        end = stop if start > end else max(end, stop)
    return groups


def spread_labels(y, gap: float) -> np.ndarray:
    """Heights (N,) for labels wanted at heights y (N,), each at least `gap` from the next in height order and as
    near its own y as that allows: min sum (h_i - y_i)^2 subject to h_(i+1) - h_(i) >= gap (ranked by y). With q_i =
    h_(i) - i * gap the constraint is q nondecreasing, so q is the isotonic regression of y_(i) - i * gap (labels that
    crowd share their mean: two labels at 0, gap 10, go to -5 and 5)."""
    from sklearn.isotonic import isotonic_regression
    y = np.asarray(y, dtype=float)
    order = np.argsort(y, kind="stable")
    steps = gap * np.arange(len(y))
    heights = np.empty_like(y)
    heights[order] = isotonic_regression(y[order] - steps) + steps
    return heights


# ----------------------------------------------------------------------------------------------
def selected_models(cfg: dict | None = None) -> list[tuple[str, Path]]:
    """(name, folder) of the models to evaluate, teacher first; also the check, before anything is
    written, that the settings and the experiment's models are usable."""
    root = Path(OUTPUT_DIR) / EXPERIMENT
    default_device(DEVICE)
    for name, kinds in (("quantize_kinds", QUANTIZE_KINDS), ("onnx_kinds", ONNX_KINDS)):
        bad = set(kinds) - _KINDS
        if bad:
            raise UsageError(f"--{name}: unknown kind {sorted(bad)[0]!r}; use some of {', '.join(sorted(_KINDS))}")
    teacher_dir = None if TEACHER_RESULTS else teacher_folder(OUTPUT_DIR, EXPERIMENT, TEACHER_DIR)
    theirs = students_teacher(root) if teacher_dir and not TEACHER_DIR and not is_finished(teacher_dir) else None
    if theirs:          # students of another experiment's teacher (distilled with --teacher_dir)
        teacher_dir = theirs
        if cfg is not None:     # said once: the check's lines reach the log, then main() calls this again
            log.info("teacher: %s, the one the students of %s were distilled from (%s has none; --teacher_dir picks "
                     "another)", teacher_dir, root, root)
    models = find_models(root, teacher_dir)
    if TEACHER_RESULTS and not Path(TEACHER_RESULTS).is_file():
        raise UsageError(f"--teacher_results={TEACHER_RESULTS}: no such file; give a published results.json (e.g. "
                         f"outputs/full/results.json)")
    if not models or (models[0][0] != "teacher" and not TEACHER_RESULTS):
        raise UsageError(f"no finished teacher at {teacher_dir} (a model folder with weights); " +
                         (f"teacher_dir = {TEACHER_DIR}: give the folder of a finished teacher (outputs/<exp>/teacher; train that "
                          f"experiment's teacher first if it has none)"
                          if TEACHER_DIR else f"run fine_tuning_teacher.py (and distill_student.py) with "
                          f"--experiment={EXPERIMENT} first, or set --teacher_dir") +
                         " (students of published soft labels: --teacher_results=outputs/<exp>/results.json)")
    wanted = [n for m in MODELS if m for n in (chosen_models(root, {n for n, _ in models}) if m == "chosen" else [m])]
    if wanted:
        unknown = set(wanted) - {n for n, _ in models}
        if unknown:
            raise UsageError(f"--models: no model {sorted(unknown)[0]!r} in {root}; found {', '.join(n for n, _ in models)}")
        found = {n for n, _ in models}
        twins = [f"{n}-baseline" for n in wanted if f"{n}-baseline" in found and f"{n}-baseline" not in wanted]
        if twins:        # a distilled student is shown beside its labels-only baseline (distill_student.py names it so)
            log.info("--models: with the labels-only baseline%s %s", "s" * (len(twins) > 1), ", ".join(twins))
        models = [m for m in models if m[0] == "teacher" or m[0] in wanted + twins]   # the teacher is the reference
    kd = read_json(models[0][1] / "config.json").get("sentiment_kd", {})   # the teacher's, or a student's (the same
    spec = data_spec(kd)                                                    # data: distillation checks it)
    check_data(spec, ("train", "test"))
    data = load_splits(spec)
    check_digests(kd.get("data_digests") or {}, data, (SPLIT,), models[0][1])   # a teacher records them
    names = data.label_names
    for name, folder in models:
        check_labels(name, folder, model_config(str(folder)), names)
    if models[0][0] == "teacher":
        check_teachers(models)
    return models


def chosen_models(root: Path, finished: set[str]) -> list[str]:
    """--models=chosen: the names in root/chosen.json (distill_student.py, BEST_SEEDS): each chosen recipe at each
    seed, and their matched baselines; those not finished yet (a stopped run) are left out with a warning."""
    path = root / "chosen.json"
    if not path.is_file():
        raise UsageError(f"--models=chosen: no {path}: distill_student.py with --best_seeds=3 (or more) writes it once "
                         f"every entry of its sweep has finished; or name the models")
    students = read_json(path)["students"]
    log.info("--models=chosen: %s", "; ".join(f"{c['student']}: {', '.join(c['models'])}" for c in students))
    names = [m for c in students for m in c["models"] + c["baselines"]]
    if set(names) - finished:
        log.warning("--models=chosen: %s not finished yet; evaluating the others", ", ".join(n for n in names if n not in finished))
    if not set(names) & finished:
        raise UsageError(f"--models=chosen: {path} names no finished model" + ("" if names else " (no entry of the sweep "
                         "had a matched baseline to be chosen by)") + "; run distill_student.py again, or name the models")
    return [n for n in names if n in finished]


def check_teachers(models: list[tuple[str, Path]]) -> None:
    """UsageError for a student that learned from another training of the teacher than the one evaluated beside
    it (retrained since: models.run_fingerprint): its retention and agreement would be against a teacher it never
    saw. Students of older runs record no teacher and are not checked."""
    for name, folder in models[1:]:
        other = learned_from_elsewhere(folder, models[0][1])
        if other and teacher_retrained_since(folder, models[0][1]):
            raise UsageError(f"student {name} ({folder}) learned from the teacher {other}, not {models[0][1]}: "
                             f"--teacher_dir={other} evaluates it beside its own teacher; or leave it out (--models)")
        if teacher_retrained_since(folder, models[0][1]):
            spec = read_json(folder / "config.json").get("sentiment_kd", {}).get("student") or {"name": name}
            raise UsageError(f"student {name} ({folder}) learned from another training of the teacher than {models[0][1]} "
                             f"(retrained since); retrain it (distill_student.py --overwrite=true, with --only={spec['name']} "
                             f"for it alone, and --students='[{toml_inline(spec)}]' if your config does not list it) or "
                             f"leave it out (--models)")


def variant(precision: str, model, folder: Path, device: str):
    """(the model to measure for one row, its precision label): fp32 as is, int8 dynamic-quantized, an
    ONNX Runtime session, or bf16 (fp16 on GPUs without bf16; converts `model` in place, so it comes last)."""
    if precision == "int8":
        return quantize(model, QUANTIZE_PER_CHANNEL), precision
    if precision.startswith("onnx"):
        return onnx_variant(folder, model.config, precision), precision
    if precision == "bf16":
        return to_half(model, device)
    return model, precision


def model_rows(name: str, folder: Path, split: dict, device: str, preds_dir: Path) -> list[dict]:
    """One result row per precision of one model (precisions()): what it predicts on the split's texts
    and how fast; its predictions go to preds_dir/<model>[-<precision>].csv. Rows carry `pred` (N,)
    until relative_figures() has compared them with the teacher's."""
    kd = read_json(folder / "config.json").get("sentiment_kd", {})
    metrics = read_json(folder / "metrics.json")
    model, tok = load_classifier(str(folder))
    params, kind, names, rows = count_parameters(model), model_kind(name, kd), split["names"], []
    for precision in precisions(name, kind, device):
        m, precision = variant(precision, model, folder, device)
        before = cpu_sample()
        r = measure(m, tok, split["texts"], kd, device, EVAL_BATCH_SIZE, split["latency_idx"], WARMUP, GPU_WARMUP_S)
        others = others_cores(before, cpu_sample())
        probs = r.pop("probs")
        pred = probs.argmax(-1)
        scores = classification_metrics(pred, split["labels"])
        rows.append({"model": name, "kind": kind, "precision": precision, "params_m": params / 1e6, "params": params,
                     "size_mb": getattr(m, "size_mb", None) or size_on_disk_mb(m, folder if precision == "fp32" else None),
                     "accuracy": scores["accuracy"], "f1": scores["f1"], "precision_macro": scores["precision"],
                     "recall_macro": scores["recall"], "latency_p50_ms": r["p50_ms"], "latency_p95_ms": r["p95_ms"],
                     "latency_mean_ms": r["mean_ms"], "throughput": r["throughput"],
                     "pipeline_throughput": r["pipeline_throughput"], "pipeline_over_forward": r["pipeline_over_forward"],
                     "tokenize_ms_per_review": r["tokenize_ms_per_review"], "val_accuracy": metrics.get("val_accuracy"),
                     "val_examples": metrics.get("val_examples"), "val_classes_predicted": metrics.get("val_classes_predicted"),
                     "val_classes_in_labels": metrics.get("val_classes_in_labels"),
                     "batch": EVAL_BATCH_SIZE, "device": device, **student_fields(kd, metrics), "folder": str(folder),
                     "other_cores_busy": others, **per_class_metrics(pred, split["labels"], names), "pred": pred})
        write_predictions(preds_dir / f"{name if precision == 'fp32' else f'{name}-{precision}'}.csv",
                          split["labels"], pred, probs, names)
        log.info("%s %s: accuracy %.4f, p50 %.1f ms, %.0f texts/s", name, precision, scores["accuracy"],
                 r["p50_ms"], r["throughput"])
        missed = classes_missed(rows[-1])
        if missed:
            log.warning("%s %s predicted only %s classes: it has not learned", name, precision, missed)
        neglected = classes_neglected(rows[-1])
        if neglected:
            log.warning("%s %s all but never recognised a class (%s)", name, precision, recalled(neglected))
        del m
    del model
    gc.collect()
    return rows


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as a PNG atomically (atomic_path) and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_texts(path: Path, split: dict) -> None:
    """index, true label, text, and where it came from (source: the data's split; row: its position there from 0)
    of every evaluated text (atomically): what the predictions' index refers to, and the row of your data it is."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "text", "source", "row"])
        w.writerows([i, split["names"][y], t, s, r] for i, (y, t, s, r)
                    in enumerate(zip(split["labels"], split["texts"], split["sources"], split["rows"])))


def write_predictions(path: Path, labels: np.ndarray, pred: np.ndarray, probs: np.ndarray, names: list[str]) -> None:
    """index, true label, predicted label and each class's probability, one line per text (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "pred", *[f"p_{n}" for n in names]])
        w.writerows([i, names[y], names[k], *p] for i, (y, k, p) in enumerate(zip(labels, pred, np.round(probs, 5).tolist())))


def machine(hw: dict) -> tuple:
    """What speed figures depend on: the device and the GPU, or on a CPU the processor and the threads used; and the
    torch build (its kernels: a published teacher row timed under another torch is not compared)."""
    where = (hw["device"], hw.get("gpu")) if hw["device"] == "cuda" else (hw["device"], hw["cpu"], hw["torch_threads"])
    return where + (f"torch {hw.get('torch')}",)


SPEED_SETTINGS = ("eval_batch_size", "latency_samples", "warmup", "gpu_warmup_s")   # how throughput and latency are measured


def published_teacher(path: Path, split: dict, device: str, models: list = ()) -> list[dict]:
    """The teacher rows of a published results.json (TEACHER_RESULTS): its fp32 row, the reference, and its
    half-precision row if it has one, after checking they were evaluated on the same texts (data, split, count,
    labels, and the digest of the texts and labels) and are of the teacher training the students `models` learned
    from (check_published_teacher); without predictions (no agreement). Measured on another machine or with other
    SPEED_SETTINGS, they give no speedups (`no_speedups` says why)."""
    result = read_json(path)
    check_published_teacher(path, result.get("teacher_run"), models)
    teacher = [r for r in result.get("rows", []) if r.get("kind") == "teacher" and r.get("precision") in ("fp32", "bf16", "fp16")]
    if not any(r["precision"] == "fp32" for r in teacher):
        raise UsageError(f"--teacher_results={path}: no fp32 teacher row in it; give the results.json of an evaluated teacher")
    ours = {"data": split["data"], "split": SPLIT, "texts": len(split["texts"]), "labels": split["names"],
            "texts_digest": split["digest"]}
    if "texts_digest" not in result:
        log.warning("%s has no digest of its texts (written before they were recorded): only their count is checked", path)
        del ours["texts_digest"]
    for key, value in ours.items():
        if not same_setting(key, result.get(key), value):
            raise UsageError(f"--teacher_results={path}: its teacher was evaluated with {key} = {result.get(key)!r}, here "
                             f"{value!r}; evaluate on the same texts (--split, --test_size, --seed) or give other results")
    there, here = machine(result["hardware"]), machine(hardware(device))
    theirs = result.get("config", {})
    other = [f"{k} = {theirs.get(k)!r}, here {globals()[k.upper()]!r}" for k in SPEED_SETTINGS if theirs.get(k) != globals()[k.upper()]]
    why = f"measured on {', '.join(map(str, there))}; this machine is {', '.join(map(str, here))}" if there != here else \
        f"measured with {other[0]}" if other else ""
    log.info("teacher rows: published in %s%s", path, f" ({why}: no speedups against them)" if why else "")
    return [r | {"pred": None, "published": str(path), "no_speedups": why} for r in teacher]


def check_published_teacher(path: Path, run: str | None, models: list) -> None:
    """UsageError when a student learned from another training of the teacher than the one a published
    results.json evaluated (its teacher_run: models.run_fingerprint; a soft-label student's, the run its soft
    labels record): its retention and gain would be against a teacher it never saw. Results written before they
    named their teacher's run are not checked (a warning says so)."""
    if run is None:
        log.warning("%s does not name its teacher's training run (written before it was recorded): which teacher the "
                    "students learned from is not checked", path)
        return
    for name, folder in models:
        theirs = teacher_run_of(folder)
        if theirs and theirs != run:
            raise UsageError(f"--teacher_results={path}: student {name} ({folder}) learned from another training of the "
                             f"teacher than the one evaluated there; give the results of its own teacher, or leave it out "
                             f"(--models)")


def relative_figures(rows: list[dict]) -> list[dict]:
    """Each row with its figures against the fp32 teacher's row (agreement, compression, retention) and its
    speedups and efficiency, and without its predictions. Speedups and the size in efficiency of a half-precision
    row are against the teacher's half-precision row (a GPU runs every model in bf16: against the fp32 teacher,
    bf16's own gains would count as the student's, and a bf16-only row would not compare with an fp32 one), the
    teacher's own against its fp32 row; of every other row (fp32, int8, ONNX: what a deployed student gains over
    the teacher as trained) against the fp32 teacher. A published teacher row has no predictions: agreement is
    then None."""
    t = next(r for r in rows if r["kind"] == "teacher" and r["precision"] == "fp32")
    half = next((r for r in rows if r["kind"] == "teacher" and r["precision"] in ("bf16", "fp16")), None)
    for r in rows:
        s = half if half is not None and r["precision"] == half["precision"] and r is not half else t
        fast = not s.get("no_speedups")
        r |= {"agreement": None if t["pred"] is None else float((r["pred"] == t["pred"]).mean()),
              "compression": compression_ratio(t["params"], r["params"]),
              "retention": retention(r["accuracy"], t["accuracy"]),
              "efficiency": efficiency_ratio(retention(r["accuracy"], t["accuracy"]), r["size_mb"], s["size_mb"]),
              "speedup": r["throughput"] / s["throughput"] if fast else None,
              "latency_speedup": s["latency_p50_ms"] / r["latency_p50_ms"] if fast else None,
              "speedup_over": f"teacher {s['precision']}"}
        if r["kind"] != "teacher" and t.get("per_class"):     # the model card sets each class's recall beside the teacher's
            r["teacher_recall"] = {n: c["recall"] for n, c in t["per_class"].items()}
    for r in rows:
        del r["pred"]
    return rows


def figure_where(result: dict) -> str:
    """The figures' subtitle: how many texts of which data and split, on which device, and a note when other work
    shared the CPU while timing (model_card.cpu_was_busy: the speed panels are slow then)."""
    from model_card import cpu_was_busy
    hw = result["hardware"]
    return f"{result['texts']:,} {result['data']} {result['split']} {text_noun(result['data'])}, {hw['device']}" + \
        (" (CPU shared with other work: speed figures slow)" if cpu_was_busy(hw) else "")


def draw_figures(root: Path, result: dict, prefix: str = "") -> str:
    """<prefix>dashboard.png and gains.png of a result (publish's, or its results.json read back: REDRAW); the
    files drawn, for the log ("dashboard.png and gains.png", or the dashboard alone: no distilled-baseline pair)."""
    noun, where = text_noun(result["data"]), figure_where(result)
    plot_dashboard(result["rows"], root / f"{prefix}dashboard.png", f"{result['experiment']}: teacher vs students, {where}",
                   result["split"], result["labels"], noun)
    gains = plot_gains(result["groups"], root / f"{prefix}gains.png", f"{result['experiment']}: what distillation adds, "
                       f"{where}", GAIN_PLOT_BY or result["config"].get("gain_plot_by", ""))  # a redraw: as evaluated
    return f"{prefix}dashboard.png and {prefix}gains.png" if gains else \
        f"{prefix}dashboard.png (no {prefix}gains.png: no distilled student beside its baseline)"


def redraw() -> dict:
    """REDRAW: the figures of the experiment's results.json (validation-results.json for SPLIT=validation) drawn
    again with this code, the tables left as they are; the result."""
    root, prefix = Path(OUTPUT_DIR) / EXPERIMENT, split_prefix()
    result = as_current(read_json(results_to_redraw()))
    drawn = draw_figures(root, result, prefix)
    log.info("drew %s/%s again from %sresults.json", root, drawn, prefix)
    return result


def as_current(result: dict) -> dict:
    """A results.json as this code writes it, from one written before it recorded its data, split, texts and labels
    (all IMDb then: its test_size texts, negative / positive) or grouped seeds (groups)."""
    return {"data": "IMDb", "split": "test", "texts": result.get("test_size"), "labels": list(IMDB_LABELS),
            "groups": []} | result


def results_to_redraw() -> Path:
    """The results.json that REDRAW draws from, after checking it is there."""
    path = Path(OUTPUT_DIR) / EXPERIMENT / f"{split_prefix()}results.json"
    if not path.is_file():
        raise UsageError(f"--redraw=true: no {path} to draw from; evaluate the experiment first (without --redraw)")
    return path


def split_prefix() -> str:
    """How this SPLIT's result files begin: "" for test (results.json, dashboard.png), "validation-" for validation."""
    return "" if SPLIT == "test" else "validation-"


def check_run(cfg: dict):
    """What is checked before anything is written: the results to redraw (REDRAW), else the models to evaluate."""
    return results_to_redraw() if REDRAW else selected_models(cfg)


def write_cards(models: list, rows: list[dict], pairs: list[tuple], hw: dict, test_size: int, test_of: int) -> None:
    """Each model's card (README.md, and its ONNX folder's) with its test rows (on test_size texts of the test split's
    test_of), its baseline's (pairs: paired_rows) and the machine, whose other_cores_busy is the most measured while
    this model's own rows were timed."""
    from model_card import write_card, write_onnx_card
    versus = {r["model"]: (r, b) for r, b in pairs if b is not None}    # a distilled student beside its baseline
    for name, folder in models:
        own = [r for r in rows if r["model"] == name]
        busy = [r["other_cores_busy"] for r in own if r.get("other_cores_busy") is not None]
        write_card(folder, name, rows=own, hardware=hw | ({"other_cores_busy": max(busy)} if busy else {}),
                   test_size=test_size, test_of=test_of, versus=versus.get(name))
        write_onnx_card(folder)


def own_models(models: list, root: Path) -> list:
    """The (name, folder) of `models` inside the experiment `root`: another experiment's teacher (TEACHER_DIR, or the
    one the students were distilled from) keeps the card its own evaluation wrote (its test set, its baselines)."""
    ours = [(n, f) for n, f in models     # as written, not resolved: a teacher/ linked to scratch storage is ours
            if Path(os.path.abspath(f)).is_relative_to(os.path.abspath(root))]
    for name, folder in models:
        if (name, folder) not in ours:
            log.info("%s: %s is another experiment's; its model card is left as that experiment's evaluation wrote it",
                     name, folder)
    return ours


def publish(cfg: dict, rows: list[dict], models: list, split: dict, device: str, load: dict | None = None,
            predictions: Path | None = None, stale: str = "") -> dict:
    """Write results.{json,csv,md}, dashboard.png and gains.png (validation-* for the validation split)
    and, after a test evaluation, each model's card; the result (stale: warn_if_overwrite_unfinished's warning, for
    results.md). load: the machine's load while measuring,
    {load_average_1min (machine_load() when measuring began), other_cores_busy (others_cores over all of it)}.
    predictions: the folder this evaluation wrote its predictions to (<name>.partial), moved into place right
    after results.json, so that the two always describe the same evaluation; a stop while these are written takes
    effect after the cards and figures too (stops_held)."""
    root, prefix = Path(OUTPUT_DIR) / EXPERIMENT, split_prefix()
    pairs = paired_rows(rows)
    groups, hw = seed_groups(rows, pairs), hardware(device) | (load or {})
    previous = root / f"{prefix}results.json"
    dropped = sorted({r["model"] for r in read_json(previous)["rows"]} - {r["model"] for r in rows}) if previous.is_file() else []
    if dropped:     # e.g. --models picked a few: the tables are of this evaluation only from now on
        log.warning("%s held rows of %s, which this evaluation does not measure (%s); its tables are replaced",
                    previous, ", ".join(dropped), "--models" if any(MODELS) else "no finished model of theirs is here")
    gone = onnx_rows_dropped(read_json(previous)["rows"] if previous.is_file() else [], rows)
    if gone:        # an evaluation with --onnx=true, then the default one (run_experiment.sh again): said, not silent
        log.warning("%s held ONNX Runtime rows of %s, which this evaluation does not measure (--onnx=true does); its "
                    "tables and model cards are replaced without them", previous, ", ".join(gone))
    missing = unfinished_students(models, cfg.get("_config_file", ""), root)
    unpaired = unpaired_baselines(rows, pairs)
    for line in ([f"asked for but not finished, so not evaluated: {', '.join(missing)} (distill_student.py with the "
                  f"settings that trained the others trains them)"] if missing else []) + unpaired:
        log.warning("%s", line)
    teacher_run = run_fingerprint(models[0][1]) if models[0][0] == "teacher" else \
        read_json(Path(TEACHER_RESULTS)).get("teacher_run")             # the training run its teacher rows are of
    result = {"experiment": EXPERIMENT, "data": split["data"], "split": SPLIT, "texts": len(split["texts"]),
              "labels": split["names"], "texts_digest": split["digest"], "teacher_run": teacher_run, "hardware": hw,
              "config": public_config(cfg), "rows": rows, "groups": groups, "class_shares": split["class_shares"],
              "not_finished": missing, "unpaired": unpaired, "stale": stale}
    if "chosen" in MODELS:                          # the study's choice, made on validation, beside its test results
        result["chosen"] = read_json(root / "chosen.json")
    with stops_held():      # a stop now takes effect once every file below is of this evaluation
        write_reports(root, result, prefix)
        if predictions is not None:
            replace_dir(predictions, predictions.with_name(predictions.name.removesuffix(".partial")))
        if SPLIT == "test":      # each model's card (README.md) gets its test metrics and speed, once results.json has them
            write_cards(own_models(models, root), rows, pairs, hw, len(split["texts"]), split["of"])
        drawn = draw_figures(root, result, prefix)
    log.info("wrote %s/%sresults.{json,csv,md}, %s\n%s", root, prefix, drawn, markdown_table(rows, text_noun(split["data"])))
    return result


def warn_if_overwrite_unfinished(root: Path, command: list[str], models: list[tuple[str, Path]]) -> str:
    """A warning naming the experiment's models that an --overwrite command stopped before it finished (runs.OVERWRITE_RUN
    left behind; this not a step of that same command: run_experiment.sh gives its steps the same arguments) had not
    retrained yet: finished before the command began, beside the ones it retrained. Returns it (results.md says it
    too), else ""."""
    from runs import OVERWRITE_RUN, same_command
    mark = root / OVERWRITE_RUN
    if not mark.is_file() or same_command(read_json(mark).get("command") or [], command):
        return ""
    began = mark.stat().st_mtime
    older = [name for name, folder in models if root.resolve() in Path(folder).resolve().parents
             and (Path(folder) / "metrics.json").stat().st_mtime < began]
    if not older:
        return ""
    line = (f"an --overwrite command of {root} was stopped before it finished ({' '.join(read_json(mark).get('command') or [])}): "
            f"{', '.join(older)} {'is' if len(older) == 1 else 'are'} from before it; run it again to finish it (it keeps "
            f"what it retrained) before reading these results")
    log.warning("%s", line)
    return line


def main(argv=None) -> dict:
    cfg = start_run(globals(), argv, "evaluate_models", lambda ns: "redraw.log" if ns["REDRAW"] else "evaluate.log",
                    check=check_run)     # evaluate.log stays the record of the evaluation
    if REDRAW:
        return redraw()
    device = default_device(DEVICE)
    models = selected_models()
    keep_onnx_rows(cfg, models, device)
    stale = warn_if_overwrite_unfinished(Path(OUTPUT_DIR) / EXPERIMENT, sys.argv[1:] if argv is None else argv, models)

    # 1. the test split (or its fixed stratified subset), or the teacher's validation split
    split = load_split(models[0][1])
    log.info("evaluating %d model%s on %d %s %s on %s", len(models), "s" * (len(models) != 1), len(split["texts"]), SPLIT,
             text_noun(split["data"]), device)
    load, start = machine_load(device), cpu_sample()

    # 2. measure every model: fp32, then int8 / ONNX (CPU) and bf16 (GPU) variants
    # (into <predictions>.partial, moved into place with results.json: a stopped evaluation leaves the last pair)
    preds_dir = Path(OUTPUT_DIR) / EXPERIMENT / ("predictions.partial" if SPLIT == "test" else "validation-predictions.partial")
    shutil.rmtree(preds_dir, ignore_errors=True)
    preds_dir.mkdir(parents=True)
    write_texts(preds_dir / "texts.csv", split)
    rows = published_teacher(Path(TEACHER_RESULTS), split, device, models) if TEACHER_RESULTS else []
    rows += [row for name, folder in models for row in model_rows(name, folder, split, device, preds_dir)]
    load = {"load_average_1min": load, "other_cores_busy": others_cores(start, cpu_sample())}
    warn_if_shared(device, rows)

    # 3. figures relative to the fp32 teacher; 4. tables, plots and cards
    paired_tests(rows, split["labels"])            # these two before relative_figures drops the predictions
    retention_intervals(rows, split["labels"])
    rows = mark_busy_speedups(relative_figures(rows), device, os.cpu_count())
    return publish(cfg, rows, models, split, device, load, preds_dir, stale)


def data_spec(kd: dict) -> DataSpec:
    """The data evaluated: the teacher's data and split settings (the run_config of its record `kd`: data,
    columns, labels, val_size, seed, ...), so a test split carved from train is the same one; IMDb read from
    this machine's copy (DATA_DIR, DATASET_NAME)."""
    settings = kd.get("run_config", {}) | {"data_dir": DATA_DIR, "dataset_name": DATASET_NAME}
    recorded = settings.get("data", "imdb")
    if DATA and not same_setting("data", recorded, DATA):
        if not moved_copy(recorded, DATA, kd.get("data_digests"), (SPLIT,)):
            raise UsageError(f"--data={DATA}, but the teacher was trained with data = {recorded}; evaluation reads the "
                             f"teacher's data: leave --data out, or, if that has moved, give where it lies now (a "
                             f"teacher trained before data digests were recorded: only where it was)")
        settings["data"] = DATA
    elif is_path_setting("data", recorded) and not Path(located(recorded)).exists():
        raise UsageError(f"the teacher's data {recorded} is not there ({located(recorded)}); if it moved, give where it "
                         f"lies now: --data=PATH")
    return DataSpec.from_settings(settings)


def load_split(teacher_dir: Path) -> dict:
    """What is evaluated: {texts, of (the size of the split they are drawn from), labels (ids), names (label names),
    digest (of texts and labels), sources and rows (where each text is in the data: Splits), data (its name), latency_idx (the texts timed at batch 1), class_shares (of
    validation and of what is evaluated; a warning when test's differ, shift_note)}: the test split (a fixed
    stratified subset with TEST_SIZE), or the validation split the teacher was trained beside (its data, val_size,
    train_size and seed)."""
    spec = data_spec(read_json(teacher_dir / "config.json").get("sentiment_kd", {}))
    data = load_splits(spec)                       # cached: the checks (selected_models) loaded it
    if SPLIT == "test" and TEST_SIZE > len(data.test):
        log.warning("--test_size=%d: the test split has %d texts; all of them are evaluated", TEST_SIZE, len(data.test))
    part = data.test.select(stratified_indices(data.test["label"], TEST_SIZE, SEED, "--test_size", data.label_names)) \
        if SPLIT == "test" else data.validation
    texts = list(part["text"])
    shares = {"validation": class_shares(data.validation["label"], len(data.label_names)),
              SPLIT: class_shares(part["label"], len(data.label_names))}
    data_name = "IMDb" if spec.is_imdb else portable(spec.data) if is_path_setting("data", spec.data) else spec.data
    note = shift_note(data.label_names, shares["validation"], shares["test"], text_noun(data_name)) \
        if SPLIT == "test" else ""
    if note:
        log.warning(note.replace("**", ""))
    return {"texts": texts, "of": len(data.test if SPLIT == "test" else data.validation),
            "labels": np.array(part["label"]), "names": list(data.label_names),
            "digest": texts_digest(texts, part["label"]), "sources": list(part["source"]), "rows": list(part["row"]),
            "data": data_name, "class_shares": shares,
            "latency_idx": np.random.default_rng(SEED).choice(len(texts), min(LATENCY_SAMPLES, len(texts)), replace=False)}


def check_labels(name: str, folder: Path, config, names: list[str]) -> None:
    """UsageError unless the model predicts the data's labels (as the experiment's first model records them), in the
    same order. The data and its label names are that record's, which no flag here changes (--data only says where
    the same files lie now): a model of other labels was trained on other data, or with other names, than this one."""
    mine = [config.id2label[i] for i in range(config.num_labels)]
    if mine != list(names):
        said = f"model {name} ({folder}) predicts {', '.join(map(str, mine))}, the data's labels are {', '.join(names)}"
        if all(str(x).lstrip("-").isdigit() for x in names) and reorder_hint(mine, names):   # read as text once
            raise UsageError(f"{said}; {reorder_hint(mine, names)}")
        order = " (the same classes in another order)" if sorted(map(str, mine)) == sorted(map(str, names)) else ""
        fix = "train it again on this data (fine_tuning_teacher.py --overwrite=true)" if name == "teacher" else \
            (f"is --teacher_dir={TEACHER_DIR} the teacher it learned from? If so, " if TEACHER_DIR else "") + \
            (f"move it out of {folder.parent}, or distill it again here (distill_student.py with this experiment's "
             f"config, --only={name.removesuffix('-baseline')} --overwrite=true)")
        raise UsageError(f"{said}{order}: it was not trained on the data this experiment's teacher records; {fix}")


if __name__ == "__main__":
    run_main(main)
