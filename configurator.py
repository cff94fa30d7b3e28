"""The configuration of every script: its UPPER_CASE constants, overridden from an experiment file and
the command line, type- and range-checked, logged and saved.

Nothing here runs on its own; each script calls `start_run(globals(), argv, ...)` (inference.py calls
`configure`) first thing in main(). What it provides:

- `configure(globals(), argv)`: `--config configs/NAME.toml`, then `--name=value` flags, replace the
  script's constants in place. A script's constants are its UPPER_CASE globals of a plain type (bool,
  int, float, str, list) not starting with `_` (private tables), so scripts import no UPPER_CASE names. Precedence: command line > config file >
  defaults; a name only another script has is ignored (one file and one command line serve every step of
  run_experiment.sh); each value is checked against the type of its default and SETTING_RULES.
- `start_run`: configure, then log to OUTPUT_DIR/EXPERIMENT/logs/<name>.log and log the configuration.
- `UsageError` and `run_main`: a mistake the user can fix is reported as one line, exit status 2.
"""
from __future__ import annotations

import ast
import atexit
import contextlib
import copy
import functools
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

if sys.version_info < (3, 11):   # every script imports this module first: one line instead of a traceback
    sys.exit(f"error: Python 3.11 or newer is needed (configs/ are read with tomllib); this is Python "
             f"{sys.version.split()[0]}")
import tomllib  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parent
SCRIPTS = ("fine_tuning_teacher", "distill_student", "evaluate_models", "inference", "bench", "export")

# A script run with stderr to a file (nohup, a scheduler, `> log 2>&1`): no progress bars (tqdm's, so the Trainer's,
# transformers' and datasets' too), each of whose updates would be one more stretch of the file; the log lines say how
# a run goes. Set here, as every script imports this module first: tqdm reads TQDM_* when it is imported. Only for
# the scripts: a notebook importing `inference`, or running a script with %run (its argv[0] the script's, in the
# kernel's process: the setting would outlive it), keeps its own bars. TQDM_DISABLE= (set empty) keeps them.
if Path(sys.argv[0] if sys.argv else "").stem in SCRIPTS and not sys.stderr.isatty() and "ipykernel" not in sys.modules:
    os.environ.setdefault("TQDM_DISABLE", "1")
STEPS = ("fine_tuning_teacher", "distill_student", "evaluate_models", "bench")   # what run_experiment.sh runs, in order
# The offline copies beside the checkout on this project's machines (../shared: IMDb, a hub cache), found by a script
# run on its own as by run_experiment.sh (whose checks call use_shared_copies too): where IMDB_DIR is unset, it and
# (each unless set) HF_HUB_CACHE and HF_HUB_OFFLINE=1. Set here, before huggingface_hub is imported (it reads them
# then); only for the scripts that read IMDb, run_experiment.sh's steps (inference.py and export.py read none;
# inference.py may download a hub classifier).
SHARED_DIR = PROJECT_DIR.parent / "shared"


def use_shared_copies() -> None:
    """Point IMDB_DIR, HF_HUB_CACHE and HF_HUB_OFFLINE at SHARED_DIR's copies where it has IMDb and IMDB_DIR is unset
    (a user's own hub cache, or offline setting, is kept). The one place these defaults are decided."""
    if (SHARED_DIR / "data" / "imdb").is_dir() and not os.environ.get("IMDB_DIR"):
        os.environ["IMDB_DIR"] = str(SHARED_DIR / "data" / "imdb")
        for name, value in (("HF_HUB_CACHE", str(SHARED_DIR / "hf-cache")), ("HF_HUB_OFFLINE", "1")):
            if not os.environ.get(name):          # unset or set empty, as the shell's ${VAR:-default}
                os.environ[name] = value


if Path(sys.argv[0] if sys.argv else "").stem in STEPS:
    use_shared_copies()
CONFIG_TYPES = (bool, int, float, str, list)
CONFIG_TYPE_NAMES = {t.__name__: t for t in CONFIG_TYPES}   # annotations postponed (`from __future__`) are strings
LEVELS = {"default": 0, "file": 1, "flag": 2}   # precedence of a value's source: flag > file > default
TRUNCATIONS = ("head", "tail", "head+tail")

log = logging.getLogger("kd")


class UsageError(ValueError):
    """Bad input the user can fix: reported as one line `error: ...` and exit status 2, no traceback.
    A ValueError, so that callers of the Python API (inference.predict) can catch it as one."""


_DEFAULTS: dict[int, tuple[dict, dict]] = {}   # id(script namespace) -> (namespace, its constants as defined)
_RUN_ROOT: list[Path] = []   # the experiment folder of the run started last (start_run), for disk_full
_RUN_SCRIPT: list[str] = []  # and its script: a stop's message speaks of training only for the scripts that train

TRAINING_SCRIPTS = ("fine_tuning_teacher", "distill_student")
_STOPPING: list = []         # the signal that stops this process, then "caught" once run_main has caught it
_INSISTING: list = []        # set by _insist just before it signals the main thread again
_STOP_AT: list = []          # when the first SIGTERM came (time.monotonic)
INSIST_S = 10.0              # seconds a stop's unwinding runs undisturbed before it is raised again (_insist), and within
                             # which another SIGTERM from outside is the same stop told twice (_interrupt)


