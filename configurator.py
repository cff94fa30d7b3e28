"""The configuration of every script: its UPPER_CASE constants, overridden from an experiment file and
the command line, type- and range-checked, logged and saved.

Nothing here runs on its own; each script calls `start_run(globals(), argv, ...)` (inference.py calls
`configure`) first thing in main(). What it provides:

- `configure(globals(), argv)`: `--config configs/NAME.toml`, then `--name=value` flags, replace the
  script's constants in place. Precedence: command line > config file > defaults (at the same level a
  per-student value beats the global one: distill_student.student_settings). Each value is checked
  against the type of its default and against SETTING_RULES; an unknown name lists the valid ones.
- `start_run`: configure, then log to OUTPUT_DIR/EXPERIMENT/logs/<name>.log and log the configuration.
- `step_flags`: which flags of a multi-script command line (run_experiment.sh) each script takes.
- `UsageError` and `run_main`: a mistake the user can fix is reported as one line, exit status 2.
"""
from __future__ import annotations

import ast
import atexit
import contextlib
import copy
import json
import logging
import os
import sys
import time
import tomllib
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
SCRIPTS = ("fine_tuning_teacher", "distill_student", "evaluate_models", "inference", "bench", "export")
CONFIG_TYPES = (bool, int, float, str, list)
LEVELS = {"default": 0, "file": 1, "flag": 2}   # precedence of a value's source: flag > file > default
TRUNCATIONS = ("head", "tail", "head+tail")

log = logging.getLogger("kd")


class UsageError(ValueError):
    """Bad input the user can fix: reported as one line `error: ...` and exit status 2, no traceback.
    A ValueError, so that callers of the Python API (inference.predict) can catch it as one."""


_RUN_ROOT: list[Path] = []   # the experiment folder of the run started last (start_run), for disk_full


