"""Distil the fine-tuned teacher into each student in STUDENTS (and train labels-only baselines).

loss = ALPHA * CE(student, labels) + (1 - ALPHA) * T^2 * KL(softmax(teacher/T) || softmax(student/T))
       [+ HIDDEN_WEIGHT * hidden-state MSE + ATTENTION_WEIGHT * attention KL, TinyBERT's intermediate losses]
each term a mean over the batch, whose unlabeled transfer rows have no CE: a batch's CE weighs ALPHA times its
labeled share (1,000 labels and 8,000 transfer reviews: ALPHA / 9 against (1 - ALPHA) T^2).
(training.py: the pure losses, applied by DistillTrainer to the teacher's cached logits; with the
intermediate losses on, the teacher is loaded beside the student and runs on every batch.)
Each baseline trains as many optimizer steps as its distilled twin (MATCH_STEPS), so a transfer set's
extra steps are not mistaken for what distillation adds.

Reads  outputs/<EXPERIMENT>/teacher/ (or TEACHER_DIR; from fine_tuning_teacher.py), or instead the soft labels
       a teacher published (SOFT_LABELS: soft_labels/<split>.npz + .json, IMDb), and the teacher's data
       (DATA: IMDb from IMDB_DIR or the hub, or your own files). The data and split settings (DATA, columns,
       LABEL_NAMES, VAL_SIZE, TRAIN_SIZE, SEED, DROP_LEAKS: DATA_KEYS) must be the teacher's, and MAX_LENGTH no
       longer than its (a student's own max_length excepted); students get the teacher's labels.
Writes teacher_logits/<key>.npz beside the teacher folder: the teacher's logits per review, computed once
         (batched by length, inference_mode) and reused by every student and every re-run;
       outputs/<EXPERIMENT>/students/<name>/ and, with BASELINE, students/<name>-baseline/ (the same
         student trained on the labels alone): weights, tokenizer, config.json (label names, truncation
         settings, recipe, effective configuration under `sentiment_kd`) and metrics.json.
       Checkpoints in outputs/<EXPERIMENT>/checkpoints/students/<name>/ (a re-run resumes); logs in
       outputs/<EXPERIMENT>/logs/distill.log; outputs/<EXPERIMENT>/models/<name>.json: the published
       record of each student (config + metrics, in git). A finished student is kept unless --overwrite=true;
       one made with other settings, or from another training of the teacher, is refused in one line.
       With BEST_SEEDS: outputs/<EXPERIMENT>/chosen.json, each student's candidates with their validation accuracy
         and gain over their matched baselines and the entry chosen (CHOOSE_BY; validation only: no test review is read).

A student is a pretrained checkpoint (`model = "distilroberta-base"`), is cut from the teacher
(`layers = [0, 2, 4]`: keep those encoder layers, copy embeddings, pooler and classifier, the way DistilBERT
was initialised), or is cut from a pretrained checkpoint (both keys). Each model tokenizes the text itself,
so a WordPiece student can learn from a BPE teacher. Unlabeled texts (TRANSFER_SIZE of them, from
TRANSFER_DATA: the data's `unsupervised` split, IMDb's by default, a file, or the data's validation rows beyond
VAL_SIZE) are learned from the teacher's soft targets alone; texts also in validation or test are never used
(DROP_LEAKS).

    python distill_student.py                                   # paper: four pretrained students
    python distill_student.py --config configs/quick.toml       # MiniLM teacher cut to 3, 2, 1 layers
    python distill_student.py --config configs/quick.toml --only=L3 --temperature=4 --experiment=quick-t4 \\
        --teacher_dir=outputs/quick/teacher                     # other settings: an experiment of their own
    python distill_student.py --config configs/full-study.toml  # from published soft labels, no teacher model;
                                                                # the sweep, then the best recipes at 3 seeds
    torchrun --nproc_per_node 4 distill_student.py --config configs/bert.toml
"""
import functools
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import data_utils
from configurator import (LEVELS, UsageError, check_setting_values, coerce, did_you_mean, flag, flag_text, log, public_config,
                          run_main, start_run, where_in)
from data_utils import (DataSpec, atomic_path, check_data, check_digests, digest, load_imdb, load_splits, log_splits,
                        moved_copy, read_json, same_setting, text_hashes, texts_digest, write_json)
from models import (PadCollator, batched_logits, check_max_length, count_parameters, default_device, is_finished,
                    label_names, load_classifier, load_tokenizer, model_config, recipe, run_fingerprint, student_fields,
                    student_key, teacher_folder, tokenize_dataset, truncation_settings, unpredicted_classes,
                    neglected_class, reorder_hint)

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT: str = "paper"         # run name: reads OUTPUT_DIR/EXPERIMENT/teacher, writes .../students/
OUTPUT_DIR: str = "outputs"
CACHE_DIR: str = "outputs/cache"  # tokenized splits (keyed by content)
TEACHER_DIR: str = ""             # saved teacher; "" = OUTPUT_DIR/EXPERIMENT/teacher
OVERWRITE: bool = False           # retrain students that already finished
ONLY: list = [""]                 # train only these student names ([""] = all)
# --- data (the teacher's: same data, labels and split, so validation stays unseen) ----------------
DATA: str = "imdb"                # imdb | a .csv/.tsv/.jsonl/.parquet file or folder | a hub dataset id
DATA_DIR: str = ""                # imdb: a local copy; "" = $IMDB_DIR, else the hub
DATASET_NAME: str = "stanfordnlp/imdb" # imdb: the hub dataset used when no local copy is given
TEXT_COLUMN: str = "text"         # column of the texts
LABEL_COLUMN: str = "label"       # column of the labels
LABEL_NAMES: list = [""]          # integer labels: a name per sorted value ([""] = the numbers; imdb: negative, positive)
VAL_SIZE: int = 2500              # validation rows: carved from train, or kept of the data's own split
TRAIN_SIZE: int = 0               # stratified subsample of the remaining train rows; 0 = all
DROP_LEAKS: bool = True           # drop train rows, transfer texts also in validation or test; validation rows in test
TRANSFER_DATA: str = ""           # unlabeled texts: "" = the data's unsupervised split | validation (its rows beyond
                                  # VAL_SIZE, labels dropped) | a table file or folder | a .txt file (a text per line)
                                  # or a folder of them (aclImdb/train/unsup: a review per file)
TRANSFER_TEXT_COLUMN: str = ""    # the column of TRANSFER_DATA's table that holds the texts; "" = TEXT_COLUMN
MAX_LENGTH: int = 512             # student tokens per review (per-student `max_length` overrides)
TRUNCATION: str = "head+tail"     # head | tail | head+tail
HEAD_TOKENS: int = 128            # head+tail: tokens kept from the start
TRANSFER_SIZE: int = 0            # unlabeled texts (TRANSFER_DATA) added, KL term only
SOFT_LABEL_SPLITS: list = [""]    # IMDb splits (train, unsupervised, test) whose every review gets the teacher's
                                  # logits, published in OUTPUT_DIR/EXPERIMENT/soft_labels/ ([""] = none)
SOFT_LABEL_ROWS: int = 0          # only the first N reviews of each of those splits (0 = all; for rehearsals)
SOFT_LABELS: str = ""             # learn from published soft labels (a soft_labels/ folder, e.g. outputs/full/soft_labels)
                                  # instead of a teacher folder: no teacher model needed ("" = the teacher's folder)
# --- model -------------------------------------------------------------------------------------
# each: name, and model (hub id / folder), layers (teacher layers to keep), or both (cut that model);
# optional per-student learning_rate, epochs, batch_size, max_length, alpha, temperature,
# transfer_size, baseline, seed, hidden_weight, attention_weight (see PER_STUDENT)
STUDENTS: list = [
    {"name": "distilroberta", "model": "distilroberta-base"},
    {"name": "distilbert", "model": "distilbert-base-uncased"},
    {"name": "minilm", "model": "microsoft/MiniLM-L12-H384-uncased"},
    {"name": "tinybert", "model": "huawei-noah/TinyBERT_General_4L_312D"},
]
BASELINE: bool = True             # also train each student on labels alone (ALPHA = 1, no teacher)
MATCH_STEPS: bool = True          # a baseline trains as many optimizer steps as its distilled twin (more
                                  # epochs over the labels when the twin adds transfer reviews)
MIN_TEACHER_ACCURACY: float = 0.80  # refuse to distil a teacher below this validation accuracy
BEST_SEEDS: int = 0               # a study's second phase: once every entry of STUDENTS has finished, the distilled entry
                                  # of each student (model + layers) chosen on validation (CHOOSE_BY) among those with a
                                  # matched baseline is trained at this many seeds in all, each beside a baseline (its own seed, then
                                  # the next ones; names <name>-s<seed>); the choice goes to OUTPUT_DIR/EXPERIMENT/
                                  # chosen.json, which `evaluate_models.py --models=chosen` evaluates; 0 or 1 = off; not
                                  # with --only (a choice among some entries would not be the study's)
CHOOSE_BY: str = "accuracy"       # BEST_SEEDS' choice: accuracy (the entry's own validation accuracy, ties to its macro
                                  # F1: the student to ship; a baseline's bad luck does not win it) | gain (validation
                                  # accuracy over its matched baseline's, ties to the higher accuracy)
# --- training ----------------------------------------------------------------------------------
EPOCHS: float = 3.0
BATCH_SIZE: int = 32              # per device
GRAD_ACCUM: int = 1
LEARNING_RATE: float = 5e-5       # peak AdamW learning rate
WEIGHT_DECAY: float = 0.01
WARMUP_RATIO: float = 0.06
BEST_METRIC: str = "accuracy"     # the checkpoint kept: best validation accuracy | f1 (macro) | recall (macro);
                                  # imbalanced classes: f1 (both twins alike)
