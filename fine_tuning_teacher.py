"""Fine-tune the teacher: a sequence classifier on IMDb sentiment with the Hugging Face Trainer.

Reads  IMDb (IMDB_DIR / --data_dir, else the hub dataset) and a pretrained encoder (MODEL_NAME).
Writes outputs/<EXPERIMENT>/teacher/: weights, tokenizer, config.json (label names, truncation
       settings and the run's effective configuration under `sentiment_kd`) and metrics.json
       (validation accuracy/F1, train time, examples/s). Reload with from_pretrained or
       pipeline("text-classification", model="outputs/<EXPERIMENT>/teacher").
       Checkpoints go to outputs/<EXPERIMENT>/checkpoints/teacher/ (an interrupted run resumes from
       the last one); logs to outputs/<EXPERIMENT>/logs/teacher.log.

    python fine_tuning_teacher.py                                  # paper: roberta-large, full IMDb
    python fine_tuning_teacher.py --config configs/quick.toml      # MiniLM-L6 on 1,600 reviews, CPU
    python fine_tuning_teacher.py --config configs/quick.toml --learning_rate=5e-5 --overwrite=true
    torchrun --nproc_per_node 4 fine_tuning_teacher.py --config configs/bert.toml   # multi-GPU (DDP)

Offline: export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1
"""
import os
import shutil
import time
from pathlib import Path

from data_utils import (PadCollator, UsageError, classification_metrics, count_parameters,
                        load_classifier, load_imdb, log, make_splits, pick_precision, public_config,
                        replace_dir, run_main, start_run, tokenize_dataset, write_json)

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT = "paper"              # run name: everything goes to OUTPUT_DIR/EXPERIMENT/
OUTPUT_DIR = "outputs"            # root of all runs
CACHE_DIR = "outputs/cache"       # tokenized splits, shared by experiments (keyed by content)
DATA_DIR = ""                     # local IMDb copy (parquet or aclImdb); "" = $IMDB_DIR, else the hub
DATASET_NAME = "stanfordnlp/imdb" # hub dataset used when no local copy is given
OVERWRITE = False                 # replace a finished run in OUTPUT_DIR/EXPERIMENT/teacher
# --- data --------------------------------------------------------------------------------------
VAL_SIZE = 2500                   # reviews carved from train for model selection (stratified)
TRAIN_SIZE = 0                    # stratified subsample of the remaining train reviews; 0 = all
MAX_LENGTH = 512                  # tokens per review, special tokens included
TRUNCATION = "head+tail"          # head | tail | head+tail
HEAD_TOKENS = 128                 # head+tail: tokens kept from the start (the rest from the end)
# --- model -------------------------------------------------------------------------------------
MODEL_NAME = "roberta-large"      # hub id, local folder, or tiny:bert / tiny:roberta (tests)
# --- training ----------------------------------------------------------------------------------
EPOCHS = 2.0                      # passes over the train split
BATCH_SIZE = 16                   # per device
GRAD_ACCUM = 1                    # gradient accumulation steps (effective batch = BATCH_SIZE * this * GPUs)
LEARNING_RATE = 1e-5              # peak AdamW learning rate (roberta-large likes 1e-5)
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.06               # share of steps with linear warm-up, then linear decay
EVAL_BATCH_SIZE = 64              # per device
LOGGING_STEPS = 50                # log the training loss every this many optimizer steps
# --- system ------------------------------------------------------------------------------------
SEED = 42                         # seeds python, numpy, torch, the splits and the sampler
NUM_WORKERS = 2                   # dataloader worker processes (0 on small CPUs)
KEEP_CHECKPOINTS = False          # keep outputs/<EXPERIMENT>/checkpoints/teacher after a finished run


# ----------------------------------------------------------------------------------------------
# helpers shared with distill_student.py
# ----------------------------------------------------------------------------------------------
def run_dirs(output_dir: str, experiment: str, *parts: str) -> tuple[Path, Path]:
    """(final folder, checkpoint folder) of one model of an experiment."""
    root = Path(output_dir) / experiment
    return root.joinpath(*parts), root.joinpath("checkpoints", *parts)


