"""Fine-tune the teacher: a sequence classifier on IMDb sentiment (or your own data) with the Hugging Face Trainer.

Reads  the data (DATA: IMDb from IMDB_DIR / --data_dir, else the hub; or your own CSV/TSV/JSON Lines/
       parquet file or folder, or a hub dataset, with any number of classes) and a pretrained encoder (MODEL_NAME),
       or a classifier already fine-tuned for the data's classes, taken as it is with FINE_TUNE off.
Writes outputs/<EXPERIMENT>/teacher/: weights, tokenizer, config.json (label names, truncation
       settings and the run's effective configuration under `sentiment_kd`) and metrics.json
       (validation accuracy/F1, train time, examples/s). Reload with from_pretrained or
       pipeline("text-classification", model="outputs/<EXPERIMENT>/teacher", truncation=True).
       outputs/<EXPERIMENT>/models/teacher.json: the published record (config + metrics, in git).
       Checkpoints go to outputs/<EXPERIMENT>/checkpoints/teacher/ (an interrupted run resumes from
       the last one); logs to outputs/<EXPERIMENT>/logs/teacher.log. A finished teacher (weights and
       metrics.json in its folder) is kept, and the script says so, unless --overwrite=true; one made with
       other settings than asked for is refused, naming the first that differs.

    python fine_tuning_teacher.py                                  # paper: roberta-large, full IMDb
    python fine_tuning_teacher.py --config configs/quick.toml      # MiniLM-L6 on 1,600 reviews, CPU
    python fine_tuning_teacher.py --config configs/quick.toml --learning_rate=5e-5 --overwrite=true
    python fine_tuning_teacher.py --config configs/tweets.toml     # 3-class tweets (your own data: README)
    python fine_tuning_teacher.py --config configs/mine.toml --model_name=MY_CLASSIFIER --fine_tune=false
                                   # a classifier fine-tuned elsewhere, taken as the teacher as it is (evaluated only)
    torchrun --nproc_per_node 4 fine_tuning_teacher.py --config configs/bert.toml   # multi-GPU (DDP)

Offline: export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1
"""
import sys
from pathlib import Path

from configurator import UsageError, log, public_config, run_main, start_run
from data_utils import DataSpec, check_data, load_splits, log_splits, read_json, split_digests
from models import (PadCollator, check_max_length, count_parameters, head_plan, is_classifier, label_names, load_classifier,
                    model_config, tokenize_dataset)

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT: str = "paper"         # run name: everything goes to OUTPUT_DIR/EXPERIMENT/
OUTPUT_DIR: str = "outputs"       # root of all runs
CACHE_DIR: str = "outputs/cache"  # tokenized splits, shared by experiments (keyed by content)
OVERWRITE: bool = False           # retrain a finished teacher in OUTPUT_DIR/EXPERIMENT/teacher (else it is kept)
# --- data (data_utils.DataSpec; students and evaluation must use the same) -----------------------
DATA: str = "imdb"                # imdb | a .csv/.tsv/.jsonl/.parquet file, or a folder of train/validation/test
                                  # files | a hub dataset id
DATA_DIR: str = ""                # imdb: a local copy (parquet or aclImdb); "" = $IMDB_DIR, else the hub
DATASET_NAME: str = "stanfordnlp/imdb" # imdb: the hub dataset used when no local copy is given
TEXT_COLUMN: str = "text"         # column of the texts
LABEL_COLUMN: str = "label"       # column of the labels: names (strings) or integers
LABEL_NAMES: list = [""]          # integer labels: a name per sorted value ([""] = the numbers; imdb: negative, positive)
VAL_SIZE: int = 2500              # validation rows: carved from train (stratified), or kept of the data's own split
TRAIN_SIZE: int = 0               # stratified subsample of the remaining train rows; 0 = all
DROP_LEAKS: bool = True           # drop train rows also in validation or test, validation rows also in test
MAX_LENGTH: int = 512             # tokens per review, special tokens included
TRUNCATION: str = "head+tail"     # head | tail | head+tail
HEAD_TOKENS: int = 128            # head+tail: tokens kept from the start (the rest from the end)
# --- model -------------------------------------------------------------------------------------
MODEL_NAME: str = "roberta-large"  # hub id, local folder, or tiny:bert / tiny:roberta (tests)
# --- training ----------------------------------------------------------------------------------
FINE_TUNE: bool = True            # False = take MODEL_NAME as it is, a classifier already fine-tuned for the data's
                                  # classes (yours, or a hub sentiment model): evaluated on validation, saved, untrained
EPOCHS: float = 2.0               # passes over the train split
BATCH_SIZE: int = 16              # per device
GRAD_ACCUM: int = 1               # gradient accumulation steps (effective batch = BATCH_SIZE * this * GPUs)
LEARNING_RATE: float = 1e-5       # peak AdamW learning rate (roberta-large likes 1e-5)
WEIGHT_DECAY: float = 0.01
WARMUP_RATIO: float = 0.06        # share of steps with linear warm-up, then linear decay
BEST_METRIC: str = "accuracy"     # the checkpoint kept: best validation accuracy | f1 (macro) | recall (macro);
                                  # imbalanced classes: f1 (the best accuracy may predict the common class alone)