def run_root() -> Path | None:
    """The experiment folder of the run this process started last (start_run, which holds its lock), or None."""
    return _RUN_ROOT[-1] if _RUN_ROOT else None


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
    "WARMUP": _at_least(0), "THREADS": _at_least(0), "SEED": _at_least(0), "BEST_SEEDS": _at_least(0), "HEAD_TOKENS": _at_least(0),
    "MAX_LENGTH": _at_least(8), "TRUNCATION": _one_of(*TRUNCATIONS), "DEVICE": _one_of("auto", "cpu", "cuda"),
    "SPLIT": _one_of("test", "validation"), "HALF_PRECISION": _one_of("auto", "always", "never"),
    "GPU_WARMUP_S": _at_least(0), "STEPS": _at_least(1), "WARMUP_STEPS": _at_least(1), "PEAK_TFLOPS": _at_least(0), "MAX_SECONDS": _at_least(0),
    "ATTENTION": _one_of("sdpa", "eager"), "REPORT_TO": _one_of("none", "tensorboard"), "OPTIMIZER": _one_of("adamw_torch", "adamw_torch_fused"),
    "CHOOSE_BY": _one_of("accuracy", "gain"), "BEST_METRIC": _one_of("accuracy", "f1", "recall"),
    "EVAL_STEPS": _at_least(0),
}


def check_setting_values(values: dict, where) -> None:
    """Raise UsageError for the first value outside its range (SETTING_RULES), or a head+tail split
    that leaves no tail. values: {NAME: value}; where(NAME, value) says how the user set it, e.g.
    `--epochs=-1` or `epochs = -1 in configs/x.toml`."""
    for name, value in values.items():
        rule = SETTING_RULES.get(name.upper())
        if isinstance(value, float) and not math.isfinite(value):     # inf passes "above 0", nan every comparison's no
            raise UsageError(f"{where(name, value)}: must be a finite number")
        if rule is not None and not rule[1](value):
            raise UsageError(f"{where(name, value)}: must be {rule[0]}")
    v = {k.upper(): (k, x) for k, x in values.items()}
    if v.get("TRUNCATION", (0, ""))[1] == "head+tail" and "HEAD_TOKENS" in v and "MAX_LENGTH" in v \
            and v["HEAD_TOKENS"][1] >= v["MAX_LENGTH"][1] - 2:
        raise UsageError(f"{where(*v['HEAD_TOKENS'])}: must be below {where(*v['MAX_LENGTH'])} minus the special "
                         f"tokens (head+tail keeps that many tokens from the start, the rest from the end); a quarter "
                         f"of it, {v['MAX_LENGTH'][1] // 4}, is what configs/ use: --head_tokens={v['MAX_LENGTH'][1] // 4} "
                         f"(head_tokens = {v['MAX_LENGTH'][1] // 4} in a config file)")


# ----------------------------------------------------------------------------------------------
# reading values
# ----------------------------------------------------------------------------------------------
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_bool(text: str) -> bool:
    if text.strip().lower() not in BOOL_WORDS:
        raise ValueError(f"not a boolean: {text!r} (use true or false)")
    return BOOL_WORDS[text.strip().lower()]


def parse_list(text: str) -> list:
    """A TOML array (`[1, 2]`, `["a", "b"]`, `[{name = "x"}]`) or comma-separated strings (`a,b,c`)."""
    text = text.strip()
    return tomllib.loads(f"v = {text}")["v"] if text.startswith("[") else [s.strip() for s in text.split(",") if s.strip()]


PARSERS = {bool: parse_bool, int: int, float: float, str: str, list: parse_list}   # command-line text -> value