def run_main(main) -> None:
    """Run a script's main(); turn a UsageError, or a full disk, into a one-line message and exit status 2."""
    try:
        main()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        message = disk_full(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def disk_full(error: BaseException) -> str | None:
    """A one-line report for an error caused by a full disk (an OSError ENOSPC anywhere in its chain,
    or a library's error that quotes one, as safetensors' does), else None. It names the folder being
    written, the space left there and, as the space needed, the largest model or checkpoint folder of
    the experiment (one more save of the same size must fit)."""
    import errno
    import shutil
    chain, e = [], error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    full = [e for e in chain if (isinstance(e, OSError) and e.errno == errno.ENOSPC)
            or "No space left on device" in str(e) or "StorageFull" in str(e)]
    if not full:
        return None
    named = next((e.filename for e in full if isinstance(e, OSError) and e.filename), None)
    folder = Path(named).parent if named else (_RUN_ROOT[-1] if _RUN_ROOT else Path.cwd())
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    free = shutil.disk_usage(existing).free / 1e6
    sizes = [sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
             for d in ([*_RUN_ROOT[-1].glob("**/checkpoint-*"), *_RUN_ROOT[-1].glob("teacher"),
                        *_RUN_ROOT[-1].glob("students/*")] if _RUN_ROOT else []) if d.is_dir()]
    need = f"; a save here takes about {max(sizes) / 1e6:.0f} MB" if sizes and max(sizes) else ""
    return (f"disk full while writing to {folder} ({free:.0f} MB free{need}); free some space (or use another "
            f"--output_dir) and run the same command again: finished models are kept, an interrupted save is set aside")


def setup_logging(log_file: Path | None = None) -> None:
    """Log to stderr and to `log_file` (when given); under torchrun, other ranks log warnings only."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if int(os.environ.get("RANK", "0")) != 0:    # torchrun: only rank 0 logs at INFO and to the file
        logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True)
        return
    if log_file is not None:
        try:      # the first write of a run: a folder the user cannot write fails here, in one line
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(log_file))
        except OSError as e:
            raise UsageError(f"cannot write to {e.filename or log_file.parent} ({e.strerror or e}); give an "
                             f"--output_dir you can write to, or fix its permissions") from None
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    for h in handlers:
        h.setFormatter(fmt)
    # "kd.file": file only, for what the console already shows another way (the Trainer's own logs)
    file_log = logging.getLogger("kd.file")
    file_log.handlers, file_log.propagate = handlers[1:], False


# ----------------------------------------------------------------------------------------------
# allowed values
# ----------------------------------------------------------------------------------------------
def _above(low):
    return f"> {low}", lambda v: v > low


def _at_least(low):
    return f">= {low}", lambda v: v >= low


def _between(low, high):
    return f"between {low} and {high}", lambda v: low <= v <= high


def _fraction():
    return "at least 0 and below 1", lambda v: 0 <= v < 1


def _one_of(*choices):
    return f"one of {', '.join(choices)}", lambda v: v in choices


# the allowed values of every setting that has a range, whichever script defines it; checked when the
# configuration is read, before any data or model is loaded (per-student values: check_setting_values)
SETTING_RULES = {
    "EPOCHS": _above(0), "LEARNING_RATE": _above(0), "TEMPERATURE": _above(0),
    "ALPHA": _between(0, 1), "MIN_TEACHER_ACCURACY": _between(0, 1), "WARMUP_RATIO": _fraction(),
    "BATCH_SIZE": _at_least(1), "EVAL_BATCH_SIZE": _at_least(1), "TEACHER_BATCH_SIZE": _at_least(1),
    "GRAD_ACCUM": _at_least(1), "LOGGING_STEPS": _at_least(1), "LATENCY_SAMPLES": _at_least(1),
    "VAL_SIZE": _at_least(1), "TRAIN_SIZE": _at_least(0), "TEST_SIZE": _at_least(0),
    "TRANSFER_SIZE": _at_least(0), "HIDDEN_WEIGHT": _at_least(0), "ATTENTION_WEIGHT": _at_least(0), "WEIGHT_DECAY": _at_least(0), "NUM_WORKERS": _at_least(0),
    "WARMUP": _at_least(0), "THREADS": _at_least(0), "SEED": _at_least(0), "HEAD_TOKENS": _at_least(0),
    "MAX_LENGTH": _at_least(8), "TRUNCATION": _one_of(*TRUNCATIONS), "DEVICE": _one_of("auto", "cpu", "cuda"),
    "SPLIT": _one_of("test", "validation"), "HALF_PRECISION": _one_of("auto", "always", "never"),
    "GPU_WARMUP_S": _at_least(0), "STEPS": _at_least(1), "WARMUP_STEPS": _at_least(1), "PEAK_TFLOPS": _at_least(0),
    "ATTENTION": _one_of("sdpa", "eager"), "REPORT_TO": _one_of("none", "tensorboard"), "OPTIMIZER": _one_of("adamw_torch", "adamw_torch_fused"),
}


def check_setting_values(values: dict, where) -> None:
    """Raise UsageError for the first value outside its range (SETTING_RULES), or a head+tail split
    that leaves no tail. values: {NAME: value}; where(NAME, value) says how the user set it, e.g.
    `--epochs=-1` or `epochs = -1 in configs/x.toml`."""
    for name, value in values.items():
        rule = SETTING_RULES.get(name.upper())
        if rule is not None and not rule[1](value):
            raise UsageError(f"{where(name, value)}: must be {rule[0]}")
    v = {k.upper(): (k, x) for k, x in values.items()}
    if v.get("TRUNCATION", (0, ""))[1] == "head+tail" and "HEAD_TOKENS" in v and "MAX_LENGTH" in v \
            and v["HEAD_TOKENS"][1] >= v["MAX_LENGTH"][1] - 2:
        raise UsageError(f"{where(*v['HEAD_TOKENS'])}: must be below {where(*v['MAX_LENGTH'])} minus the special "
                         f"tokens (head+tail keeps that many tokens from the start, the rest from the end)")


# ----------------------------------------------------------------------------------------------
# which constants a script has
# ----------------------------------------------------------------------------------------------
def assigned_constants(path: Path) -> set[str]:
    """UPPER_CASE names assigned at the top level of a Python file (read with ast, no import)."""
    names: set[str] = set()
    for node in ast.parse(Path(path).read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper())
    return names


def constants_of(namespace: dict) -> dict:
    """The overridable constants of a script: UPPER_CASE names of plain types that the script itself
    assigns (names it imports, such as data_utils.UNLABELED, are not its settings)."""
    own = assigned_constants(namespace["__file__"]) if Path(namespace.get("__file__", "")).is_file() else None
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")
            and isinstance(v, CONFIG_TYPES) and (own is None or k in own)}


def project_constant_names() -> set[str]:
    """UPPER_CASE names assigned at the top level of any project script."""
    return set().union(*(assigned_constants(PROJECT_DIR / f"{s}.py") for s in SCRIPTS
                         if (PROJECT_DIR / f"{s}.py").exists()))


def step_flags(script: str, argv: list[str]) -> list[str]:
    """The flags of a multi-script command line (run_experiment.sh) that `script` should get: those
    naming one of its constants, and those naming no project constant (so the script reports them).
    `--name value` pairs stay together; names compare as configure() does (`-` = `_`, any case)."""
    own = {n.lower() for n in assigned_constants(PROJECT_DIR / f"{script}.py")}
    known = {n.lower() for n in project_constant_names()}
    keep, i = [], 0
    while i < len(argv):
        group = [argv[i]]
        if argv[i].startswith("--") and "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            group.append(argv[i + 1])
        name = argv[i][2:].partition("=")[0].replace("-", "_").lower() if argv[i].startswith("--") else ""
        if name in own or name not in known:
            keep += group
        i += len(group)
    return keep


# ----------------------------------------------------------------------------------------------
# reading values
# ----------------------------------------------------------------------------------------------
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in BOOL_WORDS:
        return BOOL_WORDS[t]
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def coerce(name: str, value, default, source: str = ""):
    """Return `value` converted to the type of `default`, or raise UsageError naming the constant.

    Strings from the command line are parsed; values from a TOML file (`source` names it) must already
    have the right type (an int is accepted where a float is expected). Lists accept a TOML array literal
    (`[1, 2]`, `["a", "b"]`, `[{name = "x"}]`) or, for lists of strings, `a,b,c`.
    """
    kind = type(default).__name__
    where = f"{name.lower()} = {value!r} in {source}" if source else f"--{name.lower()}={value!r}"
    if source and isinstance(value, str) and not isinstance(default, str):
        raise UsageError(f"{where}: expected {kind}, got str")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return parse_bool(value)
            if isinstance(value, bool):
                return value
        elif isinstance(default, int):
            if isinstance(value, str):
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(default, float):
            if isinstance(value, str):
                return float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif isinstance(default, str):
            if isinstance(value, str):
                return value
        elif isinstance(default, list):
            if isinstance(value, str):
                v = value.strip()
                value = tomllib.loads(f"v = {v}")["v"] if v.startswith("[") else \
                    [s.strip() for s in v.split(",") if s.strip()]
            if isinstance(value, list):
                if default and value:
                    want = type(default[0])
                    bad = [x for x in value if not isinstance(x, want)]
                    if bad:
                        raise ValueError(f"list items must be {want.__name__}, got {bad[0]!r}")
                return value
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{where}: expected {kind} ({e})") from None
    raise UsageError(f"{where}: expected {kind}, got {type(value).__name__}")


def read_config_file(path: str, script: str, known: dict) -> dict:
    """Constants set by an experiment file for `script`.

    Top-level keys apply to every script that has that constant (an unknown one is an error unless
    another script defines it); a `[script]` table applies to that script only and must be exact.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file; experiments are in configs/: "
                         f"{', '.join(sorted(f.name for f in (PROJECT_DIR / 'configs').glob('*.toml')))}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    everywhere = project_constant_names()
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in SCRIPTS:
            if key != script:
                continue
            for k, v in value.items():
                if k.upper() not in known:
                    raise UsageError(f"{path} [{key}]: unknown constant '{k}'; valid names: "
                                     f"{', '.join(sorted(n.lower() for n in known))}")
                out[k.upper()] = v
        elif key.upper() in known:
            out[key.upper()] = value
        elif key.upper() not in everywhere:
            raise UsageError(f"{path}: unknown key '{key}' (not a constant of any script, nor a "
                             f"table named after one of {', '.join(SCRIPTS)})")
    return out


def configure(namespace: dict, argv: list[str] | None = None, script: str | None = None) -> dict:
    """Apply `--config FILE` and `--name=value` overrides to a script's constants, in place.

    namespace: the script's `globals()`; its UPPER_CASE constants are the defaults.
    argv: the arguments (default `sys.argv[1:]`); arguments not starting with `--` are returned
    under the key `_args` (inference.py takes texts that way; other scripts reject them).
    Returns the effective configuration {NAME: value}, plus `_sources` {NAME: "default" | "file" |
    "flag"}. Precedence: flags > file > defaults. Every value is checked against SETTING_RULES.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = script or Path(namespace.get("__file__", "script")).stem
    # the defaults are the constants as first seen: a second call (tests) starts from them again
    defaults = namespace.setdefault("_DEFAULTS", copy.deepcopy(constants_of(namespace)))
    flags, positional, config_path = {}, [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print((namespace.get("__doc__") or "").strip() + "\n\nconstants (override with --name=value):")
            for k, v in defaults.items():
                print(f"  --{k.lower()}={json.dumps(v)}")
            sys.exit(0)
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq and isinstance(defaults.get(name.replace("-", "_").upper()), bool):
                value = "true"            # `--json` alone switches a boolean on; `--json false` is a value
                if i + 1 < len(argv) and argv[i + 1].strip().lower() in BOOL_WORDS:
                    i, value = i + 1, argv[i + 1]
            elif not eq:  # `--name value`
                if i + 1 >= len(argv):
                    raise UsageError(f"--{name} needs a value: --{name}=VALUE")
                i, value = i + 1, argv[i + 1]
            if name == "config":
                config_path = value
            else:
                flags[name.replace("-", "_").upper()] = value
        else:
            positional.append(arg)
        i += 1
    unknown = [n for n in flags if n not in defaults]
    if unknown:
        raise UsageError(f"unknown constant '--{unknown[0].lower()}' for {script}.py; valid names: "
                         f"{', '.join(sorted(n.lower() for n in defaults))}")
    cfg = copy.deepcopy(defaults)
    sources = dict.fromkeys(defaults, "default")   # where each value came from (see LEVELS)
    if config_path:
        for name, value in read_config_file(config_path, script, defaults).items():
            cfg[name], sources[name] = coerce(name, value, defaults[name], source=config_path), "file"
    for name, value in flags.items():
        cfg[name], sources[name] = coerce(name, value, defaults[name]), "flag"
    where = {"flag": lambda n, v: f"--{n.lower()}={v!r}", "file": lambda n, v: f"{n.lower()} = {v!r} in {config_path}",
             "default": lambda n, v: f"{n} = {v!r} (the default in {script}.py)"}
    check_setting_values(cfg, lambda n, v: where[sources[n]](n, v))
    namespace.update(cfg)
    cfg["_args"], cfg["_sources"] = positional, sources
    if config_path:
        cfg["_config_file"] = config_path
    return cfg


def start_run(namespace: dict, argv: list[str] | None, script: str, log_name: str, check=None) -> dict:
    """The opening of a training/evaluation script: apply overrides (no positional arguments allowed),
    run the script's own checks `check(cfg)` (before anything is written: a bad input changes nothing
    on disk), then log to OUTPUT_DIR/EXPERIMENT/logs/<log_name> and log the effective configuration."""
    cfg = configure(namespace, argv, script)
    if cfg["_args"]:
        raise UsageError(f"unexpected argument {cfg['_args'][0]!r}; constants are set as --name=value")
    if check is not None:
        check(cfg)
    root = Path(namespace["OUTPUT_DIR"]) / namespace["EXPERIMENT"]
    _RUN_ROOT[:] = [root]
    setup_logging(root / "logs" / log_name)
    lock_experiment(root, script)
    cfg["_versions"] = library_versions()
    log.info("config: %s", public_config(cfg))
    return cfg


def library_versions() -> dict:
    """Python and the installed versions of the libraries a run's numbers depend on (read from package
    metadata, without importing them), saved with every run: a GPU image may carry other versions."""
    import platform
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "datasets", "tokenizers", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def lock_experiment(root: Path, script: str) -> None:
    """Refuse to start while another process runs in the same experiment folder (two runs would write
    the same checkpoints and models): a lock file `root/.lock` holds the owner's pid and script, is
    removed when the owner exits, and a lock whose process is gone (killed) is taken over. A process
    keeps its lock until it exits (the tests run several steps in one process).
    Under torchrun only rank 0 locks (the other ranks are part of its run)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    lock = root / ".lock"
    for attempt in range(6):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner, alive = _lock_owner(lock)
            if not owner and attempt < 4:       # maybe created an instant ago and not yet written: look again
                time.sleep(0.25)
                continue
            if owner.get("pid") == os.getpid():
                return
            if alive:
                raise UsageError(f"{root} is in use by {owner.get('script')}.py (pid {owner['pid']}, since "
                                 f"{owner.get('since')}); wait for it to finish or stop it (if no such process runs, "
                                 f"delete {lock})") from None
            log.warning("%s: the run that locked it (%s) is gone; taking its lock over", root, owner or "unreadable lock")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "script": script, "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        atexit.register(_release_lock, lock, os.getpid())
        return
    raise UsageError(f"{root}: cannot take the lock {lock} (other runs keep taking it); try again")


def _lock_owner(lock: Path) -> tuple[dict, bool]:
    """(owner {pid, script, since}, whether its process is alive) of a lock file; ({}, False) if unreadable."""
    try:
        owner = json.loads(lock.read_text())
        os.kill(int(owner["pid"]), 0)          # signal 0: only checks that the process exists
    except PermissionError:                    # alive, owned by another user
        return owner, True
    except ProcessLookupError:
        return owner, False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, False
    return owner, True


def _release_lock(lock: Path, pid: int) -> None:
    owner = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        owner = json.loads(lock.read_text()).get("pid")
    if owner == pid:
        lock.unlink(missing_ok=True)


def public_config(cfg: dict) -> dict:
    """The effective configuration as saved to JSON: lower-case names, no private entries."""
    return {k.lower(): v for k, v in cfg.items() if not k.startswith("_")} | \
        ({"config_file": cfg["_config_file"]} if "_config_file" in cfg else {}) | \
        ({"versions": cfg["_versions"]} if "_versions" in cfg else {})
