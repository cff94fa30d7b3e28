"""An experiment's run folders and the rules for keeping, resuming or replacing a model's run, and the devices a
training runs on: what every training script decides before it trains, and what a kept step needs alone.

- `run_dirs`: where a model's run lives (model folder, checkpoints, published record).
- `should_train`: the one overwrite policy: a finished run (models.is_finished: config, weights, tokenizer and
  metrics.json in its folder) is kept unless OVERWRITE; an unfinished one resumes from its newest checkpoint
  (`last_checkpoint`; OVERWRITE starts afresh, or goes on with an interrupted --overwrite run of the same settings).
- `resume_settings`, `check_resume`, `kept_as_is`: the settings a run is kept or resumed with, and the one-line
  refusal of a run of other settings.

Imports neither torch nor transformers (torch only to count GPUs), so that a step whose models are all kept need
not import the Trainer (training.py): on this project's 2-core CPU a kept teacher step took 8 s instead of 12.5 s.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from configurator import UsageError, is_main_process, log, public_config
from data_utils import digest, read_json, same_setting, write_json
from models import experiment_of, is_finished


# ----------------------------------------------------------------------------------------------
# run folders
# ----------------------------------------------------------------------------------------------
def run_dirs(output_dir: str, experiment: str, *parts: str) -> tuple[Path, Path, Path]:
    """(model folder, checkpoint folder, published record) of one model of an experiment, e.g.
    outputs/quick/students/L3, outputs/quick/checkpoints/students/L3, outputs/quick/models/L3.json."""
    root = Path(output_dir) / experiment
    return root.joinpath(*parts), root.joinpath("checkpoints", *parts), root / "models" / f"{parts[-1]}.json"


# settings that change no weight: where things go, what is logged and kept, evaluation batch sizes, the teacher's
# whereabouts (a student's resume settings name the teacher itself), the library versions, a study's choice among
# finished runs (best_seeds adds runs of other names). Runs recorded before one was listed here carry it: not compared
NOT_TRAINING = {"experiment", "output_dir", "cache_dir", "overwrite", "data_dir", "dataset_name", "eval_batch_size",
                "logging_steps", "num_workers", "threads", "keep_checkpoints", "report_to", "config_file", "versions", "only",
                "teacher_dir", "soft_labels", "teacher_batch_size", "soft_label_splits", "soft_label_rows",
                "min_teacher_accuracy", "students", "choose_by", "best_seeds"}


RESUME_ONLY = ("devices",)      # compared only to resume checkpoints: a finished model is kept on another machine
# settings added after runs were recorded, left out at their default: a run recorded before them (a published
# record, a finished model) was made as one of these settings makes it, and is kept as it is
ADDED_LATER = {"transfer_text_column": "", "fine_tune": True, "best_metric": "accuracy", "eval_steps": 0}
# a labels-only baseline's own settings that cannot change it (it learns from no teacher): recorded as configured,
# not compared, so that a sweep of temperatures keeps the baseline the entries share
BASELINE_IGNORES = ("temperature", "hidden_weight", "attention_weight")
# a distilled run's shared settings that only change its baseline (match_steps: the baseline's steps), likewise
DISTILLED_IGNORES = ("match_steps",)


def resume_settings(cfg: dict, **extra) -> dict:
    """What an interrupted run must resume with: the effective configuration less NOT_TRAINING, plus `extra`
    (a student's own settings and teacher) and the devices it trains on (the Trainer's steps per epoch depend on
    them), as JSON reads it back (saved beside the checkpoints)."""
    kept = {k: v for k, v in public_config(cfg).items() if k not in NOT_TRAINING and not (k in ADDED_LATER and
            v == ADDED_LATER[k])} | extra | {"devices": training_devices()}
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def check_resume(dirs: tuple, settings: dict, overwrite: bool) -> None:
    """UsageError when a run made with other settings would be kept, resumed or silently replaced: a finished
    model (the settings recorded in its config.json; older runs recorded none and are kept) would be reported as
    trained with these, an interrupted run's checkpoints (the settings.json saved beside them when it started)
    would be trained partly one way and recorded as the other, and a published record (outputs/<exp>/models/
    <name>.json, in git) would be rewritten by a run of other settings. `settings["teacher"]` names the teacher's
    training run (models.run_fingerprint): a student of a retrained teacher is stale too, but a published record's
    teacher is never at hand, so there it is not compared."""
    if overwrite:
        return
    old, what, fix = standing_run(dirs, settings)
    first = ("teacher", "fine_tune")             # what says most of why: named first (a stable sort keeps the rest's order)
    changed = sorted(differences(old, settings), key=lambda c: first.index(c[0]) if c[0] in first else len(first)) \
        if old is not None else []
    if changed:
        k, was, now = changed[0]
        more = f"; {len(changed) - 1} more: {', '.join(c[0] for c in changed[1:])}" if len(changed) > 1 else ""
        made = "from another training of the teacher (retrained since)" if k == "teacher" else f"with {k} = {was!r}, now {now!r}"
        raise UsageError(f"{what} made {made}{more}; {fix}")


def standing_run(dirs: tuple, settings: dict) -> tuple[dict | None, str, str]:
    """(its settings, what it is, how to go on) of what a run of `settings` in `dirs` (run_dirs) would keep, resume
    or replace: a finished model, else an interrupted run's checkpoints, else a published record (whose teacher
    run is taken as this one's; one made before records carried their settings is compared on the settings that
    its run configuration names too); None settings: nothing stands there, or it recorded none."""
    out_dir, ckpt_dir, record = dirs
    if is_finished(out_dir):
        return as_kept(recorded_settings(out_dir), settings), f"{out_dir} holds a finished run", \
            f"--overwrite=true retrains it (or set {new_experiment(out_dir, settings)} to keep both)"
    saved = ckpt_dir / "settings.json"
    if saved.is_file() and any(ckpt_dir.glob("checkpoint-*")):
        return checkpoint_settings(ckpt_dir), f"{ckpt_dir} holds checkpoints of an interrupted run", \
            "run it with its settings to resume it, or with --overwrite=true to start afresh"
    kd = read_json(record).get("config", {}).get("sentiment_kd", {}) if record.is_file() else {}
    published = kd.get("training_settings")
    if published is None and kd.get("run_config"):   # recorded before the settings were: its run's configuration,
        published = settings | {k: v for k, v in kd["run_config"].items()    # on the settings both name
                                if k in settings and k not in NOT_TRAINING and not isinstance(settings[k], dict)}
    if published is not None and "teacher" in settings:
        published = published | {"teacher": settings["teacher"]}
    return as_kept(published, settings), f"{record} is the published record of a run", \
        f"set {new_experiment(out_dir, settings)} to keep it and its results, or --overwrite=true to replace them"


def new_experiment(out_dir: Path, settings: dict) -> str:
    """The flags that run `settings` beside the run standing in out_dir: a new experiment, and for a student the
    teacher folder of this one (a new experiment has none of its own) when it is at its usual place."""
    teacher = out_dir.parents[1] / "teacher"          # out_dir: <output_dir>/<experiment>/students/<name>
    mine = "student" in settings and teacher.is_dir()
    return "--experiment=<a new name>" + (f" --teacher_dir={teacher}" if mine else "")


def kept_as_is(out_dir: Path, settings: dict, overwrite: bool) -> bool:
    """Whether this command keeps the finished run in out_dir as it is: made with `settings` (or by an older version
    that recorded none) and no --overwrite, or by this --overwrite command before it was stopped
    (finished_in_overwrite). Such a run needs no base model, nor its checks."""
    if not is_finished(out_dir):
        return False
    if overwrite:
        return finished_in_overwrite(out_dir, settings)
    old = recorded_settings(out_dir)
    return old is None or not differences(as_kept(old, settings), settings)


OVERWRITE_RUN = ".overwrite-run.json"   # in an experiment folder while an --overwrite command of it is unfinished
_MARK: list = []     # the mark this process honours: [its time (the file's mtime)] when it is this command's


@contextlib.contextmanager
def overwrite_run(exp_dir: Path, overwrite: bool, command: list[str]):
    """Around a training script's work: with --overwrite, the experiment is marked (OVERWRITE_RUN, holding the
    command's arguments; its mtime, on the clock metrics.json files are stamped by, is when the command began), so
    that the same command again, after a stop, keeps the models it finished (finished_in_overwrite) and trains only
    the rest, as its stop message says; another --overwrite command marks it anew. The mark goes when a command ends
    with all its models finished (under run_experiment.sh, which gives every step the same arguments, when the last
    step has: there a stop in the students must not retrain the teacher). Every process reads the mark as it enters,
    before the first one writes it (torchrun: all decide alike)."""
    mark = Path(exp_dir) / OVERWRITE_RUN
    ours = overwrite and mark.is_file() and same_command(read_json(mark).get("command") or [], command)
    _MARK[:] = [mark.stat().st_mtime] if ours else []
    if overwrite and is_main_process() and not ours:
        write_json(mark, {"command": list(command)})
    yield                                   # not finally: a stopped or failed command leaves the mark
    if is_main_process() and not os.environ.get("KD_ALL_STEPS"):
        mark.unlink(missing_ok=True)        # a command that finished (--overwrite or not): nothing is left to go on with
    _MARK.clear()


def same_command(a: list[str], b: list[str]) -> bool:
    """Whether two command lines ask for the same thing, as the scripts read them: the same flags with the same values
    in any order, `--name value` or `--name=value`, a name in any case or with - for _, a boolean setting's value in
    any of BOOL_WORDS' spellings (a flag alone: true), a flag given twice by its last value; the same config file (a
    relative path from here). Values are otherwise compared as typed (`--epochs=1` is not `--epochs=1.0`): a command
    taken for another marks anew and retrains, never the reverse."""
    from configurator import BOOL_WORDS, boolean_settings, parse_argv
    booleans = {n: False for n in boolean_settings()}

    def key(argv):
        flags, positional, config = parse_argv(list(argv), booleans)    # {NAME: text}: the last of a flag given twice
        return ({k: str(BOOL_WORDS.get(v.strip().lower(), v)) if k in booleans else v for k, v in flags.items()},
                positional, str(Path(config).expanduser().resolve()) if config else None)
    return key(a) == key(b)


def finished_in_overwrite(out_dir: Path, settings: dict | None) -> bool:
    """Whether the finished model in out_dir was finished with `settings` by this --overwrite command before it was
    stopped (the mark this process honours: its metrics.json written since)."""
    if settings is None or not _MARK or not is_finished(out_dir):
        return False
    old = recorded_settings(out_dir)
    return (out_dir / "metrics.json").stat().st_mtime >= _MARK[0] and old is not None \
        and not differences(as_kept(old, settings), settings)


def checkpoint_settings(ckpt_dir: Path) -> dict:
    """The resume settings an interrupted run saved beside its checkpoints (settings.json); one saved before they
    recorded devices ran on one."""
    return {"devices": 1} | read_json(ckpt_dir / "settings.json")


def as_kept(old: dict | None, settings: dict) -> dict | None:
    """A finished or published run's settings, compared with `settings` on all but RESUME_ONLY (its devices)."""
    return None if old is None else old | {k: settings[k] for k in RESUME_ONLY if k in settings}