EVAL_BATCH_SIZE: int = 64
LOGGING_STEPS: int = 50
EVAL_STEPS: int = 0               # evaluate and checkpoint every this many optimizer steps, both twins alike (0 = each
                                  # epoch of the distilled twin's data): what a stopped run resumes from
# --- distillation --------------------------------------------------------------------------------
ALPHA: float = 0.5                # weight of the label CE (times the batch's labeled share); 1 - ALPHA the soft KL
TEMPERATURE: float = 2.0          # softmax temperature of the soft targets (> 0)
TEACHER_BATCH_SIZE: int = 64      # batch size when computing the teacher's logits
HIDDEN_WEIGHT: float = 0.0        # + this * hidden-state MSE to the teacher's layers (0 = off; the teacher then
                                  # runs on every batch, and the student needs the teacher's tokenizer)
ATTENTION_WEIGHT: float = 0.0     # + this * attention-distribution KL (0 = off; needs equal head counts)
# --- system ------------------------------------------------------------------------------------
SEED: int = 42
NUM_WORKERS: int = 2              # dataloader worker processes (0 on small CPUs)
THREADS: int = 0                  # torch CPU threads; 0 = one per core, less those other processes keep busy
KEEP_CHECKPOINTS: bool = False
REPORT_TO: str = "none"           # none | tensorboard (event files in OUTPUT_DIR/EXPERIMENT/runs/<model>/)

# per-student key -> the global constant it overrides. Precedence, one rule for every setting: the
# command line beats the --config file, which beats the defaults; at the same level a per-student
# value beats the global one (so `--epochs=1` overrides `epochs = 4.0` of a student in the file).
PER_STUDENT = {"learning_rate": "LEARNING_RATE", "epochs": "EPOCHS", "batch_size": "BATCH_SIZE",
               "max_length": "MAX_LENGTH", "alpha": "ALPHA", "temperature": "TEMPERATURE",
               "transfer_size": "TRANSFER_SIZE", "baseline": "BASELINE", "seed": "SEED",
               "hidden_weight": "HIDDEN_WEIGHT", "attention_weight": "ATTENTION_WEIGHT"}
STUDENT_KEYS = {"name", "model", "layers"} | set(PER_STUDENT)