def check_overwrite(out_dir: Path, ckpt_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a finished run unless asked; on --overwrite, drop stale checkpoints too."""
    if (out_dir / "metrics.json").exists():
        if not overwrite:
            raise UsageError(f"{out_dir} holds a finished run; pass --overwrite=true to replace it, "
                             f"or choose another --experiment")
        if ckpt_dir.exists() and int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(ckpt_dir)


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """Path of the newest Trainer checkpoint in ckpt_dir, if any (for resuming)."""
    from transformers.trainer_utils import get_last_checkpoint
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def training_arguments(ckpt_dir: Path, *, epochs: float, batch_size: int, learning_rate: float,
                       eval_batch_size: int, seed: int, grad_accum: int = 1, weight_decay: float = 0.01,
                       warmup_ratio: float = 0.06, logging_steps: int = 50, num_workers: int = 0,
                       max_steps: int = -1):
    """TrainingArguments for every model here: evaluate and checkpoint each epoch, keep the best by
    validation accuracy, length-grouped batches, bf16/fp16 on GPUs, no external loggers."""
    from transformers import TrainingArguments
    precision = pick_precision()   # {} on CPU
    return TrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size, gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate, weight_decay=weight_decay, warmup_steps=warmup_ratio,
        lr_scheduler_type="linear", eval_strategy="epoch", save_strategy="epoch", save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="accuracy", greater_is_better=True,
        logging_steps=logging_steps, logging_first_step=True, seed=seed, data_seed=seed,
        train_sampling_strategy="group_by_length", length_column_name="length",
        remove_unused_columns=False, dataloader_num_workers=num_workers, report_to="none",
        dataloader_pin_memory=bool(precision), **precision,   # pinning only helps GPUs
        # torchrun on CPUs: real DDP over gloo (the Trainer would otherwise run N independent copies)
        ddp_backend="gloo" if not precision and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None)


def compute_metrics(eval_pred) -> dict:
    """Trainer hook: accuracy and macro F1 of the argmax of the logits."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return classification_metrics(logits.argmax(-1), labels)


def log_callback():
    """A TrainerCallback that copies the Trainer's periodic logs (loss, lr, eval) into our log file
    (only the file: the Trainer already prints them beside its progress bar)."""
    import logging

    from transformers import TrainerCallback
    file_log = logging.getLogger("kd.file")

    class LogToFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                file_log.info("step %d/%d %s", state.global_step, state.max_steps,
                         {k: round(v, 5) if isinstance(v, float) else v for k, v in logs.items()})
    return LogToFile()


def save_finished(trainer, tokenizer, out_dir: Path, metrics: dict, info: dict) -> None:
    """Save the model, tokenizer and metrics into `out_dir` atomically (main process only).

    `info` lands in config.json under `sentiment_kd` (truncation settings, role, effective config), so
    every later script reads how the model was trained from the model folder itself.
    """
    model = trainer.model
    model.config.sentiment_kd = info
    if trainer.is_world_process_zero():
        tmp = out_dir.with_name(out_dir.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "metrics.json", metrics)
        replace_dir(tmp, out_dir)
        log.info("saved %s: %s", out_dir, {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))})
    trainer.accelerator.wait_for_everyone()


def train_and_save(trainer, tokenizer, out_dir: Path, ckpt_dir: Path, info: dict, extra_metrics: dict,
                   keep_checkpoints: bool) -> dict:
    """Train (resuming from the newest checkpoint), evaluate the best model on validation, save it."""
    resume = last_checkpoint(ckpt_dir)
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    train_time = time.time() - t0
    val = trainer.evaluate()
    n_train = len(trainer.train_dataset)
    metrics = {
        "val_accuracy": val["eval_accuracy"], "val_f1": val["eval_f1"],
        "train_time_s": round(train_time, 1), "resumed_from": resume,
        "train_examples": n_train, "epochs": trainer.args.num_train_epochs, "optimizer_steps": trainer.state.max_steps,
        "train_examples_per_s": result.metrics.get("train_samples_per_second"),
        "train_loss": result.metrics.get("train_loss"),
        "parameters": count_parameters(trainer.model),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "log_history": trainer.state.log_history,
    } | extra_metrics
    save_finished(trainer, tokenizer, out_dir, metrics, info)
    if not keep_checkpoints and trainer.is_world_process_zero():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return metrics


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    cfg = start_run(globals(), argv, "fine_tuning_teacher", "teacher.log")
    out_dir, ckpt_dir = run_dirs(OUTPUT_DIR, EXPERIMENT, "teacher")
    check_overwrite(out_dir, ckpt_dir, OVERWRITE)
    if TRUNCATION not in ("head", "tail", "head+tail"):
        raise UsageError(f"--truncation={TRUNCATION}: must be head, tail or head+tail")

    from transformers import Trainer, set_seed
    set_seed(SEED)
    args = training_arguments(ckpt_dir, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                              eval_batch_size=EVAL_BATCH_SIZE, seed=SEED, grad_accum=GRAD_ACCUM,
                              weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO,
                              logging_steps=LOGGING_STEPS, num_workers=NUM_WORKERS)

    # 1. load data: validation carved from train; the test split is left to evaluate_models.py
    splits = make_splits(load_imdb(("train",), DATA_DIR, DATASET_NAME), VAL_SIZE, TRAIN_SIZE, seed=SEED)

    # 2. load the model and tokenize once (cached on disk; rank 0 first under torchrun)
    model, tokenizer = load_classifier(MODEL_NAME, SEED)
    log.info("teacher %s: %.1fM parameters", MODEL_NAME, count_parameters(model) / 1e6)
    with args.main_process_first(desc="tokenize"):
        data = {s: tokenize_dataset(splits[s], tokenizer, MAX_LENGTH, TRUNCATION, HEAD_TOKENS, CACHE_DIR, s)
                for s in ("train", "validation")}

    # 3. train, keeping the best epoch by validation accuracy
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                      data_collator=PadCollator(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[log_callback()])
    info = {"role": "teacher", "base_model": MODEL_NAME, "max_length": MAX_LENGTH, "truncation": TRUNCATION,
            "head_tokens": HEAD_TOKENS, "run_config": public_config(cfg)}

    # 4. save model, tokenizer, config.json and metrics.json
    return train_and_save(trainer, tokenizer, out_dir, ckpt_dir, info, {"model": MODEL_NAME}, KEEP_CHECKPOINTS)


if __name__ == "__main__":
    run_main(main)