def recorded_settings(out_dir: Path) -> dict | None:
    """The resume settings a finished run recorded in its config.json (None: an older run recorded none)."""
    return read_json(out_dir / "config.json").get("sentiment_kd", {}).get("training_settings")


def differences(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """[(key, old value, new value)] of the keys whose values differ, sorted; a dict on both sides (a student's own
    settings) is compared key by key, named `student.alpha` (a baseline's BASELINE_IGNORES, a distilled run's
    DISTILLED_IGNORES and NOT_TRAINING not at all)."""
    out, later = [], {} if prefix else ADDED_LATER           # a setting added later, left out: its default
    distilled = (new.get("student") or {}).get("distilled") if not prefix else None
    for k in sorted(set(old) | set(new)):
        if prefix == "student." and new.get("distilled") is False and k in BASELINE_IGNORES:
            continue
        if not prefix and (k in NOT_TRAINING or (distilled is True and k in DISTILLED_IGNORES)):
            continue
        a, b = old.get(k, later.get(k)), new.get(k, later.get(k))
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif not same_setting(k, a, b):      # a data path written another way is the same
            out.append((prefix + k, a, b))
    return out


OVERWRITING = "overwriting"      # in a checkpoint folder: its run was started by --overwrite


def should_train(out_dir: Path, ckpt_dir: Path, overwrite: bool, settings: dict | None = None) -> bool:
    """The overwrite policy of every script: False for a finished run that is to be kept (without --overwrite, or
    finished by this --overwrite command before it was stopped: finished_in_overwrite); on --overwrite, the run
    starts afresh (an interrupted run's checkpoints dropped), unless its checkpoints are those of an --overwrite run
    of the same `settings` (resume_settings) that was interrupted: the same command then goes on with them, as the
    stop message says; otherwise an interrupted run resumes from its checkpoints."""
    if overwrite and finished_in_overwrite(out_dir, settings):
        log.info("%s: finished with these settings by this --overwrite command before it was stopped: kept (the "
                 "command goes on with the rest)", out_dir)
        restore_record(out_dir)
        return False
    if is_finished(out_dir) and not overwrite:
        restore_record(out_dir)
        newer = (out_dir / "metrics.json").stat().st_mtime       # a finished run's own checkpoints (KEEP_CHECKPOINTS) are older
        if any(c.stat().st_mtime > newer for c in ckpt_dir.glob("checkpoint-*")):   # an --overwrite run stopped before it finished
            log.warning("%s holds checkpoints of an unfinished run, left as they are: the finished model in %s is "
                        "kept (--overwrite=true goes on with them if an --overwrite run of these settings made them, "
                        "else trains afresh)", ckpt_dir, out_dir)
        return False
    if is_main_process():
        check_writable(out_dir, ckpt_dir)
    if overwrite and is_main_process():
        if interrupted_overwrite(ckpt_dir, settings):
            log.info("--overwrite: going on with the interrupted --overwrite run of these settings in %s (remove that "
                     "folder to start afresh)", ckpt_dir)
        else:
            if ckpt_dir.exists():
                shutil.rmtree(ckpt_dir)          # afresh, also over an interrupted run's checkpoints
                log.info("--overwrite: removed %s; training starts afresh", ckpt_dir)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / OVERWRITING).write_text("this run was started by --overwrite=true\n")
    if out_dir.exists() and not is_finished(out_dir):
        log.warning("%s holds no finished run (no weights or no metrics.json); training replaces it", out_dir)
    return True