# ----------------------------------------------------------------------------------------------
# teacher logits, once per review
# ----------------------------------------------------------------------------------------------
def teacher_stamp(folder: Path) -> list:
    """Changes when the teacher is retrained or its soft labels republished: the folder and the names, sizes and
    modification times of its weights, configuration and soft-label files."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".npz"))
    return [str(folder.resolve())] + [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def teacher_key(teacher_dir: Path, kd: dict) -> str:
    """What determines the teacher's logits: its weights (teacher_stamp), tokenization and precision
    (predict_logits: logit_precision, bf16 or fp16 on a GPU, fp32 on a CPU)."""
    precision = logit_precision()
    return digest(teacher_stamp(teacher_dir) + [kd.get("max_length"), kd.get("truncation"), kd.get("head_tokens")]
                  + ([precision] if precision != "fp32" else []))      # fp32 adds nothing: CPU caches keep their key


def logit_precision() -> str:
    """The precision the teacher's logits are computed in: autocast on a GPU in the half precision training uses
    there (training.pick_precision: bf16 where supported, else fp16), else fp32."""
    from training import pick_precision
    return next(iter(pick_precision()), "fp32") if default_device() == "cuda" else "fp32"


def predict_logits(model, tokenizer, texts: list[str], settings: dict, batch_size: int) -> np.ndarray:
    """The teacher's logits (N, C) float32 for texts, in input order: models.batched_logits on the
    GPU when there is one, in logit_precision()."""
    import torch
    device = default_device()
    model.to(device).eval()
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(logit_precision())
    with torch.autocast(device, dtype=half or torch.bfloat16, enabled=half is not None):
        return batched_logits(model, tokenizer, texts, settings, batch_size, device, desc="teacher logits")


def read_logit_cache(path: Path) -> dict:
    """{text hash: logits} of a teacher-logit cache file; a file that cannot be read (truncated, bytes
    changed: the zip's CRC fails) or holds other than one finite row per hash is moved aside to
    `<name>.damaged` with a log line, and its rows are recomputed."""
    import zipfile
    if not path.exists():
        return {}
    try:
        with np.load(path) as z:
            hashes, logits = z["hashes"], z["logits"]
        if logits.ndim != 2 or len(hashes) != len(logits) or not np.isfinite(logits).all():
            raise ValueError(f"{len(hashes)} hashes for logits of shape {logits.shape}")
        return dict(zip(hashes, logits))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        log.warning("teacher-logit cache %s is damaged (%s): moved aside to %s; its logits are recomputed",
                    path, str(e).splitlines()[0][:120] if str(e) else type(e).__name__, aside)
        return {}


def cached_teacher_logits(texts: list[str], teacher_dir: Path, cache_dir: Path, batch_size: int) -> tuple[np.ndarray, dict]:
    """The teacher's logits for `texts` (N, C), from the per-review cache; only missing reviews run
    through the teacher (each distinct text once), which is loaded only then and freed after.
    Returns (logits, stats): stats counts reviews reused from the cache and texts computed now."""
    kd = read_json(teacher_dir / "config.json").get("sentiment_kd", {})
    path = cache_dir / f"{teacher_key(teacher_dir, kd)}.npz"
    known = read_logit_cache(path)
    hashes = text_hashes(texts)
    missing = sorted({h: i for i, h in enumerate(hashes) if h not in known}.values())
    stats = {"cache": str(path), "reviews": len(texts), "computed": len(missing),
             "reused": int(sum(h in known for h in hashes)), "teacher_seconds": 0.0}
    if missing:
        import torch
        t0 = time.time()
        model, tok = load_classifier(str(teacher_dir))
        logits = predict_logits(model, tok, [texts[i] for i in missing], truncation_settings(kd, tok, model.config), batch_size)
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        known.update(zip(hashes[missing], logits))
        stats["teacher_seconds"] = round(time.time() - t0, 1)
        # rows another experiment with this teacher wrote since the read above are kept (runs of one experiment take
        # its lock; two writes at the same moment can still lose one's new rows: recomputed next time)
        known = read_logit_cache(path) | known
        with atomic_path(path) as tmp:
            np.savez(tmp, hashes=np.array(list(known)), logits=np.stack(list(known.values())))
    log.info("teacher logits: %d texts, %d distinct ones computed (%.1fs), %d reused from %s", len(texts), len(missing),
             stats["teacher_seconds"], stats["reused"], path)
    return np.stack([known[h] for h in hashes]), stats


DATA_KEYS = ("data", "text_column", "label_column", "label_names", "val_size", "train_size", "seed", "drop_leaks")   # the teacher's, kept


def soft_label_teacher(teacher_dir: Path) -> dict:
    """The teacher part of a published soft-label file's description: logit-cache key, validation
    accuracy, labels, tokenization."""
    config, metrics = read_json(teacher_dir / "config.json"), read_json(teacher_dir / "metrics.json")
    kd = config.get("sentiment_kd", {})
    trained = kd.get("run_config", {})
    return {"teacher_key": teacher_key(teacher_dir, kd), "teacher": str(teacher_dir), "teacher_run": run_fingerprint(teacher_dir),
            "teacher_model": trained.get("model_name"), "teacher_val_accuracy": metrics["val_accuracy"],
            "teacher_parameters": metrics.get("parameters"),
            "teacher_val_classes_predicted": metrics.get("val_classes_predicted"),
            "teacher_val_classes_in_labels": metrics.get("val_classes_in_labels"),
            "data": {k: trained[k] for k in DATA_KEYS if k in trained},    # what the teacher was trained on
            "id2label": {str(i): n for i, n in enumerate(label_names(config))}, "truncation": truncation_settings(kd),
            "logits": f"float32 (rows, classes), computed in {logit_precision()}, row i = review i of the split in "
                      f"source order (IMDB_DIR parquet order)"}


def publish_soft_labels(splits: list[str], teacher_dir: Path, out_dir: Path, batch_size: int, rows: int = 0) -> None:
    """Write the teacher's logits for every review of `splits` to out_dir/<split>.npz (+ <split>.json: the
    split's rows, text digest and soft_label_teacher; rows > 0: only the first `rows` reviews of each
    split): students can later learn from them without the teacher (load_soft_labels).
    One teacher pass for all splits through the logit cache, so students' passes reuse it; a file
    already published by this teacher for the same texts is kept."""
    data = load_imdb(tuple(splits), DATA_DIR, DATASET_NAME)
    texts = {s: list(data[s]["text"])[:rows or None] for s in splits}
    teacher = soft_label_teacher(teacher_dir)
    metas = {s: {"split": s, "rows": len(texts[s]), "texts_digest": texts_digest(texts[s])} | teacher for s in splits}
    todo = [s for s in splits if not (out_dir / f"{s}.npz").exists() or not (out_dir / f"{s}.json").exists()
            or read_json(out_dir / f"{s}.json") != metas[s]]
    if not todo:
        log.info("soft labels for %s already published in %s: kept", ", ".join(splits), out_dir)
        return
    logits, _ = cached_teacher_logits([t for s in todo for t in texts[s]], teacher_dir,
                                      teacher_dir.parent / "teacher_logits", batch_size)
    start = 0
    for s in todo:
        with atomic_path(out_dir / f"{s}.npz") as tmp:
            np.savez_compressed(tmp, logits=logits[start:start + len(texts[s])].astype(np.float32))
        write_json(out_dir / f"{s}.json", metas[s])
        start += len(texts[s])
        log.info("soft labels: %d reviews of %s -> %s", len(texts[s]), s, out_dir / f"{s}.npz")


def load_soft_labels(folder: Path, split: str, texts: list[str]) -> np.ndarray:
    """The published teacher logits (N, C) of `split`, after checking they were computed for exactly
    these texts in this order (the split's text digest); UsageError if not, or if the file is damaged (a copy cut
    short: one line, not the zip reader's traceback)."""
    import zipfile
    meta = read_json(Path(folder) / f"{split}.json")
    if meta["rows"] != len(texts) or meta["texts_digest"] != texts_digest(texts):
        raise UsageError(f"{folder}/{split}.npz holds logits for {meta['rows']} other reviews "
                         f"(digest {meta['texts_digest']}), not these {len(texts)}; use the IMDb copy it was made from")
    try:
        logits = np.load(Path(folder) / f"{split}.npz")["logits"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{folder}/{split}.npz cannot be read ({type(e).__name__}: {e}); copy the soft labels again "
                         f"from where they were published") from None
    if len(logits) != len(texts):
        raise UsageError(f"{folder}/{split}.npz holds {len(logits)} rows, its {split}.json says {len(texts)}; copy the "
                         f"soft labels again from where they were published")
    return logits


@functools.lru_cache(maxsize=1)     # the checks and the training both read it: loaded and hashed once
def published_table(folder: str, data_dir: str, dataset_name: str) -> dict:
    """{text hash: logits (C,)} of the IMDb train and unsupervised reviews whose soft labels are published in
    `folder`, each split checked against its text digest (load_soft_labels)."""
    splits = [s for s in ("train", "unsupervised") if (Path(folder) / f"{s}.json").is_file()]
    data = load_imdb(tuple(splits), data_dir, dataset_name)
    known = {}
    for s in splits:
        rows = list(data[s]["text"])[:read_json(Path(folder) / f"{s}.json")["rows"]]
        known.update(zip(text_hashes(rows), load_soft_labels(folder, s, rows)))
    return known


def published_logits(texts: list[str], folder: Path) -> tuple[np.ndarray, dict]:
    """The published teacher logits (N, C) of `texts`, found by text among the IMDb train and unsupervised
    reviews published in `folder` (each split checked against its digest: load_soft_labels; test is never
    read). (logits, stats); UsageError when some texts have none (a rehearsal's first rows only, other data)."""
    known = published_table(str(folder), DATA_DIR, DATASET_NAME)
    splits = [s for s in ("train", "unsupervised") if (folder / f"{s}.json").is_file()]
    hashes = text_hashes(texts)
    missing = int(sum(h not in known for h in hashes))
    if missing:
        raise UsageError(f"--soft_labels={folder}: {missing} of the {len(texts)} texts to learn from have no published "
                         f"logits there ({', '.join(splits)}: {len(known)} reviews); publish every review of train and "
                         f"unsupervised (--soft_label_rows=0), or distil from the teacher folder")
    log.info("teacher logits: %d reviews from the soft labels published in %s", len(texts), folder)
    return np.stack([known[h] for h in hashes]), {"soft_labels": str(folder), "reviews": len(texts), "computed": 0,
                                                  "reused": len(texts), "teacher_seconds": 0.0}


# ----------------------------------------------------------------------------------------------
# the teacher: a model folder, or its published soft labels
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Teacher:
    """Where the soft targets come from: a teacher folder (its logits computed here, once per text) or the
    soft labels it published (SOFT_LABELS: its logits for IMDb's reviews, without the model)."""
    where: Path                   # the teacher folder, or the soft-label folder
    labels: tuple                 # label names in id order: the students get them
    val_accuracy: float
    parameters: int | None
    trained: dict                 # the data settings it was trained with (run_config keys)
    has_model: bool               # False for soft labels: no students cut from it, no intermediate losses
    digests: dict | None = None   # its train / validation / test splits (data_utils.split_digests); older: none
    classes_predicted: int | None = None   # how many of its classes it predicted on validation; older: not recorded
    classes_in_labels: int | None = None   # how many classes validation holds; older: not recorded
    base_model: str | None = None          # the hub model it was fine-tuned from (a student cut from it descends from it)
    neglected: str = ""                    # a class it all but ignores on validation (models.neglected_class)


def find_teacher() -> Teacher:
    """The teacher of this run (TEACHER_DIR, OUTPUT_DIR/EXPERIMENT/teacher or SOFT_LABELS), after checking
    that it exists (check_teacher_accuracy: that it is good enough)."""
    if SOFT_LABELS:
        folder = Path(SOFT_LABELS)
        if not (folder / "train.json").is_file() or not (folder / "train.npz").is_file():
            raise UsageError(f"--soft_labels={folder}: no published soft labels there (train.json, train.npz); give the "
                             f"soft_labels/ folder of a run made with --soft_label_splits=train,unsupervised")
        meta = read_json(folder / "train.json")
        metrics = {"val_accuracy": meta["teacher_val_accuracy"], "parameters": meta.get("teacher_parameters"),
                   "val_classes_predicted": meta.get("teacher_val_classes_predicted"),
                   "val_classes_in_labels": meta.get("teacher_val_classes_in_labels")}
        length = (meta.get("truncation") or {}).get("max_length")      # the teacher's: students read no more
        config, trained = meta, meta.get("data", {}) | ({"max_length": length} if length else {})
    else:
        folder = teacher_folder(OUTPUT_DIR, EXPERIMENT, TEACHER_DIR)
        if not is_finished(folder):
            raise UsageError(f"no finished teacher at {folder} (a model folder with weights and metrics.json); " +
                             (f"teacher_dir = {TEACHER_DIR}: give the folder of a finished teacher (outputs/<exp>/teacher; train that "
                              f"experiment's teacher first if it has none)"
                              if TEACHER_DIR else f"run fine_tuning_teacher.py --experiment={EXPERIMENT} (or its --config) "
                              f"first, or set --teacher_dir"))
        config, metrics = read_json(folder / "config.json"), read_json(folder / "metrics.json")
        trained = config.get("sentiment_kd", {}).get("run_config", {})
        digests = config.get("sentiment_kd", {}).get("data_digests") or {}
    return Teacher(folder, tuple(label_names(config)), metrics["val_accuracy"], metrics.get("parameters"), trained,
                   not SOFT_LABELS, {} if SOFT_LABELS else digests, metrics.get("val_classes_predicted"),
                   metrics.get("val_classes_in_labels"),
                   config.get("teacher_model") if SOFT_LABELS else config.get("sentiment_kd", {}).get("base_model"),
                   neglected_class(metrics, list(label_names(config))))


def check_published_teacher(teacher: Teacher) -> None:
    """UsageError when the experiment's published teacher record (models/teacher.json) is of another training run
    than the teacher elsewhere these students would learn from (TEACHER_DIR): their results would be published beside
    another teacher's, in another run's folder (a finished student of the same name is caught by its own record;
    one of a new name was not). OVERWRITE replaces them knowingly."""
    record, root = Path(OUTPUT_DIR) / EXPERIMENT / "models" / "teacher.json", (Path(OUTPUT_DIR) / EXPERIMENT).resolve()
    if OVERWRITE or not TEACHER_DIR or not teacher.has_model or not record.is_file() or \
            Path(teacher.where).resolve().is_relative_to(root):     # its own teacher: a stale record is rewritten
        return
    from data_utils import digest
    if digest(read_json(record).get("metrics", {})) != run_fingerprint(teacher.where):
        raise UsageError(f"{record} is the published record of experiment {EXPERIMENT}'s teacher, another run than "
                         f"{teacher.where}, which these students would learn from; give --experiment=<a new name> to keep "
                         f"both, or --overwrite=true to put them in {EXPERIMENT} all the same")


def check_teacher_accuracy(teacher: Teacher) -> None:
    """UsageError for a teacher below MIN_TEACHER_ACCURACY on validation (checked after its data: a teacher of other
    data, e.g. a forgotten --config, is named as that); a warning for one that predicted only some of its classes."""
    if teacher.val_accuracy < MIN_TEACHER_ACCURACY:
        raise UsageError(f"teacher {teacher.where} has validation accuracy {teacher.val_accuracy:.4f} < "
                         f"--min_teacher_accuracy={MIN_TEACHER_ACCURACY}: retrain it (fine_tuning_teacher.py with more --epochs or another "
                         f"--learning_rate, and --overwrite=true: a finished teacher is kept otherwise) or lower the threshold "
                         f"(it is for your data: chance with {len(teacher.labels)} classes is {1 / len(teacher.labels):.3f})")
    missed = unpredicted_classes({"val_classes_predicted": teacher.classes_predicted,
                                  "val_classes_in_labels": teacher.classes_in_labels}, len(teacher.labels))
    if missed:      # above the accuracy floor, yet blind to a class: its students learn the blindness from it
        log.warning("the teacher %s: %s (accuracy %.4f); students distilled from it learn to miss the same classes, "
                    "and their accuracy gain over a baseline can hide it (compare macro F1 in results.md); retrain the "
                    "teacher first (fine_tuning_teacher.py with more --epochs, another --learning_rate or more examples "
                    "of the missed classes, and --overwrite=true)", teacher.where, missed, teacher.val_accuracy)
    elif teacher.neglected:     # it predicts every class, yet all but ignores one: the students learn that too
        log.warning("the teacher %s: %s; students distilled from it learn to ignore that class too; retrain the "
                    "teacher first (fine_tuning_teacher.py with --best_metric=recall, more --epochs or more examples of "
                    "that class, and --overwrite=true)", teacher.where, teacher.neglected)


def check_teacher_data(teacher: Teacher, ours: DataSpec, cfg: dict) -> None:
    """UsageError unless the students read the data, labels and split the teacher was trained with (older
    teachers lack some keys: those are not compared), naming where ours was set (configurator.where_in: `cfg` is
    configure()'s result).
    Its data at another path, when the recorded one is gone (moved, or another machine), is read if the teacher
    recorded its splits' digests (data_utils.moved_copy; check_config compares them)."""
    theirs = DataSpec.from_settings(teacher.trained)
    for key in DATA_KEYS:
        if key not in teacher.trained or same_setting(key, getattr(theirs, key), getattr(ours, key)):
            continue
        if key == "data" and moved_copy(theirs.data, ours.data, teacher.digests, ("train", "validation")):
            log.info("the teacher was trained with data = %s; reading it from %s, checked against the teacher's record of "
                     "its splits", theirs.data, ours.data)
        else:
            was = flag_text(getattr(theirs, key))
            as_it_had = flag(key, getattr(theirs, key)) if was else f"leave --{key} out"
            ours_set = where_in(cfg, key, getattr(ours, key), "distill_student")
            raise UsageError(f"{ours_set}, but the teacher {teacher.where} was trained with {key} = {was or '(none)'}: "
                             f"the students would see other data or labels, or validation rows the teacher trained on; "
                             f"give it as the teacher had it ({as_it_had}: the teacher's --config with the same flags)")


def check_labels(teacher: Teacher, data_labels) -> list[str]:
    """The teacher's label names in id order, after checking they are the data's (students inherit them)."""
    if list(teacher.labels) != list(data_labels):
        raise UsageError(f"teacher {teacher.where} has the labels {', '.join(teacher.labels)}, the data has "
                         f"{', '.join(data_labels)}; " + (reorder_hint(teacher.labels, data_labels) or
                                                         "use the teacher's data settings (its --config), or retrain the "
                                                         "teacher on this data"))
    return list(teacher.labels)


def check_without_model(students: list, cfg: dict, ours: DataSpec) -> None:
    """With SOFT_LABELS: what needs the teacher model is refused (students cut from it, the intermediate
    losses, publishing soft labels), and the data must be IMDb's (soft labels are published for it)."""
    if not ours.is_imdb:
        raise UsageError(f"--soft_labels={SOFT_LABELS}: published soft labels are IMDb's; with --data={DATA} distil "
                         f"from the teacher folder")
    if soft_label_splits():
        raise UsageError("--soft_label_splits with --soft_labels: soft labels are published from a teacher folder")
    for s in students:
        st = student_settings(s, cfg)
        if "model" not in s or st["hidden_weight"] > 0 or st["attention_weight"] > 0:
            raise UsageError(f"student '{s['name']}': {'cut from the teacher' if 'model' not in s else 'intermediate losses'} "
                             f"needs the teacher model, and --soft_labels has none; give it a model (a checkpoint), set "
                             f"hidden_weight and attention_weight to 0, or distil from the teacher folder")


# ----------------------------------------------------------------------------------------------
# students
# ----------------------------------------------------------------------------------------------
def encoder_layers(model):
    """(parent module, attribute name) of the model's list of transformer layers."""
    import torch.nn as nn
    for name, module in model.base_model.named_modules():
        for attr in ("layer", "layers"):
            if isinstance(getattr(module, attr, None), nn.ModuleList):
                return module, attr
    raise NotImplementedError(f"cannot find the encoder layers of {type(model).__name__} (no ModuleList named "
                              f"layer or layers): cutting layers does not support this architecture")


def check_layers(layers, n_layers: int | None, where: str) -> None:
    """UsageError unless `layers` are increasing indices of existing layers (0..n_layers - 1)."""
    if not layers or sorted(set(layers)) != list(layers) or layers[0] < 0 or \
            (n_layers is not None and layers[-1] >= n_layers):
        raise UsageError(f"{where}layers = {list(layers)}: need increasing indices in 0..{(n_layers or 1) - 1}")


def cut_layers(teacher, layers: list[int]):
    """A copy of `teacher` that keeps only the encoder layers `layers` (0-based, in order); every
    other weight (embeddings, pooler, classifier) is the teacher's own."""
    import copy

    import torch.nn as nn
    student = copy.deepcopy(teacher)
    parent, attr = encoder_layers(student)
    old = getattr(parent, attr)
    check_layers(layers, len(old), "")
    setattr(parent, attr, nn.ModuleList([old[i] for i in layers]))
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(student.config, key):
            setattr(student.config, key, len(layers))
    for i, layer in enumerate(getattr(parent, attr)):     # attention modules that know their index
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = i
    return student


def build_student(spec: dict, teacher_dir: Path, seed: int, labels: list[str]):
    """(model, tokenizer) for a student spec: a pretrained checkpoint (`model`, given a head for the
    teacher's `labels`), layers cut from the teacher (`layers`), or layers cut from a pretrained checkpoint (both)."""
    model, tok = load_classifier(spec["model"], seed, labels) if "model" in spec else load_classifier(str(teacher_dir), seed)
    return (cut_layers(model, list(spec["layers"])) if "layers" in spec else model), tok


def cut_from_teacher(spec: dict, teacher_dir: Path | None) -> bool:
    """Whether a student spec is layers of the teacher: `layers` and no `model`, or a `model` naming teacher_dir."""
    from models import local_path
    path = local_path(spec["model"]) if "model" in spec else None
    return "layers" in spec and ("model" not in spec or (path is not None and teacher_dir is not None
                                                         and path.resolve() == Path(teacher_dir).resolve()))


def layer_map(spec: dict, n_student: int, n_teacher: int, teacher_dir: Path | None = None) -> list[int]:
    """Teacher layer (0-based) matched to each student layer by the intermediate-layer losses: the top of the block
    of teacher layers each student layer stands for, so that the last is matched to the teacher's last (which the
    classifier head reads, as in TinyBERT and MiniLM). A student cut from the teacher (no `model`, or `model` naming
    teacher_dir) with layers l_0 < l_1 < ...: layer k stands for teacher layers l_k .. l_(k+1) - 1, so k -> l_(k+1) - 1
    and the last -> n_teacher - 1 ([0, 2, 4] of 6: [1, 3, 5]; [0]: [5]); matching k to l_k itself would pull the last
    layer towards a middle one, away from what the teacher's head was trained on. Else the uniform map,
    k -> ceil((k + 1) * n_teacher / n_student) - 1 (4 of 6: [1, 2, 4, 5])."""
    if cut_from_teacher(spec, teacher_dir):
        cut = list(spec["layers"])               # increasing (check_layers)
        return [nxt - 1 for nxt in cut[1:]] + [n_teacher - 1]
    return [-(-(k + 1) * n_teacher // n_student) - 1 for k in range(n_student)]     # integer ceiling: no float error


def intermediate_setup(student, teacher_dir: Path, spec: dict, st: dict, name: str) -> dict:
    """DistillTrainer arguments for the hidden-state / attention losses of one student: the frozen
    teacher (on the student's device later), the layer map and, for a narrower student, learned
    projections attached to the student (training.attach_projections; check_student_models has checked that the
    two can be compared)."""
    from training import attach_projections, attention_before_dropout
    teacher, _ = load_classifier(str(teacher_dir))    # tokenizer and head counts: check_student_models
    n_s, n_t = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    mapping = layer_map(spec, n_s, n_t, teacher_dir)
    attention = ""
    if st["attention_weight"] > 0:       # SDPA returns no attention weights; a training student's eager ones are dropped out
        teacher.set_attn_implementation("eager")
        attention = ", " + attention_before_dropout(student)
    hs, ht = student.config.hidden_size, teacher.config.hidden_size
    if st["hidden_weight"] > 0 and hs != ht:
        attach_projections(student, len(mapping), ht)
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("student %s: intermediate losses against teacher layers %s (hidden x%s, attention x%s%s)%s", name, mapping,
             st["hidden_weight"], st["attention_weight"], attention, f", projections {hs}->{ht}" if hs != ht else "")
    return {"teacher": teacher.eval(), "hidden_weight": st["hidden_weight"],
            "attention_weight": st["attention_weight"], "layer_map": mapping}


def student_settings(spec: dict, cfg: dict) -> dict:
    """The settings one student trains with: {key: value} for every key of PER_STUDENT, type- and range-checked.

    A student's own value counts at the level STUDENTS was set (configurator.LEVELS: command line > config
    file > default) and beats the global constant set at the same level or below, e.g. `--epochs=1` beats
    a student's `epochs = 4.0` in the file; a student's own `seed` always applies (it names a replicate;
    SEED also fixes the data split). cfg: configure()'s result (the constants and `_sources`).
    """
    level = lambda name: LEVELS[cfg["_sources"][name]]   # noqa: E731
    where = f"student '{spec.get('name')}'"
    own = {k: coerce(k, spec[k], cfg[const], source=where) for k, const in PER_STUDENT.items()
           if k in spec and (k == "seed" or level(const) <= level("STUDENTS"))}
    check_setting_values(own, lambda k, v: f"{where}: {k} = {v!r}")
    return {k: own.get(k, cfg[const]) for k, const in PER_STUDENT.items()}


TAKEN_SUFFIXES = ("-baseline", "-int8", "-bf16", "-fp16", "-onnx-fp32", "-onnx-int8")   # what names derive from a student's


def check_students(students: list, cfg: dict) -> list[dict]:
    """Validate the STUDENTS list: each a table with a unique name, a model and/or layers, known keys,
    and per-student values in range (the error names the student, or the global flag that set it)."""
    names = set()
    for s in students:
        if not isinstance(s, dict) or not s.get("name"):
            raise UsageError(f"student {s!r}: each needs at least a name and a model or layers")
        if set(s) - STUDENT_KEYS:   # first: a misspelt `layers` would otherwise read as a missing one
            bad = sorted(set(s) - STUDENT_KEYS)[0]
            where = f" in {cfg['_config_file']}" if cfg.get("_sources", {}).get("STUDENTS") == "file" else ""
            raise UsageError(f"student '{s['name']}'{where}: unknown key {bad!r}"
                             f"{did_you_mean(bad, [k.upper() for k in STUDENT_KEYS], prefix='')}; "
                             f"valid: {', '.join(sorted(STUDENT_KEYS))}")
        if "model" not in s and "layers" not in s:
            raise UsageError(f"student '{s['name']}': give a model (a checkpoint), layers (cut the teacher) or both "
                             f"(cut that checkpoint)")
        if s["name"] in names:
            raise UsageError(f"student name '{s['name']}' appears twice")
        if s["name"] in ("teacher", "texts") or not str(s["name"]).replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UsageError(f"student name {s['name']!r}: use letters, digits, '-', '_' or '.', and not 'teacher' or "
                             f"'texts' (the evaluation's predictions/texts.csv)")
        if str(s["name"]).endswith(TAKEN_SUFFIXES):
            raise UsageError(f"student name {s['name']!r}: a name may not end in {', '.join(TAKEN_SUFFIXES)} (a "
                             f"baseline's folder, and the evaluation's predictions/<name>-<precision>.csv, would clash)")
        settings = student_settings(s, cfg)
        check_setting_values({"max_length": settings["max_length"], "head_tokens": cfg["HEAD_TOKENS"],
                              "truncation": cfg["TRUNCATION"]},     # head_tokens is shared: said as it was set
                             lambda k, v: f"the max_length = {v!r} of student '{s['name']}'" if k == "max_length" and
                             "max_length" in s else f"{where_in(cfg, k, v, 'distill_student')}"
                             + (f" (student '{s['name']}')" if k == "max_length" else ""))
        names.add(s["name"])
    return students


def check_student_fits(s: dict, cfg: dict, teacher_config=None):
    """A student's model (its own `model`, else the teacher's config) can be read (models.check_local_model: a
    folder that is a saved model; a hub id cached or reachable) and has the layers and positions the student takes;
    returns its transformers config."""
    where = f"student '{s['name']}'"
    config = model_config(s["model"]) if "model" in s else teacher_config
    if "layers" in s:
        check_layers(s["layers"], getattr(config, "num_hidden_layers", None), f"{where}: ")
    check_max_length(config, student_settings(s, cfg)["max_length"], where)
    return config


def check_student_models(students: list, cfg: dict, teacher_dir: Path | None) -> None:
    """What each student's model decides, read from configs and tokenizers without loading weights:
    its layers exist, its max_length fits its positions, and the intermediate losses can compare it
    with the teacher (the same tokenizer; the same head count for attention)."""
    from models import tokenizer_fingerprint
    teacher_config = model_config(str(teacher_dir)) if teacher_dir else None    # None: soft labels only
    teacher_tok = None
    for s in students:
        st, where = student_settings(s, cfg), f"student '{s['name']}'"
        config = check_student_fits(s, cfg, teacher_config)
        if st["hidden_weight"] > 0 or st["attention_weight"] > 0:
            teacher_tok = teacher_tok or load_tokenizer(str(teacher_dir))
            if tokenizer_fingerprint(load_tokenizer(s.get("model") or str(teacher_dir))) != tokenizer_fingerprint(teacher_tok):
                raise UsageError(f"{where}: hidden_weight / attention_weight need the teacher's tokenizer (the losses "
                                 f"compare the same tokens); set them to 0 for this student or cut it from the teacher")
            if st["attention_weight"] > 0 and config.num_attention_heads != teacher_config.num_attention_heads:
                raise UsageError(f"{where}: attention_weight needs as many attention heads as the teacher "
                                 f"({config.num_attention_heads} vs {teacher_config.num_attention_heads}); set it to 0")
            if st["attention_weight"] > 0 and not readable_attention(config):
                raise UsageError(f"{where}: attention_weight > 0, but a {config.model_type} student's attention maps "
                                 f"cannot be read before dropout here; set it to 0 (hidden_weight still works)")


def readable_attention(config) -> bool:
    """Whether a student of this config can give its attention maps before dropout (training.attention_reading),
    judged on its structure built on the meta device: no weights read, nothing allocated."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from training import attention_reading
    with torch.device("meta"):
        return bool(attention_reading(AutoModelForSequenceClassification.from_config(config))[0])


# ----------------------------------------------------------------------------------------------
def check_config(cfg: dict) -> None:
    """Checks run before anything is written: what needs no teacher (check_before_teacher), the teacher (or its
    soft labels) and that the data is the teacher's."""
    check_before_teacher(cfg)
    teacher, ours, runs = find_teacher(), DataSpec.from_settings(cfg), selected_runs(cfg)
    check_published_teacher(teacher)
    check_teacher_data(teacher, ours, cfg)
    check_teacher_accuracy(teacher)
    if not teacher.has_model:
        check_without_model(list({r.spec["name"]: r.spec for r in runs}.values()), cfg, ours)
    from runs import check_resume, kept_as_is, run_dirs
    wanted = {r.name: (run_dirs(OUTPUT_DIR, EXPERIMENT, "students", r.name), run_settings(r, cfg, teacher)) for r in runs}
    to_train = {r.spec["name"] for r in runs             # one kept as it is needs no base model (offline: none at hand)
                if not kept_as_is(wanted[r.name][0][0], wanted[r.name][1], OVERWRITE)}
    check_student_models([s for s in STUDENTS if s["name"] in to_train], cfg, teacher.where if teacher.has_model else None)
    check_best_seeds(runs, cfg, teacher)
    transfer = reads_transfer(runs)
    soft = soft_label_splits()
    if soft and not ours.is_imdb:
        raise UsageError(f"--soft_label_splits={','.join(soft)}: published soft labels are made for IMDb only; "
                         f"leave it empty with --data={DATA}")
    if set(soft) - {"train", "unsupervised", "test"}:
        raise UsageError(f"--soft_label_splits={','.join(soft)}: IMDb splits are train, unsupervised and test")
    imdb_transfer = ["unsupervised"] if transfer and not TRANSFER_DATA else []
    check_data(ours, tuple(dict.fromkeys(["train", "test", *imdb_transfer, *soft])))
    data = load_splits(ours, transfer=transfer)
    check_labels(teacher, data.label_names)
    check_digests(teacher.digests or {}, data, ("train", "validation", "test"), teacher.where)   # test: its leaks left train
    check_transfer_size(runs, data)
    for dirs, settings in wanted.values():
        check_resume(dirs, settings, OVERWRITE)
    if not teacher.has_model:     # every text to learn from has published logits (the selected runs: a superset)
        published_logits(list(data.train["text"]) + transfer_pool(data, runs), teacher.where)
    check_length_against_teacher(runs, teacher.trained.get("max_length"), f"the teacher {teacher.where} was trained on",
                                 to_train, cfg)


def check_before_teacher(cfg: dict) -> None:
    """What can be checked before a teacher exists (run_experiment.sh checks it before the teacher trains): the
    students, --only, and the transfer texts: TRANSFER_DATA that no selected student reads (TRANSFER_SIZE 0: they
    would learn from the labels alone) is warned of; a file or folder that they read is read now, so that a wrong
    path, format or column is one line before the teacher's hours, not after."""
    check_students(STUDENTS, cfg)
    names = {s["name"] for s in STUDENTS}
    unknown = [n for n in ONLY if n and n not in names]
    twin = next((s for s in STUDENTS if unknown and s["name"] == unknown[0].removesuffix("-baseline")), None)
    if twin and student_settings(twin, cfg)["baseline"]:
        raise UsageError(f"--only={','.join(ONLY)}: {unknown[0]} is the labels-only baseline of {twin['name']}, trained "
                         f"beside it: --only={twin['name']} trains the two (a finished one is kept)")
    if twin:
        raise UsageError(f"--only={','.join(ONLY)}: {twin['name']} trains no labels-only baseline (baseline = false); "
                         f"set baseline = true for it, then --only={twin['name']}")
    if unknown:
        raise UsageError(f"--only={','.join(ONLY)}: no student {unknown[0]!r}; students: {', '.join(sorted(names))} "
                         f"(one trained from --students=... is named there again, or in the config's students = [...])")
    table = TRANSFER_DATA not in ("", "validation") and not data_utils.is_lines_file(TRANSFER_DATA)
    if TRANSFER_TEXT_COLUMN and not table:
        raise UsageError(f"--transfer_text_column={TRANSFER_TEXT_COLUMN} names a column of a transfer_data table, but "
                         f"transfer_data = {TRANSFER_DATA!r} is not one; leave transfer_text_column out")
    runs = selected_runs(cfg)
    if not reads_transfer(runs):
        if TRANSFER_DATA and not any(ONLY):        # --only: other students may read it
            log.warning("transfer_data = %s, but no student has transfer_size > 0, so none reads it: they learn from "
                        "the labels alone; set transfer_size = N (under [distill_student], or per student) to add N of "
                        "its texts", TRANSFER_DATA)
    elif TRANSFER_DATA not in ("", "validation"):
        spec = DataSpec.from_settings(cfg)
        texts = data_utils.transfer_file_texts(spec)
        # repeats are dropped (check_transfer_size, later), as prepared for training (IMDb's <br />, escapes decoded)
        have = len(set(data_utils.prepared(texts, spec))) if DROP_LEAKS else len(texts)
        most = max((r for r in runs if r.distilled), key=lambda r: r.settings["transfer_size"], default=None)
        if most is not None and most.settings["transfer_size"] > have:     # leak removal may leave fewer still
            distinct = f", {have:,} of them distinct (repeats are dropped)" if have < len(texts) else ""
            later = " (or fewer: texts also in train, validation or test are dropped too)" if DROP_LEAKS else ""
            raise UsageError(f"student {most.name!r}: transfer_size = {most.settings['transfer_size']}, but "
                             f"--transfer_data={TRANSFER_DATA} holds {len(texts):,} texts{distinct}; set it to at most "
                             f"{have}{later}")


def check_models_before_teacher(cfg: dict) -> None:
    """The models named by the selected students still to train (check_student_fits; run_experiment.sh checks them
    before the teacher trains, last: every setting's typo is said first): a folder that is no saved model, or a
    hub id neither cached nor reachable, is one line then, not after the teacher's hours. A finished student kept
    as it is needs no base model (offline: none at hand); a student cut from the teacher is checked once it exists."""
    from models import local_path
    from runs import run_dirs
    teacher = teacher_folder(OUTPUT_DIR, EXPERIMENT, TEACHER_DIR)
    fresh = [r for r in selected_runs(cfg)
             if OVERWRITE or not is_finished(run_dirs(OUTPUT_DIR, EXPERIMENT, "students", r.name)[0])]
    for spec in {r.spec["name"]: r.spec for r in fresh if "model" in r.spec}.values():
        path = local_path(spec["model"])
        if path is None or is_finished(teacher) or path.resolve() != teacher.resolve():   # the teacher to train: later
            check_student_fits(spec, cfg)


def check_length_against_teacher(runs: list, theirs: int | None, teacher_text: str, to_train: set, cfg: dict,
                                 warn: bool = True) -> None:
    """Students that would read more tokens than the teacher reads (`theirs`; `teacher_text` names it, e.g. "the
    teacher T was trained on"): refused when they take MAX_LENGTH (each script's own constant: edited in one file and
    not the other, the students would train and predict slower, on text the teacher never read; a config file's
    top-level max_length sets both), warned of (`warn`) when their STUDENTS entry gives a max_length of its own
    (meant). Only students to train (`to_train`, names): a kept one is as it was."""
    longer = {r.spec["name"]: r.settings["max_length"] for r in runs if theirs and r.settings["max_length"] > theirs}
    own = {r.spec["name"] for r in runs if r.spec.get("max_length") == r.settings["max_length"]}   # its own: meant
    unmeant = [n for n in longer if n in to_train and n not in own]
    if unmeant:
        set_as = where_in(cfg, "max_length", MAX_LENGTH, "distill_student")
        raise UsageError(f"{set_as}, but {teacher_text} {theirs} tokens: student"
                         f"{'s' * (len(unmeant) > 1)} {', '.join(unmeant)} would read {MAX_LENGTH}, training and "
                         f"predicting slower on text the teacher never read; set it to {theirs} (--max_length={theirs}; "
                         f"a config file's top-level max_length sets every script's), or give a student a max_length "
                         f"of its own in STUDENTS to mean it")
    if longer and warn:
        log.warning("students read more tokens than %s (%d): %s; they train and predict slower for it (--max_length=%d, "
                    "or max_length at the top of the config, gives them its length)",
                    teacher_text, theirs, ", ".join(f"{n} {m}" for n, m in longer.items()), theirs)


def check_length_before_teacher(cfg: dict, teacher_cfg: dict) -> None:
    """check_length_against_teacher for a teacher still to train (run_experiment.sh, its configuration
    `teacher_cfg`: fine_tuning_teacher.py's constants under the same file and flags), so that the refusal comes
    before its hours, not after. A finished teacher that is kept is checked at distill_student.py's start instead
    (its recorded length)."""
    theirs = teacher_cfg.get("MAX_LENGTH")
    if not theirs or (is_finished(teacher_folder(OUTPUT_DIR, EXPERIMENT, "")) and not teacher_cfg.get("OVERWRITE")):
        return
    set_as = where_in(teacher_cfg, "max_length", theirs, "fine_tuning_teacher")
    runs = selected_runs(cfg)
    check_length_against_teacher(runs, theirs, f"the teacher to train ({set_as}) reads", {r.spec["name"] for r in runs},
                                 cfg, warn=False)


def run_settings(run: "Run", cfg: dict, teacher: Teacher) -> dict:
    """What an interrupted student run must resume with (runs.resume_settings): the shared settings, its own
    as trained, its model and layers, and the teacher when it learns from it or is cut from it."""
    from runs import resume_settings
    shared = {k: v for k, v in cfg.items() if k.lower() not in PER_STUDENT}
    own = {k: v for k, v in run.trained_with.items() if k != "baseline"} | \
        {"model": run.spec.get("model"), "layers": run.spec.get("layers"), "distilled": run.distilled}
    if not run.distilled and MATCH_STEPS:   # its steps and evaluations: its twin's, with the twin's transfer texts
        own["twin_transfer_size"] = run.settings["transfer_size"]
    if run.distilled and (run.settings["hidden_weight"] > 0 or run.settings["attention_weight"] > 0) and \
            cut_from_teacher(run.spec, teacher.where):   # matched to the top of each block since 2 Dec 2026 (layer_map)
        own["layer_map"] = "top of each block"
    return resume_settings(shared, student=own, teacher=run_fingerprint(teacher.where) if run.from_teacher else None)


def check_transfer_size(runs: list, data) -> None:
    """UsageError for a student that asks for more transfer texts than there are (after leak removal)."""
    have = len(data.transfer)
    for r in runs:
        if r.distilled and r.settings["transfer_size"] > have:
            counts = data.report if data.report["dropped"] else {}
            why = [f"{counts[k]:,} {what}" for k, what in (("transfer_texts_in_validation_or_test", "in validation or test"),
                   ("transfer_duplicate_texts", "repeats"), ("transfer_texts_in_train", "train texts")) if counts.get(k)]
            less = f" (dropped: {', '.join(why)})" if why else ""
            raise UsageError(f"student {r.name!r}: transfer_size = {r.settings['transfer_size']}, but there are "
                             f"{have:,} transfer texts{less}; set it to at most {have}")


def soft_label_splits() -> list[str]:
    return [s for s in SOFT_LABEL_SPLITS if s]


@dataclass
class Run:
    """One model to train: a student distilled from the teacher, or its labels-only baseline."""
    name: str                     # output folder name: the student's, or <name>-baseline
    spec: dict                    # its STUDENTS entry
    distilled: bool
    settings: dict                # student_settings(spec): every PER_STUDENT key, as configured
    dirs: tuple = ()              # (model folder, checkpoint folder, published record): runs.run_dirs

    @property
    def from_teacher(self) -> bool:
        """Whether it learns from the teacher: distilled, or cut from its layers (no `model` of its own)."""
        return self.distilled or not self.spec.get("model")

    @property
    def trained_with(self) -> dict:
        """The settings it actually trains with: a baseline has alpha 1 (labels only) and no transfer texts."""
        return self.settings if self.distilled else self.settings | {"alpha": 1.0, "transfer_size": 0}


def student_runs(students: list[dict], cfg: dict, only: list[str]) -> list[Run]:
    """Every model to train: each student, then its labels-only baseline (when its `baseline` setting is on)."""
    runs = []
    for s in students:
        if only and s["name"] not in only:
            continue
        settings = student_settings(s, cfg)
        runs.append(Run(s["name"], s, True, settings))
        if settings["baseline"]:
            runs.append(Run(f"{s['name']}-baseline", s, False, settings))
    return runs


def selected_runs(cfg: dict) -> list[Run]:
    """The runs of STUDENTS that --only selects (all when it is empty)."""
    return student_runs(STUDENTS, cfg, [n for n in ONLY if n])


def reads_transfer(runs: list[Run]) -> bool:
    """Whether the data is loaded with transfer texts: a distilled run adds them, a matched baseline counts its
    twin's steps with them. Over every selected run, finished or not, so that check_config and main load the
    same (cached) data."""
    return any(r.settings["transfer_size"] and (r.distilled or MATCH_STEPS) for r in runs)


def pending_runs(cfg: dict, teacher: Teacher, candidates: list[Run] | None = None) -> tuple[list[Run], dict]:
    """(runs still to train, {name: metrics} of the finished ones, which are kept unless OVERWRITE), among
    `candidates` (default: selected_runs)."""
    from runs import run_dirs, should_train
    runs, finished = [], {}
    for run in selected_runs(cfg) if candidates is None else candidates:
        run.dirs = run_dirs(OUTPUT_DIR, EXPERIMENT, "students", run.name)
        if should_train(*run.dirs[:2], OVERWRITE, run_settings(run, cfg, teacher)):
            runs.append(run)
        else:   # kept as it is: no data, no teacher pass for it
            log.info("student %s: finished run in %s, kept (%s)", run.name, run.dirs[0],
                     "this --overwrite command finished it before it was stopped" if OVERWRITE else "--overwrite=true retrains it")
            finished[run.name] = read_json(run.dirs[0] / "metrics.json")
    return runs, finished


def load_data(cfg: dict, runs: list[Run], teacher: Teacher):
    """(Splits, transfer pool, label names): the teacher's split, and the unlabeled texts the distilled
    runs use (the first TRANSFER_SIZE of a seeded shuffle; a matched baseline loads the pool only to
    count its twin's optimizer steps)."""
    data = load_splits(DataSpec.from_settings(cfg), transfer=reads_transfer(selected_runs(cfg)))
    log_splits(data, DataSpec.from_settings(cfg))
    return data, transfer_pool(data, runs), check_labels(teacher, data.label_names)


def transfer_pool(data, runs: list[Run]) -> list[str]:
    """The unlabeled texts the distilled runs learn from: the first n of a seeded shuffle of the transfer
    texts, n the largest transfer_size among them (each run takes its own first transfer_size)."""
    n = max([r.settings["transfer_size"] for r in runs if r.distilled] + [0])
    idx = np.random.default_rng(SEED).permutation(len(data.transfer))[:n] if n else []
    return [data.transfer[i] for i in idx]


def teacher_pass(runs: list[Run], train_texts: list[str], pool: list[str], teacher: Teacher):
    """(logits (N, C) for the train texts then the pool, cache stats), or (None, None) when no distilled
    run is left; computed once (the per-text cache; rank 0 first under torchrun), or read from the
    published soft labels."""
    from training import process_state
    if not any(r.distilled for r in runs):
        return None, None
    t0 = time.time()
    with process_state().main_process_first():
        logits, stats = cached_teacher_logits(train_texts + list(pool), teacher.where, teacher.where.parent / "teacher_logits",
                                              TEACHER_BATCH_SIZE) if teacher.has_model else \
            published_logits(train_texts + list(pool), teacher.where)
    stats["wall_seconds"] = round(time.time() - t0, 1)
    return logits, stats


def twin_steps(run: Run, n_train: int, n_unlabeled: int, epochs: float) -> int:
    """Optimizer steps of `epochs` passes over the data of the distilled run of this student (labels + its
    transfer texts), each step a batch on every device (a lone process on several GPUs: DataParallel's batch)."""
    from runs import devices_per_process
    from training import optimizer_steps, process_state
    st = run.settings
    return optimizer_steps(n_train + min(st["transfer_size"], n_unlabeled), epochs, st["batch_size"] * devices_per_process(),
                           GRAD_ACCUM, process_state().num_processes)


def matched_steps(run: Run, n_train: int, n_unlabeled: int) -> int:
    """A baseline's optimizer steps: its distilled twin's, whose data adds the transfer texts (MATCH_STEPS);
    -1 (train by epochs) otherwise."""
    return -1 if run.distilled or not MATCH_STEPS else twin_steps(run, n_train, n_unlabeled, run.settings["epochs"])


def evaluation_steps(run: Run, n_train: int, n_unlabeled: int) -> int:
    """Steps between a student's evaluations (and checkpoints; the best by validation BEST_METRIC is kept): EVAL_STEPS
    when set, else one epoch of the distilled twin's data, for both twins. A baseline's epochs over the labels alone
    are shorter: evaluated at each, it would be chosen among more checkpoints than its twin. 0 (each epoch) for an
    unmatched baseline."""
    if EVAL_STEPS:
        return EVAL_STEPS
    return twin_steps(run, n_train, n_unlabeled, 1.0) if run.distilled or MATCH_STEPS else 0


def student_data(run: Run, tok, data, pool: list[str], logits):
    """(train, validation) tokenized for this student (cached): train rows, then its transfer texts with
    label -1, and for a distilled run each row's teacher logits."""
    from training import process_state
    from datasets import Dataset
    n = run.trained_with["transfer_size"]
    rows = Dataset.from_dict({"text": list(data.train["text"]) + list(pool[:n]),
                              "label": list(data.train["label"]) + [data_utils.UNLABELED] * n})
    max_length = run.settings["max_length"]
    with process_state().main_process_first():
        train = tokenize_dataset(rows, tok, max_length, TRUNCATION, HEAD_TOKENS, CACHE_DIR, "distill")
        val = tokenize_dataset(data.validation, tok, max_length, TRUNCATION, HEAD_TOKENS, CACHE_DIR, "validation")
    if run.distilled:
        train = train.add_column("teacher_logits", logits[:len(rows)].tolist())
    return train, val


def student_source(spec: dict) -> str:
    """What a STUDENTS entry is made from, e.g. `distilroberta-base`, `teacher layers [0, 2, 4]`."""
    return " ".join(filter(None, [spec.get("model") or "teacher", spec.get("layers") and f"layers {spec['layers']}"]))


def train_student(run: Run, cfg: dict, data, pool: list[str], labels: list[str], logits, stats, teacher: Teacher) -> dict:
    """Build, train and save one student (distilled or baseline); its metrics."""
    from transformers import set_seed

    from training import DistillTrainer, compute_metrics, loggers, model_record, train_and_save, training_arguments
    st = run.trained_with
    set_seed(st["seed"])
    steps = matched_steps(run, len(data.train), len(data.transfer))
    every = evaluation_steps(run, len(data.train), len(data.transfer))
    model, tok = build_student(run.spec, teacher.where, st["seed"], labels)
    source = student_source(run.spec)
    log.info("student %s (%s): %.1fM parameters, %s, alpha=%s T=%s transfer=%d seed=%d%s%s", run.name, source,
             count_parameters(model) / 1e6, "distilled" if run.distilled else "labels-only baseline", st["alpha"],
             st["temperature"], st["transfer_size"], st["seed"], f", {steps} steps as its distilled twin" if steps > 0 else "",
             f", validated every {every} steps" if every else "")
    train, val = student_data(run, tok, data, pool, logits)
    inner = intermediate_setup(model, teacher.where, run.spec, st, run.name) \
        if run.distilled and (st["hidden_weight"] > 0 or st["attention_weight"] > 0) else {}
    args = training_arguments(run.dirs[1], epochs=st["epochs"], batch_size=st["batch_size"], max_steps=steps,
                              learning_rate=st["learning_rate"], eval_batch_size=EVAL_BATCH_SIZE, seed=st["seed"],
                              grad_accum=GRAD_ACCUM, weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO,
                              logging_steps=LOGGING_STEPS, num_workers=NUM_WORKERS, eval_every=every,
                              best_metric=BEST_METRIC)
    trainer = DistillTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, data_collator=PadCollator(tok),
                             processing_class=tok, compute_metrics=compute_metrics, alpha=st["alpha"],
                             callbacks=loggers(REPORT_TO, Path(OUTPUT_DIR) / EXPERIMENT / "runs" / run.name),
                             temperature=st["temperature"], **inner)
    record = model_record("student", kind="distilled" if run.distilled else "baseline", student=run.spec,
                          teacher=str(teacher.where), base_model=run.spec.get("model") or teacher.base_model,
                          settings={k: v for k, v in st.items() if k != "max_length"},
                          layer_map=inner.get("layer_map"), max_length=st["max_length"], truncation=TRUNCATION,
                          head_tokens=HEAD_TOKENS, run_config=public_config(cfg))
    extra = {"teacher_val_accuracy": teacher.val_accuracy, "teacher_parameters": teacher.parameters,
             "teacher_logits": stats if run.distilled else None}
    metrics = train_and_save(trainer, tok, run.dirs, record, extra, KEEP_CHECKPOINTS, run_settings(run, cfg, teacher))
    del trainer, model, inner
    gc.collect()
    return metrics


def name_card_baseline(run: Run, runs: list[Run]) -> None:
    """After a baseline, the card of its distilled twin trained in this run too (saved before it, the card named
    no baseline, or after --overwrite the old one's accuracy) is rewritten to name it."""
    from configurator import is_main_process
    from model_card import write_card
    twin = next((r for r in runs if r.distilled and f"{r.name}-baseline" == run.name), None)
    if not run.distilled and twin is not None and is_main_process():
        write_card(twin.dirs[0], twin.name)


# ----------------------------------------------------------------------------------------------
# a study's second phase (BEST_SEEDS): the entry of each student chosen on validation, at more seeds
# ----------------------------------------------------------------------------------------------
def validation_rows(runs: list[Run]) -> list[dict] | None:
    """Each run's validation result in evaluate_models' row form (model, kind, student, settings, max_length, seed,
    steps; accuracy = its val_accuracy; missed: models.unpredicted_classes, "" when it predicted every class), from
    its saved model folder; None while one is unfinished."""
    rows = []
    for run in runs:
        if not is_finished(run.dirs[0]):
            return None
        config = read_json(run.dirs[0] / "config.json")
        kd, metrics = config.get("sentiment_kd", {}), read_json(run.dirs[0] / "metrics.json")
        rows.append({"model": run.name, "kind": "distilled" if run.distilled else "baseline",
                     "accuracy": metrics["val_accuracy"], "f1": metrics.get("val_f1"),
                     "missed": unpredicted_classes(metrics, len(label_names(config)))}
                    | student_fields(kd, metrics))
    return rows


def choose_best(rows: list[dict], by: str = "accuracy") -> list[dict]:
    """Per student (model + layers, in order of first appearance): each distilled row that has a matched baseline
    (the baseline row with its models.student_key: the same student, seed, optimizer steps and training settings)
    is a candidate, gain = accuracy - baseline accuracy (rounded to 1e-9); the chosen one has, by="accuracy", the
    highest accuracy, ties going to the higher macro F1 (validation's too: the baseline plays no part), or by="gain"
    the largest gain, ties going to the higher accuracy; then to the first. (By gain, a baseline's low draw counts
    as the entry's merit: the winner's gain is biased up.) Rows without a matched baseline are not candidates, and an
    entry that predicted only some classes on validation (row "missed") is chosen only when every candidate did.
    rows: validation_rows(). Returns [{student, candidates: [{model, accuracy, f1, baseline, baseline_accuracy, gain,
    missed}], chosen}]."""
    baselines = {}
    for r in rows:
        if r["kind"] == "baseline":
            baselines.setdefault(student_key(r), r)
    students: dict[str, list] = {}
    for r in rows:
        b = baselines.get(student_key(r))
        if r["kind"] == "distilled" and b is not None:
            students.setdefault(student_source(r["student"] or {}), []).append(
                {"model": r["model"], "accuracy": r["accuracy"], "f1": r.get("f1"), "baseline": b["model"],
                 "baseline_accuracy": b["accuracy"],
                 "gain": round(r["accuracy"] - b["accuracy"], 9), "missed": r.get("missed", "")})
    order = (lambda x: (not x["missed"], x["accuracy"], x["f1"] or 0.0)) if by == "accuracy" else \
        (lambda x: (not x["missed"], x["gain"], x["accuracy"]))
    return [{"student": k, "candidates": c, "chosen": max(c, key=order)["model"]} for k, c in students.items()]


CHOOSE_BY_WORDS = {"accuracy": "validation accuracy of each distilled entry with a matched baseline, ties to its macro F1",
                   "gain": "validation accuracy of each distilled entry minus its matched baseline's, ties to the higher accuracy"}


def seed_entries(spec: dict, seed: int, n: int) -> list[dict]:
    """The STUDENTS entry `spec`, trained at `seed`, again at seeds seed+1 .. seed+n-1: the same entry but for its
    name, <label>-s<seed> (label: its name less a -s<seed> suffix, as models.recipe groups seeds), and seed."""
    label = recipe({"model": spec["name"], "student": spec | {"seed": seed}})[0]
    return [spec | {"name": f"{label}-s{s}", "seed": s} for s in range(seed + 1, seed + n)]


def choosing() -> bool:
    """Whether this run makes a study's choice: BEST_SEEDS > 1 over the whole of STUDENTS (no --only)."""
    return BEST_SEEDS > 1 and not [n for n in ONLY if n]


def check_best_seeds(runs: list[Run], cfg: dict, teacher: Teacher) -> None:
    """With BEST_SEEDS, before anything is trained: the choice needs baselines; the seeds it adds need names of their
    own (not another STUDENTS entry's, not one two entries would both take); and any entry may be chosen and trained
    again, so the base model of each whose added seeds are not all finished must be at hand."""
    from runs import run_dirs
    if not choosing():
        return
    made = Path(OUTPUT_DIR) / EXPERIMENT / "chosen.json"
    by = read_json(made).get("choose_by", "gain") if made.is_file() else CHOOSE_BY    # before choose_by: by gain
    if by != CHOOSE_BY and not OVERWRITE:     # choosing again by another rule would train other seeds beside its own
        raise UsageError(f"--choose_by={CHOOSE_BY}: this study's choice ({made}) was made by {by}; go on with "
                         f"--choose_by={by}, or remove that file to choose again by {CHOOSE_BY} (the seeds trained "
                         f"for the old choice stay, unused)")
    if all(r.distilled for r in runs):
        raise UsageError(f"--best_seeds={BEST_SEEDS}: no student has a labels-only baseline to be chosen by; set "
                         f"baseline = true (or --best_seeds=0)")
    specs, taken, unfinished = {s["name"]: s for s in STUDENTS}, {}, []
    for r in (r for r in runs if r.distilled):
        entries = seed_entries(r.spec, r.settings["seed"], BEST_SEEDS)
        for e in entries:
            if specs.get(e["name"], e) != e:
                raise UsageError(f"--best_seeds={BEST_SEEDS}: {r.name} would be trained again as {e['name']}, a name "
                                 f"STUDENTS gives another entry; rename one of them")
            if taken.setdefault(e["name"], r.name) != r.name:
                raise UsageError(f"--best_seeds={BEST_SEEDS}: {taken[e['name']]} and {r.name} would both be trained "
                                 f"again as {e['name']}; rename one of them")
        if not all(is_finished(run_dirs(OUTPUT_DIR, EXPERIMENT, "students", e["name"])[0]) for e in entries):
            unfinished.append(r.spec)
    check_student_models(unfinished, cfg, teacher.where if teacher.has_model else None)


def forget_choice(runs: list[Run]) -> None:
    """Before a sweep with entries left to train: the choice made without them (chosen.json) is removed, so that
    nothing evaluates it as the study's; the sweep's end makes the choice again."""
    from configurator import is_main_process
    path = Path(OUTPUT_DIR) / EXPERIMENT / "chosen.json"
    if choosing() and runs and path.is_file() and is_main_process():
        path.unlink()
        log.info("best_seeds: %s removed: entries of the sweep are left to train; its end chooses again", path)


def best_seed_runs(cfg: dict, teacher: Teacher) -> list[Run]:
    """With BEST_SEEDS > 1 and every run of STUDENTS finished: the entry chosen per student (choose_best, on
    validation), recorded with the candidates in OUTPUT_DIR/EXPERIMENT/chosen.json, as runs at its further seeds,
    each followed by its labels-only baseline (also for an entry that had none: its gain needs one per seed);
    each checked like the sweep's (runs.check_resume: a kept or resumed run of other settings is refused)."""
    from configurator import is_main_process
    from runs import check_resume, run_dirs
    if BEST_SEEDS > 1 and not choosing():
        log.info("--best_seeds=%d with --only: no recipe chosen among some entries (run without --only to choose)", BEST_SEEDS)
    if not choosing():
        return []
    runs = selected_runs(cfg)
    for run in runs:
        run.dirs = run_dirs(OUTPUT_DIR, EXPERIMENT, "students", run.name)
    rows = validation_rows(runs)
    if rows is None:
        log.warning("--best_seeds=%d: some students are unfinished; no recipe chosen", BEST_SEEDS)
        return []
    specs, seeds, more = {r.name: r.spec for r in runs}, {r["model"]: r["seed"] for r in rows}, []
    chosen = choose_best(rows, CHOOSE_BY)
    for c in chosen:
        entries = seed_entries(specs[c["chosen"]], seeds[c["chosen"]], BEST_SEEDS)
        first = next(x for x in c["candidates"] if x["model"] == c["chosen"])
        c |= {"models": [c["chosen"]] + [e["name"] for e in entries],
              "baselines": [first["baseline"]] + [f"{e['name']}-baseline" for e in entries], "entries": entries}
        log.info("best_seeds: %s: %s chosen on validation by %s (accuracy %.4f, gain %+.4f over %s), at seeds %s",
                 c["student"], c["chosen"], CHOOSE_BY, first["accuracy"], first["gain"], first["baseline"],
                 [seeds[c["chosen"]]] + [e["seed"] for e in entries])
        if first["missed"]:     # every candidate did: the choice is between models that have not learned
            log.warning("best_seeds: every candidate of %s predicted only some classes on validation (%s: %s): the "
                        "choice means little and its seeds will not learn either; give the entries more steps "
                        "(--epochs) and run the sweep again (--overwrite=true: its finished entries are kept otherwise)",
                        c["student"], c["chosen"], first["missed"])
        for e in entries:
            settings = student_settings(e, cfg) | {"baseline": True}
            more += [Run(e["name"], e, True, settings), Run(f"{e['name']}-baseline", e, False, settings)]
    for run in more:
        check_resume(run_dirs(OUTPUT_DIR, EXPERIMENT, "students", run.name), run_settings(run, cfg, teacher), OVERWRITE)
    unpaired = sorted({student_source(r["student"] or {}) for r in rows} - {c["student"] for c in chosen})
    if unpaired:
        log.warning("best_seeds: no distilled entry of %s has a matched baseline; none chosen for it", ", ".join(unpaired))
    if is_main_process():
        write_json(Path(OUTPUT_DIR) / EXPERIMENT / "chosen.json",
                   {"by": CHOOSE_BY_WORDS[CHOOSE_BY] + " (matched: same student, seed, optimizer steps and training "
                          "settings); an entry that predicted every class on validation before one that did not; no "
                          "test review read", "choose_by": CHOOSE_BY, "best_seeds": BEST_SEEDS,
                    "students": chosen})
    return more


def train_runs(runs: list[Run], cfg: dict, teacher: Teacher, results: dict) -> dict | None:
    """Train and save `runs` (each one's metrics into results): the teacher's split, labels and transfer pool,
    the teacher's logits for their texts once, then each run in order. The logits' stats; None if no run."""
    if not runs:
        return None
    data, pool, labels = load_data(cfg, runs, teacher)
    logits, stats = teacher_pass(runs, list(data.train["text"]), pool, teacher)
    if logits is not None:
        log.info("teacher accuracy on the distillation train split: %.4f",
                 (logits[:len(data.train)].argmax(-1) == np.array(data.train["label"])).mean())
    for run in runs:
        results[run.name] = train_student(run, cfg, data, pool, labels, logits, stats, teacher)
        name_card_baseline(run, runs)
    return stats


def publish_requested_soft_labels(teacher: Teacher) -> None:
    """SOFT_LABEL_SPLITS: the teacher's logits for every review of those splits, into OUTPUT_DIR/EXPERIMENT/soft_labels/."""
    if soft_label_splits():
        from training import process_state
        with process_state().main_process_first():    # rank 0 writes; under torchrun the others then find it all
            publish_soft_labels(soft_label_splits(), teacher.where, Path(OUTPUT_DIR) / EXPERIMENT / "soft_labels",
                                TEACHER_BATCH_SIZE, SOFT_LABEL_ROWS)


def main(argv=None) -> dict:
    cfg = start_run(globals(), argv, "distill_student", "distill.log", check=check_config)
    from runs import overwrite_run
    command = sys.argv[1:] if argv is None else argv      # stopped, the same command keeps what it finished
    with overwrite_run(Path(OUTPUT_DIR) / EXPERIMENT, OVERWRITE, command):
        return distill(cfg)


def distill(cfg: dict) -> dict:
    """Each student not kept trained, distilled or on the labels alone; {students: metrics, teacher_logits: stats}."""
    teacher = find_teacher()
    # 1. what is left to train (finished students are kept), and the published soft labels
    runs, results = pending_runs(cfg, teacher)
    publish_requested_soft_labels(teacher)
    forget_choice(runs)

    # 2. the teacher's logits once, then each student (distilled, then its labels-only baseline)
    stats = train_runs(runs, cfg, teacher, results)

    # 3. BEST_SEEDS: the entry of each student chosen on validation, at more seeds, each beside a baseline
    more, kept = pending_runs(cfg, teacher, best_seed_runs(cfg, teacher))
    results |= kept
    stats = train_runs(more, cfg, teacher, results) or stats
    if not runs and not more:
        log.info("every student is finished; nothing to train" if results else "no students to train (STUDENTS is empty)")
    else:
        log.info("students: %s", {n: {"val_accuracy": m["val_accuracy"], "train_time_s": m["train_time_s"]}
                                  for n, m in results.items()})
    return {"students": results, "teacher_logits": stats}


if __name__ == "__main__":
    run_main(main)