EVAL_BATCH_SIZE: int = 64         # per device
LOGGING_STEPS: int = 50           # log the training loss every this many optimizer steps
EVAL_STEPS: int = 0               # evaluate and checkpoint every this many optimizer steps (0 = each epoch): what a
                                  # stopped run resumes from, and the checkpoints the best is kept of
# --- system ------------------------------------------------------------------------------------
SEED: int = 42                    # seeds python, numpy, torch, the splits and the sampler
NUM_WORKERS: int = 2              # dataloader worker processes (0 on small CPUs)
THREADS: int = 0                  # torch CPU threads; 0 = one per core, less those other processes keep busy
KEEP_CHECKPOINTS: bool = False    # keep outputs/<EXPERIMENT>/checkpoints/teacher after a finished run
REPORT_TO: str = "none"           # none | tensorboard (event files in OUTPUT_DIR/EXPERIMENT/runs/<model>/)


TRAINING_ONLY = ("epochs", "batch_size", "grad_accum", "learning_rate", "weight_decay", "warmup_ratio", "best_metric",
                 "eval_steps")   # run_settings


# ----------------------------------------------------------------------------------------------
def check_config(cfg: dict) -> None:
    """What can be checked before anything is written: the data (loaded: columns, labels, splits), the model's
    position limit and, FINE_TUNE off, its classes (unless a finished teacher is kept as it is: it needs no base
    model, which offline may not be at hand), and that a kept or resumed run was made with these settings."""
    check_data(DataSpec.from_settings(cfg), ("train", "test"))
    splits = load_splits(DataSpec.from_settings(cfg))
    from runs import check_resume, kept_as_is, run_dirs
    dirs, settings = run_dirs(OUTPUT_DIR, EXPERIMENT, "teacher"), run_settings(cfg)
    if not kept_as_is(dirs[0], settings, OVERWRITE):
        check_max_length(model_config(MODEL_NAME), MAX_LENGTH, MODEL_NAME)
        if not FINE_TUNE:
            check_adoptable(splits.label_names)
    check_resume(dirs, settings, OVERWRITE)


def run_settings(cfg: dict) -> dict:
    """What the teacher is recorded, kept and resumed as made with (runs.resume_settings); one taken as it is
    (FINE_TUNE off) was not trained here, so the training settings (TRAINING_ONLY) are not part of it: a flag meant
    for the students (`run_experiment.sh ... --epochs=5`) keeps it."""
    from runs import resume_settings
    settings = resume_settings(cfg)
    return settings if FINE_TUNE else {k: v for k, v in settings.items() if k not in TRAINING_ONLY}


def check_adoptable(labels) -> None:
    """With FINE_TUNE off: UsageError unless MODEL_NAME is a classifier of the data's classes (models.head_plan: the
    same names in any case and order, or as many unnamed LABEL_0, LABEL_1, ...)."""
    config = model_config(MODEL_NAME)
    kind, _ = head_plan(config, labels)
    if kind in ("same", "unnamed"):
        return
    has = f"a classifier of the classes {', '.join(label_names(config.to_dict()))}" if kind == "other" else \
        f"a classifier of {config.num_labels} classes" if is_classifier(config) else "no classifier"
    raise UsageError(f"--fine_tune=false takes {MODEL_NAME} as the teacher as it is, but it is {has}, and the data's "
                     f"classes are {', '.join(labels)}; fine-tune it (--fine_tune=true), or give a classifier of these "
                     f"classes (its config.json id2label naming them)")


def kept_teacher(folder) -> dict:
    """The metrics of a finished teacher that is kept (no --overwrite)."""
    metrics = read_json(folder / "metrics.json")
    log.info("%s holds a finished teacher (validation accuracy %.4f): kept; %s", folder, metrics["val_accuracy"],
             "this --overwrite command finished it before it was stopped" if OVERWRITE else "--overwrite=true retrains it")
    return metrics


def load_data(cfg: dict):
    """The data's train and validation splits (its own, or carved from train) and label names; the test split
    is left to evaluate_models.py."""
    splits = load_splits(DataSpec.from_settings(cfg))
    log_splits(splits, DataSpec.from_settings(cfg))
    return splits