def check_writable(out_dir: Path, ckpt_dir: Path) -> None:
    """UsageError, before training, when the run could not save: its checkpoint folder, the folder its model goes in
    or the experiment's models/ (its published record) cannot be made or written (read-only, or a file in the way),
    or a file stands where the model folder (or the old one set aside while it is replaced, <name>.replaced) goes.
    Otherwise the run trains, then fails to save."""
    for path in (out_dir, out_dir.with_name(out_dir.name + ".replaced")):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file where the run saves its model folder; move it away and run the same "
                             f"command again")
    for folder in (out_dir.parent, ckpt_dir, experiment_of(out_dir) / "models"):
        probe = folder / f".write-test.{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UsageError(f"cannot write to {folder} ({e.strerror or e}), where this run saves; make it writable "
                             f"(or give another --output_dir) and run the same command again") from None


def restore_record(out_dir: Path) -> None:
    """A kept model's published record (models/<name>.json, written just after its folder), written again from the
    folder when missing or of another run (its metrics not the folder's): a save stopped between the two, a record
    that could not be written, or one checked out from git over a model retrained here."""
    record = experiment_of(out_dir) / "models" / f"{out_dir.name}.json"
    metrics = read_json(out_dir / "metrics.json")
    if is_main_process() and (not record.is_file() or digest(read_json(record).get("metrics")) != digest(metrics)):
        why = "was of another run" if record.is_file() else "was missing"
        write_json(record, {"config": read_json(out_dir / "config.json"), "metrics": metrics})
        log.warning("%s %s; written again from %s, the model kept", record, why, out_dir)