def toml_inline(value) -> str:
    """`value` (a dict, list, string, number or boolean) as TOML inline text, e.g. a student's entry for
    --students='[{name = "L1", layers = [0]}]' (parse_list reads it back)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else repr(value)     # a JSON string is a TOML basic string


def flag_text(value) -> str:
    """`value` as it is typed after `--name=` (parse_list / parse_bool read it back): a list or tuple of plain
    strings comma-separated (in TOML brackets where an item would not read back so: a number, a comma, brackets,
    blanks at its ends, or empty), a boolean lower-case."""
    if isinstance(value, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in value):
        plain = all(isinstance(x, str) and x == x.strip() and x and "," not in x and not x.startswith("[")
                    for x in value)         # numbers too: parse_list reads "1,3" as strings
        return ",".join(str(x) for x in value) if plain or not value else toml_inline(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def flag(name: str, value) -> str:
    """`--name=value` as it is typed in a shell (quoted where the value needs it: spaces, quotes, brackets)."""
    return shlex.quote(f"--{name.lower()}={flag_text(value)}")


def where_set(name: str, value, source: str, config_file: str = "", script: str = "", table: bool = False) -> str:
    """How a setting was given, for a message that names it: `--name=value` (source "flag"), `name = value in FILE`
    ("file"; `table`: set in the file's [SCRIPT] table, `name = value in [SCRIPT] of FILE`), or `NAME = value (at the
    top of SCRIPT.py)` (the script's own constant, "default")."""
    if source == "flag":
        return flag(name, value)
    if source == "file":
        return f"{name.lower()} = {toml_inline(value)} in {f'[{script}] of ' if table else ''}{config_file}"
    return f"{name.upper()} = {value!r} (at the top of {script}.py)"


def where_in(cfg: dict, name: str, value, script: str) -> str:
    """where_set for a setting of configure()'s result `cfg` (its _sources, _config_file and _tables)."""
    source = (cfg.get("_sources") or {}).get(name.upper(), "default")
    return where_set(name, value, source, cfg.get("_config_file", ""), script, name.upper() in cfg.get("_tables", ()))


def coerce(name: str, value, default, source: str = ""):
    """`value` as the type of `default`, or UsageError naming the setting and where it was set.

    Command-line text is parsed (PARSERS); a value from a TOML file (`source` names the file) must already
    have the type (an int is accepted for a float). A list's items must have the type of the default's."""
    kind = type(default)
    where = f"{name.lower()} = {value!r} in {source}" if source else f"--{name.lower()}={value!r}"
    try:
        if isinstance(value, str) and not source:
            value = PARSERS[kind](value)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        json_like = isinstance(e, tomllib.TOMLDecodeError) and re.search(r'\{\s*"[^"]*"\s*:', value)   # {"name": ...}
        raise UsageError(f"{where}: expected {kind.__name__} ({e})" + ("; it is read as TOML, not JSON: write a table "
                         "as {name = \"x\", layers = [0]}" if json_like else "")) from None
    if kind is float and type(value) is int:
        value = float(value)
    if kind is list and value == [] and default == [""]:
        value = [""]                   # `--label_names=` or `[]`: the default "none", recorded one way
    if type(value) is not kind:
        plain = kind is list and isinstance(value, str) and not set(value) & set("[]{}\"'=")   # "a,b": the flag's form
        as_list = f"; a list is written in brackets: {name.lower()} = {json.dumps([x.strip() for x in value.split(',')])}" \
            if plain else ""
        raise UsageError(f"{where}: expected {kind.__name__}, got {type(value).__name__}{as_list}")
    bad = [x for x in value if default and type(x) is not type(default[0])] if kind is list else []
    if bad:
        raise UsageError(f"{where}: expected list of {type(default[0]).__name__}, got {bad[0]!r}")
    return value


# ----------------------------------------------------------------------------------------------
# configure: defaults < config file < command line
# ----------------------------------------------------------------------------------------------
@functools.cache
def script_settings(script: str) -> dict[str, str]:
    """The settings a project script declares at its top level, its annotated UPPER_CASE names, with their type's
    name (`EPOCHS: float = 2.0`: {"EPOCHS": "float"}; script_defaults' settings), read from its source (the scripts
    sit above this module, so it does not import them). Its other constants (bench.py's GPU_PEAKS, ...) are not
    settings: given as flags they were taken as another script's and silently ignored."""
    path = PROJECT_DIR / f"{script}.py"
    body = ast.parse(path.read_text()).body if path.is_file() else []
    return {n.target.id: ast.unparse(n.annotation) for n in body if isinstance(n, ast.AnnAssign)
            and isinstance(n.target, ast.Name) and n.target.id.isupper() and not n.target.id.startswith("_")}


def script_constants(script: str) -> frozenset[str]:
    """The names of a script's settings (script_settings): a name any script has is a valid key anywhere."""
    return frozenset(script_settings(script))


def boolean_settings() -> frozenset[str]:
    """The settings some project script declares as booleans (OVERWRITE, JSON, ...)."""
    return frozenset(n for s in SCRIPTS for n, kind in script_settings(s).items() if kind == "bool")


def any_script_has(name: str) -> bool:
    return any(name in script_constants(s) for s in SCRIPTS)


def parse_argv(argv: list[str], defaults: dict, texts: bool = False) -> tuple[dict, list[str], str | None]:
    """({NAME: text} of the `--name=value` / `--name value` flags, positional arguments, --config path).
    A boolean flag alone switches it on (`--overwrite`; `--overwrite false` also reads, but not where positional
    arguments are `texts`, inference.py's: `--json "No"` predicts "No"; there `--json=false`, and another script's
    flag takes a value only after =); after `--` all are positional."""
    flags, positional, config_path, i = {}, [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":              # the rest are positional (inference.py -- "--not a flag")
            positional += argv[i + 1:]
            break
        if not arg.startswith("--"):
            positional.append(arg)
            i += 1
            continue
        name, eq, value = arg[2:].partition("=")
        key = name.replace("-", "_").upper()
        follows = argv[i + 1] if i + 1 < len(argv) else None
        if not eq and isinstance(defaults.get(key), bool):
            value, i = ("true", i) if texts or follows is None or follows.strip().lower() not in BOOL_WORDS \
                else (follows, i + 1)
        elif not eq and follows is not None and not follows.startswith("--") and \
                not (texts and key not in defaults and name != "config"):
            value, i = follows, i + 1                 # `--name value`; another script's flag before texts takes none
        elif not eq and key in defaults:
            raise UsageError(f"--{name} needs a value: --{name}=VALUE")
        if name == "config":
            if not value:
                raise UsageError("--config needs a file: --config configs/NAME.toml (or --config=configs/NAME.toml)")
            config_path = value
        else:
            flags[key] = value
        i += 1
    return flags, positional, config_path


def print_help(namespace: dict, values: dict, set_by: str = "") -> None:
    """The script's docstring, then each constant with its value (the default, or as `set_by`, e.g. a --config
    file and flags given beside --help, set it) and the comment beside it in the source."""
    source = Path(namespace.get("__file__", "")).read_text() if Path(namespace.get("__file__", "")).is_file() else ""
    print((namespace.get("__doc__") or "").strip() + "\n\nconstants (override with --name=value" +
          (f"; the values {set_by} set" if set_by else "") + "):")
    for k, v in values.items():
        # the comment on the constant's line and on the comment-only lines indented under it
        note = re.search(rf"^{k}(?: *: *\w+)? *=[^#\n]*#\s*(.*(?:\n {{20,}}#.*)*)", source, re.MULTILINE)
        text = " ".join(part.strip().lstrip("# ") for part in note.group(1).splitlines()) if note else ""
        value = toml_inline(v)                         # as a flag reads it back (parse_list: TOML)
        print(f"  --{k.lower()}={shlex.quote(value) if ' ' in value else value}" + (f"    # {text}" if text else ""))


def read_config_file(path: str, script: str) -> tuple[dict, set]:
    """({NAME: value} of an experiment file, the names its `[script]` table sets): the top-level keys
    apply to every script that has them (each must be some script's), the `[script]` table to that
    script only, on top; configure drops the names this script does not have."""
    p = Path(path)
    if not p.is_file():
        import difflib
        known = sorted(f.name for f in (PROJECT_DIR / "configs").glob("*.toml"))
        close = difflib.get_close_matches(p.name, known, n=1, cutoff=0.75)
        raise UsageError(f"--config {path}: no such file{f'; did you mean configs/{close[0]}?' if close else ''}; "
                         f"experiments are in configs/: {', '.join(known)}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    shared = {k.upper(): v for k, v in data.items() if not (isinstance(v, dict) and k in SCRIPTS)}
    own = {k.upper(): v for k, v in data.get(script, {}).items()}
    unknown = [k for k in shared if not any_script_has(k)]
    if unknown:
        every = set().union(*map(script_constants, SCRIPTS)) | {n.upper() for n in SCRIPTS}
        raise UsageError(f"{path}: unknown key '{unknown[0].lower()}' (not a constant of any script, nor a "
                         f"table named after one of {', '.join(SCRIPTS)}){did_you_mean(unknown[0], every, '')}")
    return shared | own, set(own)


def did_you_mean(name: str, names, prefix: str = "--") -> str:
    """'; did you mean --epochs?' for a misspelled constant name, or '' when none is close."""
    import difflib
    close = difflib.get_close_matches(name.upper(), list(names), n=1, cutoff=0.75)
    return f"; did you mean {prefix}{close[0].lower()}?" if close else ""


def configure(namespace: dict, argv: list[str] | None = None, script: str | None = None) -> dict:
    """Set a script's UPPER_CASE constants, in place, from `--config FILE` and `--name=value` flags.

    Precedence, the one rule of every setting: command line > config file > the script's default; a
    student's own value in STUDENTS counts at the level STUDENTS was set (distill_student.student_settings).
    A name that only another script has (a shared config file, run_experiment.sh's flags) is ignored;
    a name no script has is an error listing the valid ones. Values are type- and range-checked.
    Returns {NAME: value} plus `_args` (positional arguments), `_sources` ({NAME: "default" | "file" |
    "flag"}), `_ignored` (flags of other scripts), `_tables` (names the file's [script] table set) and `_config_file`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = script or Path(namespace.get("__file__", "script")).stem
    # the constants as the script defined them; a second call in one process (tests) starts from them
    defaults = _DEFAULTS.setdefault(id(namespace), (namespace, copy.deepcopy(script_defaults(namespace, script))))[1]
    end = argv.index("--") if "--" in argv else len(argv)
    helping = bool({"-h", "--help"} & set(argv[:end]))      # shown once the file and flags beside it are read
    argv = [a for i, a in enumerate(argv) if i >= end or a not in ("-h", "--help")]
    flags, positional, config_path = parse_argv(argv, defaults, texts=script == "inference")
    unknown = [n for n in flags if n not in defaults and not any_script_has(n)]
    if unknown:
        text = "; a text that starts with -- goes after a lone --" if script == "inference" else ""
        every = set().union(*map(script_constants, SCRIPTS))      # a misspelling of another script's name too
        valid = (f"each step's valid names: python <step>.py --help ({', '.join(STEPS)})"
                 if os.environ.get("KD_ALL_STEPS")                  # run_experiment.sh: one command line for every step
                 else f"valid names for {script}.py: {', '.join(sorted(n.lower() for n in defaults))}")
        raise UsageError(f"unknown constant '--{unknown[0].lower()}' (no script has it){text}"
                         f"{did_you_mean(unknown[0], defaults) or did_you_mean(unknown[0], every)}; {valid}")
    file_values, exact = read_config_file(config_path, script) if config_path else ({}, set())
    if exact - set(defaults):
        bad = sorted(exact - set(defaults))[0]
        raise UsageError(f"{config_path} [{script}]: unknown constant '{bad.lower()}'{did_you_mean(bad, defaults, '')}; "
                         f"valid names: {', '.join(sorted(n.lower() for n in defaults))}")
    cfg, sources = copy.deepcopy(defaults), dict.fromkeys(defaults, "default")
    for name in set(file_values) & set(defaults):
        cfg[name], sources[name] = coerce(name, file_values[name], defaults[name], source=config_path), "file"
    for name in set(flags) & set(defaults):
        cfg[name], sources[name] = coerce(name, flags[name], defaults[name]), "flag"
    if helping:
        print_help(namespace, cfg, " and ".join(filter(None, [config_path and f"--config {config_path}",
                                                            (set(flags) & set(defaults)) and "the flags"])))
        sys.exit(0)
    check_setting_values(cfg, lambda n, v: where_set(n, v, sources[n], config_path, script, n in exact))
    absolute_data_paths(cfg)
    namespace.update(cfg)
    return cfg | {"_args": positional, "_sources": sources, "_ignored": sorted(set(flags) - set(defaults)),
                  "_tables": sorted(exact & set(defaults) - set(flags))} | \
        ({"_config_file": config_path} if config_path else {})


def annotations(namespace: dict) -> dict:
    """A module namespace's annotations {name: type}: its __annotations__, or, from Python 3.14 on (PEP 649: a
    module's annotations are evaluated on demand, so its globals hold only __annotate__), __annotate__'s values."""
    if "__annotations__" in namespace:
        return namespace["__annotations__"]
    annotate = namespace.get("__annotate__")
    return annotate(1) if callable(annotate) else {}     # 1: annotationlib.Format.VALUE


def defined_constants(namespace: dict, script: str) -> dict:
    """A script's settings as its file defines them (edited at its top): configure() sets the module's globals to
    a run's values, so a later call of its functions in the same process (inference.predict after inference.main)
    reads these rather than what the last command line set."""
    return _DEFAULTS[id(namespace)][1] if id(namespace) in _DEFAULTS else script_defaults(namespace, script)


def script_defaults(namespace: dict, script: str) -> dict:
    """A script's settings as its constants block defines them: {NAME: value} for its UPPER_CASE globals of a
    plain type (CONFIG_TYPES) or annotated with one. An annotation (`EPOCHS: float = 2.0`) is the setting's type,
    which flags and files are read as: a value edited in the file to another type is one line naming it (an
    int where a float is declared is taken as the float)."""
    declared = {k: CONFIG_TYPE_NAMES.get(t, t) for k, t in annotations(namespace).items()}  # str: postponed
    values = {}
    for name, value in namespace.items():
        kind = declared.get(name)
        if not name.isupper() or name.startswith("_") or (kind not in CONFIG_TYPES and not isinstance(value, CONFIG_TYPES)):
            continue
        if kind is float and type(value) is int:
            value = float(value)
        if kind in CONFIG_TYPES and type(value) is not kind:
            example = {bool: "True or False", int: "a whole number", float: "a number", str: 'text in quotes, "..."',
                       list: 'a list in brackets, ["a", "b"]'}[kind]
            raise UsageError(f"{name} = {value!r} in {script}.py: expected {kind.__name__} ({example}), as its "
                             f"annotation `{name}: {kind.__name__}` says; edit the value there")
        values[name] = value
    return values


def absolute_data_paths(cfg: dict) -> None:
    """Local data paths (data_utils.PATH_SETTINGS: data, data_dir, transfer_data), as typed relative to the working
    folder, made absolute in place: the run reads them from wherever it runs (public_config records them portable)."""
    from data_utils import PATH_SETTINGS, is_path_setting
    for name in (k.upper() for k in PATH_SETTINGS):
        if is_path_setting(name, cfg.get(name)):
            cfg[name] = os.path.abspath(os.path.expanduser(cfg[name]))


def in_checkout(path: str) -> str:
    """A config file's path as records keep it: as data paths are (data_utils.portable), but configs/x.toml rather
    than ./configs/x.toml inside the checkout (run_experiment.sh passes it absolute: a clone's records match)."""
    from data_utils import portable
    kept = portable(os.path.abspath(os.path.expanduser(path)))
    return kept.removeprefix(os.curdir + os.sep)


def public_config(cfg: dict) -> dict:
    """The effective configuration as saved to JSON: lower-case names, no private entries, local data paths as
    records keep them (data_utils.portable: relative to the checkout when beside it, so a clone reads them too)."""
    from data_utils import is_path_setting, portable
    return {k.lower(): portable(v) if is_path_setting(k, v) and os.path.isabs(v) else v
            for k, v in cfg.items() if not k.startswith("_")} | \
        ({"config_file": in_checkout(cfg["_config_file"])} if "_config_file" in cfg else {}) | \
        ({"versions": cfg["_versions"]} if "_versions" in cfg else {})


# ----------------------------------------------------------------------------------------------
# starting a run: logging, the experiment lock, one-line errors
# ----------------------------------------------------------------------------------------------
def check_run_folder(output_dir: str, experiment: str) -> None:
    """UsageError for an empty OUTPUT_DIR, or an EXPERIMENT that is not one folder name: empty (its files would lie
    in OUTPUT_DIR itself, beside every experiment), a path (inside another experiment, outside its lock), or teacher
    / students (an experiment's own folders: its models' records would be looked for in the wrong place)."""
    if not output_dir.strip():
        raise UsageError("--output_dir is empty; give the folder that holds the experiments (default outputs)")
    if not experiment.strip() or experiment.strip() in (".", "..") or "/" in experiment or os.sep in experiment:
        raise UsageError(f"--experiment={experiment!r}: must be one folder name under --output_dir ({output_dir}), "
                         f"such as mine or quick-2; for another place give --output_dir")
    if experiment.strip() in ("teacher", "students"):     # models.experiment_of would take its teacher's parent for it
        raise UsageError(f"--experiment={experiment}: a name an experiment's own folders use (teacher, students); "
                         f"choose another, such as my-{experiment}")


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline_if_hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Turn the Hugging Face hub's offline mode on, for this process and those it starts, when the user left it unset
    and the hub cannot be reached (no name resolution, no route, refused): otherwise huggingface_hub retries each
    file's lookup with back-off before it falls back to its cache, 95 s for one tokenizer already cached on a machine
    without network, 2.4 s with this check (outputs/readme-figures). Returns why the hub was unreachable, else None.
    Not checked where HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set either way, or a proxy is (a direct connection
    proves nothing there).
    The name lookup takes at most `timeout_s`, then each address's connection as long."""
    import socket
    from urllib.parse import urlparse
    if any(v in os.environ for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    found: list = []

    def look_up():        # in a thread: no timeout bounds getaddrinfo, which can hang on a machine without DNS
        try:
            found.append(socket.getaddrinfo(url.hostname, port, type=socket.SOCK_STREAM))
        except OSError as e:
            found.append(e)
    lookup = threading.Thread(target=look_up, daemon=True)    # daemon: a lookup that hangs on does not hold the exit
    lookup.start()
    lookup.join(timeout_s)
    got = found[0] if found else None        # read once: the thread may answer between two reads
    if got is None:
        reason = f"{url.hostname}: no answer to the name lookup within {timeout_s:g} s"
    elif isinstance(got, OSError):
        reason = f"{url.hostname}: {got.strerror or got or type(got).__name__}"
    else:
        try:            # each address in turn, timeout_s each (a dead IPv6 route, then IPv4), as huggingface_hub would
            socket.create_connection((url.hostname, port), timeout=timeout_s).close()
            return None
        except OSError as e:
            reason = f"{url.hostname}: {e.strerror or e or type(e).__name__}"
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module in ("huggingface_hub.constants", "datasets.config"):     # read at their import: set where already imported
        if module in sys.modules and hasattr(sys.modules[module], "HF_HUB_OFFLINE"):
            sys.modules[module].HF_HUB_OFFLINE = True
    return reason


def warn_offline(reason: str | None) -> None:
    """The log line for offline_if_hub_unreachable's decision."""
    if reason:
        from huggingface_hub import constants
        log.warning("the Hugging Face hub is not reachable (%s): working offline from the local hub cache %s (HF_HUB_CACHE) "
                    "for this run; set HF_HUB_OFFLINE=1 to skip this check", reason, constants.HF_HUB_CACHE)


def start_run(namespace: dict, argv: list[str] | None, script: str, log_name, check=None) -> dict:
    """The opening of a training/evaluation script: apply overrides (no positional arguments allowed),
    run the script's own checks `check(cfg)` (before anything is written: a bad input changes nothing
    on disk), then log to OUTPUT_DIR/EXPERIMENT/logs/<log_name> (a name, or a function of the configured
    namespace giving one) and log the effective configuration."""
    cfg = configure(namespace, argv, script)
    if cfg["_args"]:
        raise UsageError(f"unexpected argument {cfg['_args'][0]!r}; constants are set as --name=value")
    check_run_folder(namespace["OUTPUT_DIR"], namespace["EXPERIMENT"])
    if not namespace.get("MODEL"):         # export.py --model: its experiment is known after its check
        refuse_if_busy(Path(namespace["OUTPUT_DIR"]) / namespace["EXPERIMENT"])   # before checks that load data
    with held_records() as early:
        if script != "export":     # export.py reads local model folders only
            warn_offline(offline_if_hub_unreachable())   # before the checks, which may load models and data from the hub
        if check is not None:
            check(cfg)
        root = Path(namespace["OUTPUT_DIR"]) / namespace["EXPERIMENT"]
        _RUN_ROOT[:], _RUN_SCRIPT[:] = [root], [script]
        name = log_name(namespace) if callable(log_name) else log_name
        setup_logging(root / "logs" / name)           # a folder it cannot write is an error after the held warnings
    for record in early:                   # the files a data folder gave each split, the checks' warnings
        if log.isEnabledFor(record.levelno):
            log.handle(record)
    lock_experiment(root, script)
    if "THREADS" in namespace:
        set_threads(namespace["THREADS"], script)
    cfg["_versions"] = library_versions()
    log.info("config: %s", {k: [] if v == [""] else v for k, v in public_config(cfg).items()})   # [""]: a list left unset
    if cfg["_ignored"]:   # expected under run_experiment.sh (KD_ALL_STEPS: one command line for every step), else a warning
        log.log(logging.INFO if os.environ.get("KD_ALL_STEPS") else logging.WARNING, "flags for other scripts, ignored "
                "by %s.py: %s", script, ", ".join(f"--{n.lower()}" for n in cfg["_ignored"]))
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:   # a shell without job control leaves `cmd &` so
        log.info("Ctrl-C and kill -INT are ignored in this process (started with & by a shell without job control); "
                 "kill PID (SIGTERM) stops it as cleanly")
    return cfg


class _Held(logging.Handler):
    """A handler that keeps the records it gets (held_records)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        record.msg, record.args = record.getMessage(), None     # as it read when logged, whatever changes later
        self.records.append(record)


@contextlib.contextmanager
def held_records():
    """The records a script's checks log (they run before its log exists: they read the data first), held as a
    list for start_run to hand to the log once it is set up; when a check fails, the warnings among them are
    printed to stderr, as Python prints a warning that has no handler, before the error."""
    held, level, propagate = _Held(), log.level, log.propagate
    log.addHandler(held)
    log.setLevel(logging.INFO)
    log.propagate = False          # not also to a handler an earlier run of this process set up: once, in order
    try:
        yield held.records
    except BaseException:
        for record in held.records:
            if record.levelno >= logging.WARNING:
                (logging.lastResort or logging.StreamHandler()).handle(record)
        raise
    finally:
        log.removeHandler(held)
        log.setLevel(level)
        log.propagate = propagate


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
    return out | {"code": code_version()}


def code_version(root: Path = PROJECT_DIR) -> dict | None:
    """{commit, modified} of the checkout: its commit and the tracked scripts and configs edited since (a record
    names its config file, but a constant edited in a script would not show otherwise). Outside a git checkout (a
    copied tree: lent_gpu.sh's, a device machine's) the JSON in $KD_CODE_VERSION, which lent_gpu.sh sets from the
    checkout it copies (or from CODE_COMMIT where that has no git either); else None."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        edited = git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "*.sh", "configs")
    except (OSError, subprocess.SubprocessError):
        head = None
    if head is None or head.returncode:
        try:
            return json.loads(os.environ.get("KD_CODE_VERSION") or "null")
        except ValueError:
            log.warning("KD_CODE_VERSION is not JSON (%r): the records name no commit", os.environ["KD_CODE_VERSION"][:80])
            return None
    return {"commit": head.stdout.strip(), "modified": sorted(line[3:] for line in edited.stdout.splitlines())}


def cpu_sample() -> tuple[float, float, float] | None:
    """(wall s, the machine's busy CPU s (every process, interrupts, and steal: time a VM's host gave to others),
    CPU s this process has used) now, for others_cores; None where /proc/stat is missing (not Linux). The whole
    machine's: under taskset or a container's CPU set, work on cores this process cannot use counts too."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]   # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")   # steal too: a VM's neighbours take it
    own = os.times()      # with the child processes reaped so far (data-loader workers, once they exit)
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


# THREADS = 0 in these scripts: one torch thread per core, less the cores other processes keep busy (not in
# evaluate_models or bench.py, whose speed figures are to be compared at the threads of the machine)
AUTO_THREADS = ("fine_tuning_teacher", "distill_student")
_TORCH_THREADS: list[int] = []        # torch's own default, read before this module first changed it
_WINDOW: list = []                    # cpu_sample() where threads_for_shared_cpu's window starts: import, then each run


def set_threads(threads: int, script: str) -> None:
    """torch's CPU threads for a run: `threads` when set; 0: torch's default (as read before any run of this process
    changed it), cut by threads_for_shared_cpu in AUTO_THREADS' scripts."""
    import torch
    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(threads or _TORCH_THREADS[0])
    if not threads and script in AUTO_THREADS:
        threads_for_shared_cpu()
    _WINDOW[:] = [cpu_sample()]       # a later run in this process measures from here


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform has one, else all)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def cpu_quota() -> float | None:
    """The cores a cgroup CPU quota allows this process (a container's --cpus), else None."""
    try:
        try:
            quota, period = open("/sys/fs/cgroup/cpu.max").read().split()        # cgroup v2: "max 100000", "200000 100000"
        except OSError:                                                          # v1: -1 for none
            quota, period = (open(f"/sys/fs/cgroup/cpu/cpu.cfs_{n}_us").read().strip() for n in ("quota", "period"))
        return None if quota in ("max", "-1") else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def spare_threads(threads: int, others: float | None, cores: int) -> int:
    """The torch threads that fit beside other processes keeping `others` of the machine's `cores` busy: the free
    cores, rounded half up, at most `threads` and at least 1 (2 threads on 2 cores beside 1.0 busy: 1; beside 0.4: 2;
    4 threads (OMP_NUM_THREADS) on 64 cores beside 10 busy: 4)."""
    return threads if others is None else max(1, min(threads, math.floor(cores - others + 0.5)))


def threads_for_shared_cpu() -> None:
    """THREADS = 0 on a CPU that other processes keep busy (measured since this module was imported, or since this
    process's last run began, while the script loaded its libraries and checked its inputs: others_cores): torch's
    threads cut to spare_threads. Threads waiting on each other's turn are what slows a shared CPU: the smoke teacher
    on 2 cores, one kept busy by another process, trained 2.7 s a step with 2 threads and 1.6 s with 1
    (outputs/readme-figures, shared_cpu). Not on a GPU, under torchrun, where this process may use only some of the
    cores, or under a CPU quota (the sample is the whole machine's, not the container's)."""
    import torch
    others = others_cores(_WINDOW[0] if _WINDOW else None, cpu_sample())   # None where /proc/stat is missing
    if others is None or torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) > 1 or \
            usable_cores() != os.cpu_count() or cpu_quota() is not None:
        return
    threads = spare_threads(torch.get_num_threads(), others, os.cpu_count())
    if threads < torch.get_num_threads():
        log.warning("other processes keep %.1f of this machine's %d cores busy: torch runs %d thread%s instead of %d, "
                    "which on a shared CPU is several times faster than threads waiting on each other's turn "
                    "(--threads=N sets the number)", others, os.cpu_count(), threads, "s" * (threads > 1),
                    torch.get_num_threads())
        torch.set_num_threads(threads)


def others_cores(before: tuple | None, after: tuple | None, min_s: float = 1.0) -> float | None:
    """How many CPU cores other processes kept busy, on average, between two cpu_sample()s:
    (d machine CPU s - d own CPU s) / d wall s, floored at 0. None when either sample is missing or they are under
    min_s apart: the kernel counts in ticks of 10 ms, +-0.2 cores over 0.1 s. It is measured, where the load average
    (evaluate_models.machine_load) only hints: that counts this process's own threads and decays over a minute."""
    if before is None or after is None or after[0] - before[0] < min_s:
        return None
    return round(max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])), 2)


def refuse_if_busy(root: Path) -> None:
    """UsageError when another live process holds the experiment's lock (read only: lock_experiment takes it)."""
    lock = root / ".lock"
    if not is_main_process() or not lock.is_file():
        return
    owner, alive = _lock_owner(lock)
    if alive and owner.get("pid") != os.getpid():
        raise UsageError(f"{root} is in use by {owner.get('script')}.py (pid {owner['pid']}, since "
                         f"{owner.get('since')}); wait for it to finish or stop it (if no such process runs, "
                         f"delete {lock})")


def lock_experiment(root: Path, script: str) -> None:
    """Refuse to start while another process runs in the same experiment folder (two runs would write
    the same checkpoints and models): a lock file `root/.lock` holds the owner's pid and script, is
    removed when the owner exits, and a lock whose process is gone (killed) is taken over. A process
    keeps its lock until it exits (the tests run several steps in one process).
    Under torchrun only rank 0 locks (the other ranks are part of its run)."""
    if not is_main_process():
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
            refuse_if_busy(root)
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


def run_main(main) -> None:
    """Run a script's main(); turn a UsageError, or a full disk, into a one-line message and exit status 2.
    A reader that stops early (`inference.py ... | head`) ends it quietly, as for any Unix filter. Stopped
    by Ctrl-C or SIGTERM (`timeout`, a batch scheduler), it unwinds as for Ctrl-C (an atomic write in
    progress is dropped, the experiment lock released) and says how to resume, exit status 128 + signal."""
    signal.signal(signal.SIGTERM, _interrupt)
    if os.environ.get("KD_STEP_OF_RUN") and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)   # run_experiment.sh's background step: Ctrl-C is for it
    try:
        main()
    except KeyboardInterrupt as e:
        _STOPPING.append("caught")
        signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
        saved = _RUN_ROOT and any((_RUN_ROOT[-1] / "checkpoints").glob("**/checkpoint-*"))
        resume = (": finished models are kept and an interrupted training resumes from its last checkpoint when "
                  "the same command runs again" if saved else ": finished models are kept; the same command goes on (an "
                  "interrupted training starts over: it had saved no checkpoint, which it does at each evaluation; for "
                  "a long epoch, set --eval_steps=N in a new experiment: a checkpoint every N steps)") \
            if _RUN_ROOT else ""
        if _RUN_ROOT and _RUN_SCRIPT and _RUN_SCRIPT[-1] not in TRAINING_SCRIPTS:     # evaluation, export, bench
            resume = ": finished models and the last results are kept; the same command runs it again"
        message = f"stopped by {signal.Signals(signum).name}{resume}"
        if _RUN_ROOT:     # into the run's log file too (the console gets the line); before it exists, nowhere else
            logging.getLogger("kd.file").warning(message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(128 + signum)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # Python's advice: no second error at exit
        sys.exit(1)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        message = disk_full(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _interrupt(signum, frame) -> None:
    """SIGTERM: raise KeyboardInterrupt, which unwinds like Ctrl-C (finally blocks and atexit run, not on the bare
    signal). Raised inside a finalizer (a __del__, a weakref callback) it is only printed ("Exception ignored")
    and the run goes on, so a thread raises it again every INSIST_S seconds until run_main has caught it. Another
    SIGTERM within INSIST_S of the first (the process group's and run_experiment.sh's, passed on: one stop told twice)
    does nothing: raised inside the unwinding's finally blocks, it would cut them short (a lock left, a write not
    cleaned up); a later one raises again, as a user insisting means.
    SIGCHLD gets a handler that does nothing: a signal to the whole process group (`timeout`) ends the
    data-loader workers too, and torch's SIGCHLD handler would raise "DataLoader worker ... is killed by signal"
    over the unwinding (SIG_DFL instead: Python reports a SIGCHLD already pending as "ignored due to race")."""
    signal.signal(signal.SIGCHLD, _ignore_signal)
    if _STOP_AT and not _INSISTING and time.monotonic() - _STOP_AT[0] < INSIST_S:   # told again from outside
        return
    _INSISTING.clear()
    if not _STOPPING:
        _STOPPING.append(signum)
        _STOP_AT.append(time.monotonic())
        threading.Thread(target=_insist, args=(signum,), daemon=True).start()
    raise KeyboardInterrupt(signum)


def stop_pending() -> int | None:
    """The signal of a stop (_interrupt) that run_main has not caught yet, else None: its KeyboardInterrupt may have
    been swallowed by a finalizer, and a loop that checks this (training.StopWhenAsked) raises it again at once."""
    return _STOPPING[0] if _STOPPING and "caught" not in _STOPPING else None


def _ignore_signal(signum, frame) -> None:
    pass


@contextlib.contextmanager
def stops_held():
    """Ctrl-C and SIGTERM held back while the block writes files that must describe one run together (an
    evaluation's results, predictions, cards and figures: each written atomically, but not the set), then acted on
    as the block ends, the set whole. Only the main thread can set signal handlers: elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []        # a signal ignored (SIGINT of a `cmd &` without job control: start_run says so) stays ignored
    before = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
              if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if held:
        if held[0] == signal.SIGINT:
            raise KeyboardInterrupt
        _interrupt(held[0], None)


def _insist(signum: int) -> None:
    for _ in range(6):
        time.sleep(INSIST_S)
        if "caught" in _STOPPING:
            return
        _INSISTING.append(signum)
        signal.pthread_kill(threading.main_thread().ident, signum)   # to the main thread: a blocking call returns


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
    # torch.save's zip writer reports a write that fell short without the OS error ("unexpected pos N vs M"): a full
    # disk when less is free than a save of the run takes
    short = [e for e in chain if "unexpected pos" in str(e) and "inline_container" in str(e)]
    if not full and not short:
        return None
    named = next((e.filename for e in full if isinstance(e, OSError) and e.filename), None)
    folder = Path(named).parent if named else (_RUN_ROOT[-1] if _RUN_ROOT else Path.cwd())
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    free = shutil.disk_usage(existing).free / 1e6
    sizes = [sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
             for d in ([*_RUN_ROOT[-1].glob("**/checkpoint-*"), *_RUN_ROOT[-1].glob("teacher"),
                        *_RUN_ROOT[-1].glob("students/*")] if _RUN_ROOT else []) if d.is_dir()]
    if not full and not (sizes and free < max(sizes) / 1e6):
        return None
    need = f"; a save here takes about {max(sizes) / 1e6:.0f} MB" if sizes and max(sizes) else ""
    return (f"disk full while writing to {folder} ({free:.0f} MB free{need}); free some space (or use another "
            f"--output_dir) and run the same command again: finished models are kept, an interrupted save is set aside")


def is_main_process() -> bool:
    """Rank 0 under torchrun (or a single process). Read from torchrun's RANK: logging and the experiment
    lock are set up before the Trainer creates accelerate's process state, which this must not create early."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging(log_file: Path | None = None) -> None:
    """Log to stderr and to `log_file` (when given); under torchrun, other ranks log warnings only."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if not is_main_process():    # torchrun: only rank 0 logs at INFO and to the file
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


_WINDOW.append(cpu_sample())   # threads_for_shared_cpu's first window: from the script's start to its run