def load_model(splits) -> tuple:
    """(model with a head for the data's labels, its tokenizer, whether MODEL_NAME is a classifier fine-tuned
    elsewhere: its training data unknown here, said in the log now and in the teacher's card)."""
    model, tokenizer = load_classifier(MODEL_NAME, SEED, splits.label_names)
    log.info("teacher %s: %.1fM parameters", MODEL_NAME, count_parameters(model) / 1e6)
    config = model_config(MODEL_NAME)
    kd = getattr(config, "sentiment_kd", None) or {}      # a model made here records its data, and whether it had one
    elsewhere = is_classifier(config) and (not kd or bool(kd.get("base_classifier")))
    if elsewhere:
        log.warning("%s was fine-tuned elsewhere, on data this run does not know: if its training texts included this "
                    "data's validation or test texts, the teacher's accuracy here reads high, and the students' "
                    "retention of it", MODEL_NAME)
    elif kd.get("run_config") and is_classifier(config):
        warn_if_trained_on_these(kd["run_config"], splits)
    return model, tokenizer, elsewhere


def warn_if_trained_on_these(run_config: dict, splits) -> None:
    """A classifier made here (its run_config records its data and split) whose training split holds texts of this
    run's validation or test split (the same file split with another seed, val_size or train_size): a warning with the
    counts, since its accuracy here then reads high. Its data not at hand (moved, another machine): nothing said."""
    try:
        # less this run's own train texts: a split kept with drop_leaks off shares some with test
        theirs = set(load_splits(DataSpec.from_settings(run_config)).train["text"]) - set(splits.train["text"])
    except (UsageError, OSError):
        return
    seen = {s: sum(t in theirs for t in getattr(splits, s)["text"]) for s in ("validation", "test")}
    if any(seen.values()):
        log.warning("%s was trained here on %d of this run's validation texts and %d of its test texts (its split: "
                    "seed %s, val_size %s, train_size %s): its accuracy here reads high, and the students' retention of "
                    "it; split as it was split (those settings), or start from a model that has not seen them",
                    MODEL_NAME, seen["validation"], seen["test"], run_config.get("seed"), run_config.get("val_size"),
                    run_config.get("train_size"))


def tokenize(splits, tokenizer, args) -> dict:
    """{train, validation} tokenized once (cached by content; rank 0 first under torchrun); validation alone for a
    teacher taken as it is (FINE_TUNE off)."""
    with args.main_process_first(desc="tokenize"):
        return {s: tokenize_dataset(getattr(splits, s), tokenizer, MAX_LENGTH, TRUNCATION, HEAD_TOKENS, CACHE_DIR, s)
                for s in ("train", "validation") if FINE_TUNE or s == "validation"}


def main(argv=None) -> dict:
    cfg = start_run(globals(), argv, "fine_tuning_teacher", "teacher.log", check=check_config)
    from runs import overwrite_run
    command = sys.argv[1:] if argv is None else argv      # stopped, the same command keeps what it finished
    with overwrite_run(Path(OUTPUT_DIR) / EXPERIMENT, OVERWRITE, command):
        return teach(cfg)


def teach(cfg: dict) -> dict:
    """The teacher kept, or trained (FINE_TUNE off: only evaluated) and saved; its metrics."""
    from runs import run_dirs, should_train
    dirs = run_dirs(OUTPUT_DIR, EXPERIMENT, "teacher")
    if not should_train(*dirs[:2], OVERWRITE, run_settings(cfg)):
        return kept_teacher(dirs[0])          # decided without importing the Trainer (runs.py)
    from transformers import set_seed

    from training import (MeanLossTrainer, compute_metrics, loggers, model_record, save_untrained, train_and_save,
                          training_arguments)
    set_seed(SEED)
    args = training_arguments(dirs[1], epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                              eval_batch_size=EVAL_BATCH_SIZE, seed=SEED, grad_accum=GRAD_ACCUM,
                              weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO,
                              logging_steps=LOGGING_STEPS, num_workers=NUM_WORKERS, best_metric=BEST_METRIC,
                              eval_every=EVAL_STEPS)
    # 1. the data: its validation split or one carved from train; test is left to evaluate_models.py
    splits = load_data(cfg)
    # 2. the model, with a head for the data's labels, and the splits tokenized for it
    model, tokenizer, elsewhere = load_model(splits)
    data = tokenize(splits, tokenizer, args)
    # 3. train, keeping the best epoch by validation accuracy (or, FINE_TUNE off, only evaluate it)
    trainer = MeanLossTrainer(model=model, args=args, train_dataset=data.get("train"), eval_dataset=data["validation"],
                      data_collator=PadCollator(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=loggers(REPORT_TO, dirs[0].parent / "runs" / "teacher"))
    # 4. save model, tokenizer, config.json, metrics.json and the published record
    record = model_record("teacher", base_model=MODEL_NAME, max_length=MAX_LENGTH, truncation=TRUNCATION,
                          head_tokens=HEAD_TOKENS, run_config=public_config(cfg), data_digests=split_digests(splits),
                          base_classifier=elsewhere)
    if not FINE_TUNE:
        return save_untrained(trainer, tokenizer, dirs, record, run_settings(cfg))
    return train_and_save(trainer, tokenizer, dirs, record, {}, KEEP_CHECKPOINTS, run_settings(cfg))


if __name__ == "__main__":
    run_main(main)