def interrupted_overwrite(ckpt_dir: Path, settings: dict | None) -> bool:
    """Whether ckpt_dir holds checkpoints of an --overwrite run (OVERWRITING) started with `settings`."""
    saved = ckpt_dir / "settings.json"
    return settings is not None and (ckpt_dir / OVERWRITING).is_file() and any(ckpt_dir.glob("checkpoint-*")) \
        and saved.is_file() and not differences(checkpoint_settings(ckpt_dir), settings)


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or None when it is complete: weights (a
    safetensors file whose header matches its size), optimizer.pt and trainer_state.json (written last)."""
    from models import WEIGHT_FILES, safetensors_header
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    if not (folder / "optimizer.pt").is_file():
        return "no optimizer.pt"
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            return None if weights.stat().st_size == safetensors_header(weights)[1] else "model.safetensors is truncated"
        except (OSError, ValueError, KeyError, MemoryError):
            return "model.safetensors is unreadable"
    if any((folder / w).is_file() for w in WEIGHT_FILES):
        return None
    return "no weights"


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """Path of the newest complete Trainer checkpoint in ckpt_dir, if any (for resuming). Incomplete
    ones (a crash or a full disk during the save) are moved aside to ckpt_dir/incomplete-<name>, so that
    they block no later run and the Trainer's checkpoint rotation does not count them."""
    if not ckpt_dir.is_dir():
        return None
    # the Trainer names them checkpoint-<step> (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR)
    found = sorted((p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        if not is_main_process():     # under torchrun rank 0 moves it; the others skip it too
            continue
        aside = ckpt_dir / f"incomplete-{folder.name}"
        while aside.exists():
            aside = aside.with_name(aside.name + "+")
        folder.rename(aside)
        log.warning("checkpoint %s is incomplete (%s): moved aside to %s", folder, problem, aside)
    if found:
        log.warning("no complete checkpoint in %s: training starts afresh", ckpt_dir)
    return None


# ----------------------------------------------------------------------------------------------
# the devices a training runs on
# ----------------------------------------------------------------------------------------------
def training_devices() -> int:
    """The devices a training runs on: its processes (torchrun, accelerate launch) x the GPUs each drives."""
    return int(os.environ.get("WORLD_SIZE", "1")) * devices_per_process()


def devices_per_process() -> int:
    """The GPUs one process trains on: every visible one for a lone process on a multi-GPU machine (the Trainer then
    wraps the model in DataParallel and its batch is BATCH_SIZE x that many), else 1 (torchrun or accelerate launch:
    a process a GPU; CPUs)."""
    import torch
    if not torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    return max(torch.cuda.device_count(), 1)


def cpu_processes() -> bool:
    """torchrun on a machine without a GPU (WORLD_SIZE > 1): the processes need gloo, which neither the
    Trainer nor accelerate picks there by themselves."""
    import torch
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
