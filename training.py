"""Trainer plumbing shared by fine_tuning_teacher.py and distill_student.py, and the distillation math.

Nothing here runs on its own. What it provides:

- run folders, the overwrite and resume policy, and the devices a run trains on are runs.py's (no Trainer import,
  so that a step whose models are kept decides fast); `train_and_save` resumes through it.
- `training_arguments`: the TrainingArguments of every model here (evaluate and checkpoint each epoch,
  keep the best by validation accuracy, length-grouped batches, bf16/fp16 on GPUs, DDP under torchrun).
- `train_and_save`: train (resuming), then save the best model atomically with its metrics.json and a
  published record outputs/<exp>/models/<name>.json; `StepTimer` adds first-step and steady-state speed.
- `distillation_loss`, `hidden_state_loss`, `attention_loss` (pure) and `DistillTrainer`, the Trainer
  that applies them: the KL to cached teacher logits, and the intermediate losses with a live teacher.

Imports torch and transformers at the top: the scripts import this module inside main(), after the
configuration is read, so that `--help` and configuration errors stay fast.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from configurator import cpu_sample, is_main_process, log, others_cores, stop_pending
from data_utils import UNLABELED, class_shares, classification_metrics, read_json, replace_dir, write_json
from models import count_parameters, near_chance, neglected_class
from runs import OVERWRITING, cpu_processes, last_checkpoint


# ----------------------------------------------------------------------------------------------
# the Trainer's settings and hooks
# ----------------------------------------------------------------------------------------------
def pick_precision() -> dict:
    """TrainingArguments precision flags: bf16 where the GPU has it in hardware (Ampere and newer), else fp16 on GPU
    (a T4 or V100 only emulates bf16, which torch's is_bf16_supported() counts by default), else fp32."""
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported(including_emulation=False) else {"fp16": True}


def tf32_available() -> bool:
    """True on CUDA GPUs of compute capability 8.0 or newer (Ampere, Hopper: TF32 tensor cores)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def training_arguments(ckpt_dir: Path, *, epochs: float, batch_size: int, learning_rate: float,
                       eval_batch_size: int, seed: int, grad_accum: int = 1, weight_decay: float = 0.01,
                       warmup_ratio: float = 0.06, logging_steps: int = 50, num_workers: int = 0,
                       max_steps: int = -1, eval_every: int = 0, best_metric: str = "accuracy",
                       **overrides) -> TrainingArguments:
    """TrainingArguments for every model here: evaluate and checkpoint each epoch (every `eval_every` steps
    when > 0, and at the last), keep the best by validation `best_metric` (accuracy, or macro f1 / recall:
    compute_metrics' names), length-grouped batches, bf16/fp16 on
    GPUs, no external loggers. max_steps > 0 replaces `epochs` (a baseline matched to its distilled twin's
    optimizer steps); `overrides` replace any TrainingArguments field (bench.py's levers)."""
    precision = pick_precision()   # {} on CPU
    every = dict(eval_strategy="steps", save_strategy="steps", eval_steps=eval_every, save_steps=eval_every) \
        if eval_every > 0 else dict(eval_strategy="epoch", save_strategy="epoch")
    args = TrainingArguments(**{**dict(
        output_dir=str(ckpt_dir), num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size, gradient_accumulation_steps=grad_accum,
        # transformers 5 folds warmup_ratio into warmup_steps: a value below 1 is a fraction of the steps
        learning_rate=learning_rate, weight_decay=weight_decay, warmup_steps=warmup_ratio,
        lr_scheduler_type="linear", **every, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=best_metric, greater_is_better=True,
        logging_steps=logging_steps, logging_first_step=True, seed=seed, data_seed=seed,
        train_sampling_strategy="group_by_length", length_column_name="length",
        remove_unused_columns=False, dataloader_num_workers=num_workers, report_to="none",
        dataloader_pin_memory=bool(precision), **precision,   # pinning only helps GPUs
        optim="adamw_torch_fused",            # one kernel for all parameters (CPU and GPU, torch >= 2.4)
        # no per-step host-device sync: MeanLossTrainer checks the loss for NaN/inf when it logs and checkpoints
        logging_nan_inf_filter=False, tf32=tf32_available() or None,   # TF32 for what runs in fp32 on Ampere+
        # torchrun on CPUs: real DDP over gloo; without use_cpu, transformers 5 / accelerate 1.15 set up no
        # distributed state there (DistributedType.NO) and the processes trained N independent copies, unsynchronised
        ddp_backend="gloo" if cpu_processes() else None, use_cpu=cpu_processes()), **overrides})
    align_tf32_flags()
    return args


def align_tf32_flags() -> None:
    """Make torch's legacy TF32 flag agree with its new per-backend one. TrainingArguments (tf32=True, or torch_compile
    with bf16, on Ampere or newer) sets TF32 through torch >= 2.9's new API (torch.backends.fp32_precision), after which
    the legacy getters (torch.get_float32_matmul_precision, torch.backends.cuda.matmul.allow_tf32) raise "mix of the
    legacy and new APIs"; torch.compile's inductor still reads them on CUDA (pytorch#166387, InductorError at the first
    matmul), so compiled training failed. The same precision set through the legacy setter makes both readable.
    Nothing changes where the legacy getter already answers (CPUs: nothing set)."""
    try:
        torch.get_float32_matmul_precision()
    except RuntimeError:
        torch.set_float32_matmul_precision("high" if torch.backends.cuda.matmul.fp32_precision == "tf32" else "highest")


def compute_metrics(eval_pred) -> dict:
    """Trainer hook: accuracy and macro F1 of the argmax of the logits (N, C) (classification_metrics), how many
    classes the labels hold (classes_in_labels: a small validation file may lack one) and how many of those it
    predicts at least once (classes_predicted; 1: the model has not learned the task, whatever its accuracy), and
    the lowest recall of a class the labels hold, min_recall = min_c (texts of c predicted c) / (texts of c), with
    that class's id and its number of texts, min_recall_class and min_recall_texts (models.neglected_class)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    preds, present = logits.argmax(-1), np.unique(labels)
    recalls = [float((preds[labels == c] == c).mean()) for c in present]
    low = int(np.argmin(recalls))
    return classification_metrics(preds, labels) | {"classes_predicted": int(np.isin(present, preds).sum()),
                                                    "classes_in_labels": int(len(present)),
                                                    "min_recall": recalls[low], "min_recall_class": int(present[low]),
                                                    "min_recall_texts": int((labels == present[low]).sum())}


def console_or_file() -> logging.Logger:
    """Where a training line goes besides the log file: the console too where there is no progress bar (TQDM_DISABLE:
    a script writing to a file, nohup), else the log file only (the bar prints the Trainer's logs)."""
    return log if os.environ.get("TQDM_DISABLE") else logging.getLogger("kd.file")


class LogToFile(TrainerCallback):
    """Copies the Trainer's periodic logs (loss, lr, eval) into our log file: only the file beside a progress bar,
    which prints them; where there is none (TQDM_DISABLE: a script writing to a file) to the console too, as a log
    line, in place of the Trainer's ProgressCallback (MeanLossTrainer removes it), which printed each as a dict of
    strings beside ours."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            console_or_file().info("step %d/%d %s", state.global_step, state.max_steps,
                    {k: round(v, 5) if isinstance(v, float) else v for k, v in logs.items()})


class Progress(TrainerCallback):
    """A line every `every_s` seconds of training between the Trainer's logs: the step, the share done, the time since
    this part began and an estimate of what is left (from the steps of this part). To the console too where there is
    no progress bar (TQDM_DISABLE: a script writing to a file, nohup), else to the log file only."""

    def __init__(self, every_s: float = 120.0):
        self.every_s, self.start, self.last = every_s, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        now = time.monotonic()
        if self.start is None:        # the first step of this part (a resumed run starts past 0)
            self.start, self.last = (now, state.global_step), now
            return
        if now - self.last < self.every_s or state.global_step >= state.max_steps:
            return
        self.last = now
        done, spent = state.global_step - self.start[1], now - self.start[0]
        left = spent / done * (state.max_steps - state.global_step) if done else float("nan")
        console_or_file().info("step %d/%d (%.0f%%), %s trained, about %s left", state.global_step, state.max_steps,
                               100 * state.global_step / state.max_steps, duration(spent), duration(left))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.last = time.monotonic()          # the Trainer's own line just said where training is


def duration(seconds: float) -> str:
    """Seconds as 45 s, 12 min or 3.4 h."""
    if seconds != seconds:                    # nan: not known yet
        return "?"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def loggers(report_to: str, runs_dir: Path) -> list[TrainerCallback]:
    """The Trainer callbacks that record training: our log file, a progress line every 2 minutes between its logs
    (Progress), and with report_to="tensorboard" event
    files in runs_dir (every logged value a scalar: loss, learning rate, the loss parts loss_ce, loss_kl,
    loss_hidden, loss_attention, and the evaluation metrics). Given as a callback with its own writer
    because transformers 5 takes the TensorBoard folder only from an environment variable."""
    if report_to != "tensorboard":
        return [LogToFile(), Progress()]
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback
    return [LogToFile(), Progress(), TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(runs_dir)))]


class TrainTime(TrainerCallback):
    """Training time summed over an interrupted run's parts: each checkpoint records the seconds trained up to it
    (train_time.json, beside the Trainer's state), and a run resumed from it starts from those (`prior_s`). Time
    between the last checkpoint and the interruption is not counted: those steps are trained again.
    others(): the CPU cores other processes kept busy over this part (configurator.others_cores)."""

    FILE = "train_time.json"

    def __init__(self, prior_s: float = 0.0):      # made just before trainer.train(): its whole call is counted
        self.prior_s, self.t0, self.cpu, self.warned = prior_s, time.time(), cpu_sample(), False

    def on_log(self, args, state, control, logs=None, **kwargs):
        """A warning, once, at the first log (30 s or more into this part, on a CPU) by which other processes have kept
        the CPU busy on average since it began (cpu_was_busy): while there is time to act (warn_if_cpu_shared tells
        it again when the model is saved)."""
        if self.warned or not state.is_world_process_zero or args.world_size > 1 or torch.cuda.is_available():
            return
        from model_card import cpu_was_busy
        others = others_cores(self.cpu, cpu_sample(), min_s=30.0)
        if cpu_was_busy({"device": "cpu", "other_cores_busy": others, "cpu_count": os.cpu_count()}):
            from configurator import spare_threads
            self.warned, spare = True, spare_threads(torch.get_num_threads(), others, os.cpu_count())
            fewer = (f"; its {torch.get_num_threads()} threads wait on each other's turn, several times slower than "
                     f"{spare}: stop it and run it again with --threads={spare}") if spare < torch.get_num_threads() else ""
            log.warning("other processes are keeping %.1f of this machine's %d cores busy: this training runs slower for "
                        "it%s; free the machine, or stop this run and run it later (it resumes from its last checkpoint, "
                        "if one was saved)", others, os.cpu_count(), fewer)

    def others(self, world_size: int = 1) -> float | None:
        """Other processes' cores busy since this part began; None under torchrun, whose other ranks would count
        (data-loader workers count until they exit)."""
        return others_cores(self.cpu, cpu_sample()) if world_size == 1 else None

    def elapsed(self) -> float:
        return self.prior_s + time.time() - self.t0

    def record(self, folder: Path) -> None:
        """Write the seconds trained so far into checkpoint `folder`, made here before the Trainer saves into it: a
        checkpoint complete enough to resume from (trainer_state.json is written last) has its time."""
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / self.FILE, {"train_time_s": round(self.elapsed(), 1)})

    @classmethod
    def before(cls, checkpoint: str | None) -> float:
        """The seconds trained up to `checkpoint` (0 for a fresh start, or a checkpoint that recorded none)."""
        path = Path(checkpoint) / cls.FILE if checkpoint else None
        return read_json(path).get("train_time_s", 0.0) if path and path.is_file() else 0.0


class StopWhenAsked(TrainerCallback):
    """A stop (SIGTERM) whose KeyboardInterrupt a finalizer swallowed ("Exception ignored in ... WeakKeyDictionary",
    seen as a student began) takes effect at the next step's end, not INSIST_S later (configurator._insist): raised
    again here, in the training loop, before that step's evaluation or checkpoint starts."""

    def on_step_end(self, args, state, control, **kwargs):
        signum = stop_pending()
        if signum is not None:
            raise KeyboardInterrupt(signum)


class StepTimer(TrainerCallback):
    """Times optimizer steps from one step's end to the next, leaving out intervals that held an
    evaluation or a checkpoint, so that steady-state speed is told apart from start-up costs (the first
    step: data loader start, CUDA context, kernel selection) and from evaluation.
    On GPUs each step's end is a CUDA event, read only when the figures are asked for: a
    torch.cuda.synchronize() each step would stall the queue of work it measures."""

    def __init__(self):
        # marks[0]: training began, marks[i + 1]: step i ended; skip[i]: the interval up to marks[i + 1] held an
        # evaluation or a checkpoint
        self.marks, self.skip, self.busy = [], [], False

    @staticmethod
    def _mark():
        if torch.cuda.is_available():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @staticmethod
    def _seconds(a, b) -> float:
        """Seconds from mark a to the later mark b (CUDA events: waits for b to be reached)."""
        if isinstance(a, float):
            return b - a
        b.synchronize()
        return a.elapsed_time(b) / 1000.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks, self.skip, self.busy = [self._mark()], [], False

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(self._mark())
        self.skip.append(self.busy)
        self.busy = False

    def on_evaluate(self, args, state, control, **kwargs):
        self.busy = True

    def on_save(self, args, state, control, **kwargs):
        self.busy = True

    @property
    def first(self) -> float | None:
        """Seconds from the start of training to the end of the first step."""
        return self._seconds(*self.marks[:2]) if len(self.marks) > 1 else None

    @property
    def steps(self) -> list[float]:
        """Seconds of each later step whose interval held no evaluation or checkpoint, in order."""
        return [self._seconds(a, b) for a, b, skip in zip(self.marks[1:], self.marks[2:], self.skip[1:]) if not skip]

    def summary(self, examples_per_step: int) -> dict:
        """first_step_s, step_s_median (steady state), steady_examples_per_s, and step_s_quarters: the median step of
        each quarter of the steady steps in order (a start-up cost that fades shows as a falling first quarter, a
        uniformly slower run does not)."""
        first, steps = self.first, self.steps
        if not steps:
            return {"first_step_s": first, "step_s_median": None, "steady_examples_per_s": None, "step_s_quarters": None}
        median = float(np.median(steps))
        quarters = [round(float(np.median(q)), 4) for q in np.array_split(steps, 4) if len(q)]
        return {"first_step_s": round(first, 3), "step_s_median": round(median, 4),
                "steady_examples_per_s": round(examples_per_step / median, 2), "step_s_quarters": quarters}


_TRAINED_HERE = []      # the output folder of each model trained so far by this process


def process_snapshot() -> dict:
    """What this process holds as a training starts, so that a first model's conditions can be told from a later
    one's (issue 17: first students trained slower on an H100): how many models it trained before, torch's
    intra-op threads, its OS threads (tokenizer pools, loader threads; Linux /proc), and on a GPU the memory
    PyTorch's caching allocator holds and has in use (GiB)."""
    status = Path("/proc/self/status")
    threads = next((int(l.split()[1]) for l in status.read_text().splitlines() if l.startswith("Threads:")), None) \
        if status.is_file() else None
    snap = {"models_trained_before": len(_TRAINED_HERE), "torch_threads": torch.get_num_threads(), "os_threads": threads}
    if torch.cuda.is_available():
        snap |= {"cuda_reserved_gib": round(torch.cuda.memory_reserved() / 2 ** 30, 3),
                 "cuda_allocated_gib": round(torch.cuda.memory_allocated() / 2 ** 30, 3)}
    return snap


# ----------------------------------------------------------------------------------------------
# train and save
# ----------------------------------------------------------------------------------------------
def checkpoint_step(checkpoint: str | None) -> int:
    """The optimizer step at which `checkpoint` (a folder named checkpoint-<step>) was saved, so the step a run
    resumed from it began at; 0 for none."""
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def process_state():
    """accelerate's PartialState set up as the Trainer's arguments set it up (training_arguments: on CPUs under
    torchrun `cpu=True` and gloo; PartialState() alone would see one process there), for main_process_first and
    num_processes before a Trainer exists. The state is shared: the Trainer then finds it made."""
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available(), **({"backend": "gloo"} if cpu_processes() else {}))


def model_record(role: str, *, max_length: int, truncation: str, head_tokens: int, run_config: dict,
                 base_model: str | None = None, kind: str | None = None, student: dict | None = None,
                 teacher: str | None = None, settings: dict | None = None, layer_map: list | None = None,
                 data_digests: dict | None = None, base_classifier: bool = False) -> dict:
    """The one record of how a model was made, saved in its config.json as `sentiment_kd` (and so in the
    published outputs/<exp>/models/<name>.json); every reader (evaluation, inference, cards) uses it.

    role: teacher | student; kind: distilled | baseline (students); base_model: the hub model it descends from (a
    student: its own pretrained model, else the teacher's, whose layers it was cut from); tokenization: max_length, truncation,
    head_tokens (how to tokenize its inputs); student: its STUDENTS entry; settings: what it trained with
    (a baseline's alpha 1.0 and transfer_size 0 included); run_config: the script's effective configuration;
    data_digests: the teacher's splits (data_utils.split_digests), which the later steps check; base_classifier: the
    teacher's base model was a classifier fine-tuned elsewhere (its training data unknown; recorded only when so)."""
    record = {"role": role, "kind": kind or role, "base_model": base_model, "max_length": max_length,
              "truncation": truncation, "head_tokens": head_tokens}
    if base_classifier:
        record["base_classifier"] = True
    if data_digests:
        record["data_digests"] = data_digests
    if role == "student":
        record |= {"student": student, "teacher": teacher, "settings": settings, "layer_map": layer_map}
    return record | {"run_config": run_config}


def save_finished(trainer, tokenizer, out_dir: Path, record: Path, metrics: dict, info: dict) -> None:
    """Save the model, tokenizer and metrics into `out_dir` atomically (main process only), and the
    published record `record` ({"config": the model's config.json, "metrics": metrics.json}).

    `info` lands in config.json under `sentiment_kd` (truncation settings, role, effective config), so
    every later script reads how the model was trained from the model folder itself. The tokenizer
    carries the trained max_length, so pipeline(..., truncation=True) truncates at the trained length (its head
    only: inference.py keeps head and tail, as training does).
    """
    model = trainer.model
    model.config.sentiment_kd = info
    for name in [n for n, _ in model.named_children() if n.startswith("kd_")]:
        delattr(model, name)      # training-only modules (hidden-state projections): not part of the classifier
    if trainer.is_world_process_zero():
        tmp = out_dir.with_name(out_dir.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        tokenizer.model_max_length = info["max_length"]
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "metrics.json", metrics)
        from model_card import write_card
        write_card(tmp, out_dir.name, shown=out_dir)      # README.md: what it is, its recipe, validation metrics
        if (out_dir / "onnx").is_dir():               # the model it replaces was exported: that export goes with it
            log.info("%s/onnx, the export of the model this one replaces, is removed with it (export.py --model=%s, or "
                     "evaluate_models.py --onnx=true, exports this one)", out_dir, out_dir)
        replace_dir(tmp, out_dir)
        write_json(record, {"config": model.config.to_dict(), "metrics": metrics})
        log.info("saved %s: %s", out_dir, {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))})
    trainer.accelerator.wait_for_everyone()


def warn_if_classes_unpredicted(out_dir: Path, val: dict, classes: int, history: list[dict] = (),
                                best_metric: str = "accuracy") -> None:
    """A warning when the model never predicts some of its classes on validation (`val`: Trainer.evaluate's metrics):
    it has not learned them, whatever its accuracy; when another evaluation of the run (`history`: the Trainer's
    log_history) predicted more of them, it names that one and the setting that would have kept it (on imbalanced
    classes the best accuracy can be the checkpoint that predicts the common class alone). Classes that validation
    lacks (eval_classes_in_labels fewer than `classes`) are not counted."""
    seen, held = val["eval_classes_predicted"], val.get("eval_classes_in_labels", classes)
    if seen >= held:
        return
    fix = "train longer (--epochs) or at another --learning_rate" if seen == 1 else \
        "train longer (--epochs), at another --learning_rate, or with more examples of them"
    better = max((h for h in history if h.get("eval_classes_predicted", 0) > seen and h.get("eval_f1", 0) > val["eval_f1"]),
                 key=lambda h: (h["eval_f1"], h["step"]), default=None)
    if better is not None:
        fix = (f"the evaluation at step {better['step']} predicted {better['eval_classes_predicted']} (macro F1 "
               f"{better['eval_f1']:.4f}, this one {val['eval_f1']:.4f})" + (
                   ": --best_metric=f1 keeps the checkpoint of the best macro F1" if best_metric == "accuracy" else
                   f", but not the best {best_metric}") + "; or " + fix)
    if seen == 1:
        log.warning("%s predicts one class for every validation text (accuracy %.4f: that class's share); it has not "
                    "learned the task: %s", out_dir, val["eval_accuracy"], fix)
    else:
        log.warning("%s predicts only %d of the %d classes of the validation texts (accuracy %.4f); it has not learned "
                    "the others: %s", out_dir, seen, held, val["eval_accuracy"], fix)


def warn_if_class_neglected(out_dir: Path, val: dict, config, best_metric: str = "accuracy",
                            teacher: bool = False) -> None:
    """A warning when a model that predicts every class on validation (`val`: Trainer.evaluate's metrics) all but
    ignores one of them (models.neglected_class: its recall under half of random guessing's), as a model trained on
    imbalanced classes can when its best accuracy comes from the common ones; a `teacher` teaches that neglect to its
    students. `config`: the model's, for the class names (id2label)."""
    said = neglected_class({f"val_{k.removeprefix('eval_')}": v for k, v in val.items()},
                           [config.id2label.get(i, str(i)) for i in range(config.num_labels)])
    if not said:
        return
    fix = {"accuracy": "--best_metric=recall (or f1) keeps the checkpoint best across classes, rather than the most "
                       "accurate",
           "none": "it was trained elsewhere: fine-tune it on this data (fine_tune = true), or take another"}.get(
        best_metric, "train longer, or with more examples of that class")
    log.warning("%s: %s: it all but ignores that class%s; %s", out_dir, said,
                ", and students distilled from it learn that" if teacher else "", fix)


def min_recall(val: dict) -> dict:
    """The lowest class recall of an evaluation (`val`: Trainer.evaluate's metrics, compute_metrics), as metrics.json
    records it: val_min_recall, val_min_recall_class (an id), val_min_recall_texts."""
    return {f"val_min_recall{k}": val.get(f"eval_min_recall{k}") for k in ("", "_class", "_texts")}


def warn_if_near_chance(out_dir: Path, val: dict, labels, classes: int) -> float:
    """A warning when the model's validation accuracy (`val`: Trainer.evaluate's metrics) is less than NEAR_CHANCE
    above the share of validation's most common class (`labels`: its ids), what always predicting that class scores:
    it has learned little (models.near_chance; a model that leaves classes out is warned of that instead:
    warn_if_classes_unpredicted). Returns that share (val_majority_share in metrics.json)."""
    majority = round(max(class_shares(labels, classes)), 4)
    said = near_chance({"val_accuracy": val["eval_accuracy"], "val_majority_share": majority,
                        "val_classes_predicted": val["eval_classes_predicted"],
                        "val_classes_in_labels": val.get("eval_classes_in_labels", classes)})
    if said:
        log.warning("%s: validation accuracy %.4f is %s: it has learned little; train longer (--epochs), at another "
                    "--learning_rate, or with more examples", out_dir, val["eval_accuracy"], said)
    return majority


FEW_STEPS = 20     # optimizer steps below which a pretrained encoder barely moves from its initial head (log warning)


def optimizer_steps(n_examples: int, epochs: float, batch_size: int, grad_accum: int, world_size: int = 1) -> int:
    """Optimizer steps the Trainer takes for `epochs` passes over n_examples (its own arithmetic:
    ceil(epochs * ceil(batches per process / grad_accum)), batches = ceil(n / batch_size))."""
    batches = math.ceil(math.ceil(n_examples / batch_size) / world_size)
    return math.ceil(epochs * max(math.ceil(batches / grad_accum), 1))


def planned_steps(args, examples: int) -> int:
    """The optimizer steps a Trainer with TrainingArguments `args` takes over `examples` training examples:
    max_steps where set, else optimizer_steps."""
    if args.max_steps > 0:
        return args.max_steps
    return optimizer_steps(examples, args.num_train_epochs, args.train_batch_size, args.gradient_accumulation_steps,
                           args.world_size)


def warn_if_few_steps(out_dir: Path, args, examples: int) -> None:
    """A log warning, before training, when a model will take fewer than FEW_STEPS optimizer steps (a small data
    file at the default batch size): it would learn little, which evaluation shows only at the end."""
    steps = planned_steps(args, examples)
    if steps < FEW_STEPS:
        log.warning("%s: only %d optimizer steps (%d training examples, batch %d, %g epochs): too few to learn the task "
                    "much; raise --epochs or lower --batch_size (a few hundred steps is typical)", out_dir.name, steps,
                    examples, args.train_batch_size * args.world_size * args.gradient_accumulation_steps,
                    args.num_train_epochs)


def warn_if_cpu_shared(out_dir: Path, others: float | None) -> None:
    """A warning when other processes kept over a fifth of the CPU's cores busy while `out_dir` trained on it
    (others: TrainTime.others; model_card.cpu_was_busy): its train_time_s and speeds are slower than the machine's."""
    from model_card import cpu_was_busy
    if cpu_was_busy({"device": "cuda" if torch.cuda.is_available() else "cpu", "other_cores_busy": others,
                     "cpu_count": os.cpu_count()}):
        log.warning("%s: other processes kept %.1f of %d cores busy on average while it trained; its train_time_s and "
                    "speed figures are slower than this machine's", out_dir, others, os.cpu_count())


def check_distributed(trainer) -> None:
    """RuntimeError when torchrun started several processes (WORLD_SIZE) but the Trainer's accelerator set up
    no distributed training: each process would train a copy of its own, unsynchronised, and one of them be saved (transformers 5 on
    CPUs without use_cpu did so silently: training_arguments)."""
    from accelerate.utils import DistributedType
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and trainer.accelerator.distributed_type == DistributedType.NO:   # num_processes still says `world`
        raise RuntimeError(f"torchrun started {world} processes, but the Trainer set up no distributed training "
                           f"(DistributedType.NO): each would train its own copy of the model; run one process "
                           f"(python script.py), or report this with your transformers/accelerate versions")


def train_and_save(trainer, tokenizer, dirs: tuple[Path, Path, Path], info: dict, extra_metrics: dict,
                   keep_checkpoints: bool, settings: dict) -> dict:
    """Train (resuming from the newest checkpoint), evaluate the best model on validation, save it.
    dirs: (model folder, checkpoint folder, record) from run_dirs; settings: resume_settings, saved beside
    the checkpoints of a fresh start (check_resume compares them before a resume)."""
    out_dir, ckpt_dir, record = dirs
    check_distributed(trainer)
    resume = last_checkpoint(ckpt_dir)
    if resume:
        log.info("resuming from %s", resume)
    elif is_main_process():
        write_json(ckpt_dir / "settings.json", settings)
    at_start = process_snapshot()
    timer, clock = StepTimer(), TrainTime(TrainTime.before(resume))
    trainer.add_callback(timer)
    trainer.add_callback(clock)                  # MeanLossTrainer._save_checkpoint writes its time into each checkpoint
    trainer.add_callback(StopWhenAsked())
    warn_if_few_steps(out_dir, trainer.args, len(trainer.train_dataset))
    result = trainer.train(resume_from_checkpoint=resume)
    train_time = clock.elapsed()                 # with the parts before an interruption (up to its checkpoint)
    _TRAINED_HERE.append(str(out_dir))
    others = clock.others(trainer.args.world_size)   # over this part only, as train_loss
    per_step = trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps * trainer.args.world_size   # DataParallel too
    # the Trainer's examples/s is this part's; a resumed run's is every step's examples over both parts' time
    per_s = round(trainer.state.global_step * per_step / train_time, 3) if resume else \
        result.metrics.get("train_samples_per_second")
    warn_if_cpu_shared(out_dir, others)
    best = trainer.state.best_model_checkpoint   # loaded at the end unless gone: the line after says the last step
    if best and Path(best).is_dir():
        log.info("%s: the model kept is the best checkpoint by validation %s, %s; evaluated again:", out_dir,
                 trainer.args.metric_for_best_model.removeprefix("eval_"), Path(best).name)
    val = trainer.evaluate()
    warn_if_classes_unpredicted(out_dir, val, trainer.model.config.num_labels, trainer.state.log_history,
                                trainer.args.metric_for_best_model.removeprefix("eval_"))
    warn_if_class_neglected(out_dir, val, trainer.model.config, trainer.args.metric_for_best_model.removeprefix("eval_"),
                            info.get("role") == "teacher")
    majority = warn_if_near_chance(out_dir, val, trainer.eval_dataset["label"], trainer.model.config.num_labels)
    metrics = {
        "val_accuracy": val["eval_accuracy"], "val_f1": val["eval_f1"], "val_classes_predicted": val["eval_classes_predicted"],
        "val_classes_in_labels": val["eval_classes_in_labels"], "val_majority_share": majority,
        **min_recall(val),
        "val_examples": len(trainer.eval_dataset),
        "train_time_s": round(train_time, 1), "resumed_from": resume,
        "train_examples": len(trainer.train_dataset), "epochs": trainer.state.epoch,   # as trained (max_steps too)
        "optimizer_steps": trainer.state.max_steps,
        "train_examples_per_s": per_s,
        # the Trainer's mean over this part's steps only, so the step it began at; none trained (resumed from the
        # last checkpoint): None, not the Trainer's 0.0
        "train_loss": result.metrics.get("train_loss") if trainer.state.global_step > checkpoint_step(resume) else None,
        "train_loss_from_step": checkpoint_step(resume),
        "other_cores_busy": others,
        "process_at_start": at_start,
        **timer.summary(per_step),   # the Trainer's examples/s above counts evaluation and start-up too
        "parameters": count_parameters(trainer.model) - sum(p.numel() for n, p in trainer.model.named_parameters()
                                                            if n.startswith("kd_")),   # not the training-only projections
        # the step, not the folder: checkpoints are removed when training ends (unless KEEP_CHECKPOINTS)
        "best_step": checkpoint_step(best) if best else None,
        "log_history": trainer.state.log_history,
    } | extra_metrics
    save_finished(trainer, tokenizer, out_dir, record, metrics, info | {"training_settings": settings})
    if trainer.is_world_process_zero():      # finished: a later --overwrite starts afresh, kept checkpoints or not
        (ckpt_dir / OVERWRITING).unlink(missing_ok=True)
    if not keep_checkpoints and trainer.is_world_process_zero():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return metrics


def save_untrained(trainer, tokenizer, dirs: tuple[Path, Path, Path], info: dict, settings: dict) -> dict:
    """A classifier taken as it is (fine_tuning_teacher.py --fine_tune=false: fine-tuned elsewhere), evaluated on
    validation and saved as train_and_save saves a trained one, with no training in its metrics (`untrained`)."""
    out_dir, ckpt_dir, record = dirs
    val = trainer.evaluate()
    classes = trainer.model.config.num_labels
    warn_if_classes_unpredicted(out_dir, val, classes)
    warn_if_class_neglected(out_dir, val, trainer.model.config, "none", True)   # a teacher trained elsewhere
    if val["eval_accuracy"] < 1 / classes:       # worse than chance: most likely its classes in another order
        log.warning("%s: validation accuracy %.4f, below chance (%.4f): are its classes the data's, in the order its "
                    "config.json id2label names them?", info["base_model"], val["eval_accuracy"], 1 / classes)
    metrics = {"val_accuracy": val["eval_accuracy"], "val_f1": val["eval_f1"],
               "val_classes_predicted": val["eval_classes_predicted"],
               "val_classes_in_labels": val["eval_classes_in_labels"], "val_examples": len(trainer.eval_dataset),
               **min_recall(val), "untrained": True, "train_time_s": 0.0, "train_examples": 0, "epochs": 0, "optimizer_steps": 0,
               "parameters": count_parameters(trainer.model),
               "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}   # models.run_fingerprint tells two apart
    save_finished(trainer, tokenizer, out_dir, record, metrics, info | {"training_settings": settings})
    if trainer.is_world_process_zero():      # no checkpoints: the folder the Trainer made for them goes
        (ckpt_dir / OVERWRITING).unlink(missing_ok=True)
        if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
            ckpt_dir.rmdir()
    return metrics


# ----------------------------------------------------------------------------------------------
# distillation
# ----------------------------------------------------------------------------------------------
def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """Hinton et al. (2015) knowledge-distillation loss, computed in float32.

    student_logits, teacher_logits: (B, C) any float dtype; labels: (B,) long, -1 = unlabeled.
    Per example i:  alpha * CE_i * [label_i >= 0]  +  (1 - alpha) * T^2 * KL_i,
        KL_i = sum_c p_t,c (log p_t,c - log p_s,c),  p = softmax(logits / T) via log_softmax,
    averaged over the batch (`batchmean`). With every row labeled this is exactly
    alpha * CE + (1 - alpha) * T^2 * KL; unlabeled rows (transfer set) get the KL term only.
    alpha weighs the hard labels against the teacher; T^2 keeps the soft term's gradients the same
    size as T changes. Returns (loss, {"ce": mean CE over labeled rows, "kl": batchmean KL}).
    """
    s, t = student_logits.float(), teacher_logits.float()
    log_ps, log_pt = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    kl_rows = (log_pt.exp() * (log_pt - log_ps)).sum(-1)                   # (B,)
    labeled = labels >= 0
    ce_rows = F.cross_entropy(s, labels.clamp(min=0), reduction="none") * labeled
    loss = (alpha * ce_rows + (1 - alpha) * temperature ** 2 * kl_rows).mean()
    ce = ce_rows.sum() / labeled.sum().clamp(min=1)
    return loss, {"ce": ce.detach(), "kl": kl_rows.mean().detach()}


def hidden_state_loss(student_states, teacher_states, mask):
    """Intermediate-layer loss of TinyBERT (Jiao et al. 2020): mean squared error between student
    hidden states (projected to the teacher's width) and the teacher hidden states they are mapped to.

    student_states: K tensors (B, L, H); teacher_states: K tensors (B, L, H), same tokens (a narrower student's
    states come projected to the teacher's width H: attach_projections); mask: (B, L), 1 = real token, 0 = padding.
        loss = 1/K sum_k  sum_{b,l} mask_bl ||s_kbl - t_kbl||^2 / (H * sum_{b,l} mask_bl)
    i.e. the MSE per hidden unit over real tokens, averaged over the K layer pairs; float32.
    """
    m = mask.float().unsqueeze(-1)                                          # (B, L, 1)
    total = 0.0
    for s, t in zip(student_states, teacher_states):
        total = total + (((s.float() - t.float()) ** 2) * m).sum() / (m.sum().clamp(min=1) * t.shape[-1])
    return total / len(student_states)


def attach_projections(student, layers: int, teacher_width: int) -> None:
    """Learned linear maps of a narrower student's first `layers` layers' hidden states to the teacher's width,
    attached as `student.kd_projections` (trained with it; save_finished removes them) and applied in its forward
    (a hook) while it trains: its outputs.hidden_states[1:layers + 1] come projected, (B, L, teacher_width) each.
    In the forward, so that DDP (find_unused_parameters) and DataParallel's replicas see the projections used and
    their gradients synchronised: applied to the wrapped model's outputs outside it, DDP failed ("marked ready
    twice") and DataParallel's replicas had none. In place of the hidden states, not beside them under a key of
    their own: DDP rebuilds the output as its class, which takes its own fields only."""
    import torch.nn as nn
    student.kd_projections = nn.ModuleList(nn.Linear(student.config.hidden_size, teacher_width) for _ in range(layers))

    def project(module, args, outputs):
        proj = getattr(module, "kd_projections", None)
        states = getattr(outputs, "hidden_states", None)
        if proj is not None and module.training and states is not None:
            outputs["hidden_states"] = (states[0], *(p(h) for p, h in zip(proj, states[1:])), *states[1 + len(proj):])
        return outputs
    student.register_forward_hook(project)


def kd_eager_attention(module, query, key, value, attention_mask, dropout: float = 0.0, **kwargs):
    """The model's own eager attention (its module's eager_attention_forward), returning the attention maps
    before dropout: (attn_output (B, L, heads, d), weights (B, heads, L, L), each row a distribution). Dropout
    still falls on the output in training: softmax(QK^T) -> dropout -> x V, drawn as eager draws it."""
    out, weights = sys.modules[type(module).__module__].eager_attention_forward(
        module, query, key, value, attention_mask, dropout=0.0, **kwargs)
    if dropout > 0 and module.training:
        out = torch.matmul(F.dropout(weights, p=dropout, training=True), value).transpose(1, 2).contiguous()
    return out, weights


def attention_before_dropout(student) -> str:
    """Make `student` return its attention maps before dropout, which attention_loss compares with the teacher's
    (after dropout a share p of a row is 0 and the rest is scaled by 1/(1-p): no distribution, and a KL that
    never reaches 0). A model whose attention goes through transformers' attention interface (BERT, RoBERTa,
    DistilBERT, ...) gets kd_eager_attention and keeps its attention dropout; one that computes attention
    itself (MPNet) has its attention dropout switched off. Returns which, for the log; the saved config keeps
    the model's own attention."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask
    how, dropouts = attention_reading(student)
    if how == "interface":
        AttentionInterface.register("kd_eager", kd_eager_attention)
        AttentionMaskInterface.register("kd_eager", eager_mask)    # without it a custom name gets no additive mask
        student.set_attn_implementation("kd_eager")
        return "attention maps read before dropout"
    if how != "dropout":
        from configurator import UsageError
        raise UsageError(f"attention_weight > 0: a {student.config.model_type} student's attention maps cannot be read "
                         f"before dropout here; set attention_weight = 0 (hidden_weight still works)")
    for d in dropouts:
        d.p = 0.0
    student.set_attn_implementation("eager")
    return f"attention dropout off ({student.config.model_type} returns its maps after dropout)"


def attention_reading(model) -> tuple[str, list]:
    """How attention_before_dropout can read `model`'s attention maps before dropout: ("interface", []) where its
    attention goes through transformers' attention interface (its module has eager_attention_forward), ("dropout",
    its self-attention dropout modules) where it computes attention itself with one, else ("", []). Reads the
    structure only: a model built on the meta device will do (check_student_models)."""
    if hasattr(sys.modules[type(model).__module__], "eager_attention_forward"):
        return "interface", []
    dropouts = [m.dropout for m in model.modules() if type(m).__name__.endswith("SelfAttention")
                and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)]
    return ("dropout" if dropouts else ""), dropouts


def attention_loss(student_attentions, teacher_attentions, mask):
    """KL(teacher || student) between attention distributions (TinyBERT), for layers whose head
    counts match.

    student_attentions, teacher_attentions: K tensors (B, heads, L, L), each row a distribution over
    the keys; mask: (B, L), 1 = real token.
        loss = 1/K sum_k  mean over (b, h, real query q) of  sum_j a_t log(a_t / a_s)
    with 0 log 0 = 0 and a_s clamped at 1e-12; float32.
    """
    q = mask.float()[:, None, :]                                            # (B, 1, L) real queries
    total = 0.0
    for s, t in zip(student_attentions, teacher_attentions):
        s, t = s.float(), t.float()
        kl = torch.where(t > 0, t * (t.clamp(min=1e-12).log() - s.clamp(min=1e-12).log()), 0.0).sum(-1)   # (B, H, L)
        total = total + (kl * q).sum() / (q.sum() * s.shape[1]).clamp(min=1)
    return total / len(student_attentions)


class MeanLossTrainer(Trainer):
    """A Trainer for a loss that is a batch mean (the models' own cross-entropy, `distillation_loss`). transformers
    5 takes a model whose forward accepts **kwargs to normalise its loss by `num_items_in_batch` itself, and then
    neither divides it by the gradient-accumulation steps nor averages it over processes: a classifier's loss,
    which ignores that count, came out GRAD_ACCUM x processes times too large (and so its gradients, which
    max_grad_norm then clipped). Here the Trainer scales it, as for any mean."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        if os.environ.get("TQDM_DISABLE") and any(isinstance(c, LogToFile) for c in self.callback_handler.callbacks):
            from transformers.trainer import DEFAULT_PROGRESS_CALLBACK    # a notebook's, in a notebook
            from transformers.trainer_callback import PrinterCallback, ProgressCallback
            for printer in {ProgressCallback, PrinterCallback, DEFAULT_PROGRESS_CALLBACK}:   # no bars to draw: LogToFile
                self.remove_callback(printer)                                            # says each log once

    def log(self, logs, *args, **kwargs):
        """The Trainer's log, after stopping on a non-finite training loss (its mean since the last log: read from
        the device then anyway, so no step waits for the check; logging_nan_inf_filter, which would, is off)."""
        if "loss" in logs and not math.isfinite(logs["loss"]):
            self._stop_non_finite(f" ({logs['loss']})")
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, *args, **kwargs):
        if not torch.isfinite(getattr(self, "_tr_loss", torch.tensor(0.0))):   # never checkpoint weights it touched
            self._stop_non_finite()
        clock = next((c for c in self.callback_handler.callbacks if isinstance(c, TrainTime)), None)
        if clock and self.args.should_save:     # PREFIX_CHECKPOINT_DIR-<step>, as the Trainer names it
            clock.record(Path(self._get_output_dir(trial=None)) / f"checkpoint-{self.state.global_step}")
        super()._save_checkpoint(*args, **kwargs)

    def _stop_non_finite(self, value: str = ""):
        raise FloatingPointError(f"non-finite training loss by step {self.state.global_step}{value}; lower the "
                                 f"learning rate (--learning_rate), or train in fp32 if this ran in fp16")

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            sampler = EpochSeededLengthSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
            self._epoch_sampler = sampler
        return sampler

    def _run_epoch(self, *args, **kwargs):
        """The Trainer's epoch, its sampler told the epoch first: under torchrun accelerate wraps the batch sampler
        in BatchSamplerShard, and a resumed run's in SkipBatchSampler too, which pass no set_epoch on, so a run
        resumed in epoch 1 or later would draw epoch 0's order (the Trainer's own call reaches one wrapper deep).
        None at all for a run resumed from its last checkpoint: max_steps that are not whole epochs put that
        checkpoint inside an epoch, which the Trainer would go on training for a step past max_steps."""
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return None
        sampler = getattr(self, "_epoch_sampler", None)
        if sampler is not None and "epoch" in kwargs:
            sampler.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)


class EpochSeededLengthSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler, each epoch's order drawn from a generator seeded by (seed, epoch)
    instead of torch's global random state as the epoch begins. A run resumed in the middle of an epoch (a
    matched baseline checkpoints at its twin's epochs) then skips the batches the interrupted run trained and goes
    on in that run's order: the Trainer restores the global state only after it has drawn the resumed epoch's
    order, which was therefore another shuffle (some reviews seen twice that epoch, others not at all)."""

    def __init__(self, batch_size: int, *, lengths, seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:       # the Trainer (through accelerate's loader) calls it each epoch
        self.epoch = int(epoch)

    def __iter__(self):
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, dtype=np.uint32)
        self.generator = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        return super().__iter__()


class DistillTrainer(MeanLossTrainer):
    """A Trainer whose loss is `distillation_loss` on the batch's cached `teacher_logits` (labels-only
    cross-entropy for batches without them: the baseline and evaluation). Logs the loss parts
    (loss_ce, loss_kl, averaged since the previous log) and stops on a non-finite loss.

    With `teacher` (a frozen model with the student's tokenizer) and hidden_weight / attention_weight
    > 0, the teacher also runs on each batch and `hidden_weight * hidden_state_loss + attention_weight
    * attention_loss` is added, student layer k matched to teacher layer layer_map[k]. Projections for
    a narrower student are applied in its forward (attach_projections; trained with it, not saved).
    """

    def __init__(self, *args, alpha: float, temperature: float, teacher=None, hidden_weight: float = 0.0,
                 attention_weight: float = 0.0, layer_map: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        self.teacher, self.hidden_weight, self.attention_weight = teacher, hidden_weight, attention_weight
        self.layer_map = layer_map
        if teacher is not None:
            teacher.to(self.args.device)
        self._reset_parts()

    def _reset_parts(self):
        # running sums on the model's device: reading a GPU value every step would stall the GPU
        self._parts, self._steps_since_log, self._first_unchecked = {}, 0, None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        teacher = inputs.pop("teacher_logits", None)
        inner = teacher is not None and self.teacher is not None and model.training
        attend = inner and self.attention_weight > 0
        outputs = model(**inputs, output_hidden_states=inner or None, output_attentions=attend or None)
        if teacher is None:   # baseline / evaluation: cross-entropy on the labeled rows
            loss = F.cross_entropy(outputs.logits.float(), labels, ignore_index=UNLABELED)
            parts = {"ce": loss.detach()}
        else:
            loss, parts = distillation_loss(outputs.logits, teacher, labels, self.alpha, self.temperature)
        if inner:
            with torch.no_grad():
                t_out = self.teacher(**inputs, output_hidden_states=True, output_attentions=attend or None)
            if self.hidden_weight > 0:
                # hidden_states[0] is the embedding output: student layer k is hidden_states[k + 1]
                s_states = [outputs.hidden_states[k + 1] for k in range(len(self.layer_map))]   # attach_projections' maps applied
                t_states = [t_out.hidden_states[j + 1] for j in self.layer_map]
                hidden = hidden_state_loss(s_states, t_states, inputs["attention_mask"])
                loss, parts["hidden"] = loss + self.hidden_weight * hidden, hidden.detach()
            if attend:
                att = attention_loss(list(outputs.attentions), [t_out.attentions[j] for j in self.layer_map],
                                     inputs["attention_mask"])
                loss, parts["attention"] = loss + self.attention_weight * att, att.detach()
        if model.training:
            if not self._steps_since_log:
                self._first_unchecked = self.state.global_step      # also right after a resume
            rows = (labels != UNLABELED).sum()       # ce is a mean over a batch's labeled rows: summed over rows
            for k, v in {**parts, "ce": parts["ce"] * rows, "labeled": rows, "total": loss.detach()}.items():
                self._parts[k] = self._parts.get(k, 0.0) + v.float()
            self._steps_since_log += 1
        return (loss, outputs) if return_outputs else loss

    def _mean_parts(self) -> dict[str, float]:
        """The loss parts averaged since the last log, read from the device in one transfer: each over its steps,
        the cross-entropy over the labeled rows (a batch of transfer texts alone has none: averaged as a 0 over
        batches, it read low; none since the last log: no loss_ce in that log); a non-finite one stops training
        (checked here, at logging and before each checkpoint, not per step)."""
        if not self._parts:
            return {}
        sums = dict(zip(self._parts, torch.stack(list(self._parts.values())).tolist()))
        rows = sums.pop("labeled")
        means = {k: v / (rows if k == "ce" else self._steps_since_log) for k, v in sums.items() if k != "ce" or rows}
        if not all(math.isfinite(v) for v in means.values()):
            raise FloatingPointError(f"non-finite loss between steps {self._first_unchecked} and {self.state.global_step} "
                                     f"(mean parts {means}); lower the learning rate or the temperature")
        return means

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:    # training log: add the loss parts averaged since the last one
            logs.update({f"loss_{k}": round(v, 5) for k, v in self._mean_parts().items() if k != "total"})
            self._reset_parts()
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, *args, **kwargs):
        self._mean_parts()       # never checkpoint weights that a non-finite loss has touched
        super()._save_checkpoint(*args, **kwargs)
