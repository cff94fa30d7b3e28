"""Shared plumbing for every script: configuration, IMDb loading, splits, tokenization, models.

Nothing here runs on its own; the scripts import it. What it provides:

- `configure(globals(), argv)`: the override system. A script's UPPER_CASE constants are its defaults;
  `--config configs/NAME.toml` and then `--name=value` flags replace them (flags win over the file,
  the file over the defaults), each value type-checked against its default.
- `load_imdb`: IMDb from a local copy (`IMDB_DIR` / `DATA_DIR`: parquet files or the original
  `aclImdb` folder) or from the hub (`stanfordnlp/imdb`); rows are `text`, `label` (0 neg, 1 pos,
  -1 unlabeled), with HTML line breaks replaced by spaces.
- `make_splits`: a stratified, seeded validation split carved from train, optional stratified
  subsampling of train and test. The test split is for final evaluation only.
- `tokenize_dataset`: head / tail / head+tail truncation for any tokenizer, cached on disk under
  `CACHE_DIR/tokenized/<key>` where the key hashes the tokenizer, the settings and the texts.
- `load_classifier`: a hub id, a saved folder, or `tiny:bert` / `tiny:roberta` (random models built
  from a config in code, for tests; no download).

Offline use: `export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import re
import shutil
import string
import sys
import tomllib
from pathlib import Path

import numpy as np

ID2LABEL = {0: "negative", 1: "positive"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
UNLABELED = -1  # label of IMDb's `unsupervised` split
PROJECT_DIR = Path(__file__).resolve().parent
SCRIPTS = ("fine_tuning_teacher", "distill_student", "evaluate_models", "inference")
TRUNCATIONS = ("head", "tail", "head+tail")

log = logging.getLogger("kd")


class UsageError(Exception):
    """Bad input from the user: reported as one line `error: ...` and exit status 2, no traceback."""


def run_main(main) -> None:
    """Run a script's main(); turn a UsageError into a one-line message and exit status 2."""
    try:
        main()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def setup_logging(log_file: Path | None = None) -> None:
    """Log to stderr and to `log_file` (when given); under torchrun, other ranks log warnings only."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if int(os.environ.get("RANK", "0")) != 0:    # torchrun: only rank 0 logs at INFO and to the file
        logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True)
        return
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    for h in handlers:
        h.setFormatter(fmt)
    # "kd.file": file only, for what the console already shows another way (the Trainer's own logs)
    file_log = logging.getLogger("kd.file")
    file_log.handlers, file_log.propagate = handlers[1:], False


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
CONFIG_TYPES = (bool, int, float, str, list)
LEVELS = {"default": 0, "file": 1, "flag": 2}   # precedence of a value's source: flag > file > default


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


def _above(low):
    return f"> {low}", lambda v: v > low


def _at_least(low):
    return f">= {low}", lambda v: v >= low


def _between(low, high):
    return f"between {low} and {high}", lambda v: low <= v <= high


def _one_of(*choices):
    return f"one of {', '.join(choices)}", lambda v: v in choices


# the allowed values of every setting that has a range, whichever script defines it; checked when the
# configuration is read, before any data or model is loaded (per-student values: check_setting_values)
SETTING_RULES = {
    "EPOCHS": _above(0), "LEARNING_RATE": _above(0), "TEMPERATURE": _above(0),
    "ALPHA": _between(0, 1), "MIN_TEACHER_ACCURACY": _between(0, 1), "WARMUP_RATIO": _between(0, 1),
    "BATCH_SIZE": _at_least(1), "EVAL_BATCH_SIZE": _at_least(1), "TEACHER_BATCH_SIZE": _at_least(1),
    "GRAD_ACCUM": _at_least(1), "LOGGING_STEPS": _at_least(1), "LATENCY_SAMPLES": _at_least(1),
    "VAL_SIZE": _at_least(1), "TRAIN_SIZE": _at_least(0), "TEST_SIZE": _at_least(0),
    "TRANSFER_SIZE": _at_least(0), "WEIGHT_DECAY": _at_least(0), "NUM_WORKERS": _at_least(0),
    "WARMUP": _at_least(0), "THREADS": _at_least(0), "SEED": _at_least(0), "HEAD_TOKENS": _at_least(0),
    "MAX_LENGTH": _at_least(8), "TRUNCATION": _one_of(*TRUNCATIONS), "DEVICE": _one_of("auto", "cpu", "cuda"),
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


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
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
    Returns the effective configuration {NAME: value}. Precedence: flags > file > defaults.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = script or Path(namespace.get("__file__", "script")).stem
    # the defaults are the constants as first seen: a second call (tests) starts from them again
    import copy
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
                value = "true"            # `--json` alone switches a boolean on
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


def start_run(namespace: dict, argv: list[str] | None, script: str, log_name: str) -> dict:
    """The opening of a training/evaluation script: apply overrides (no positional arguments allowed),
    log to OUTPUT_DIR/EXPERIMENT/logs/<log_name>, and log the effective configuration."""
    cfg = configure(namespace, argv, script)
    if cfg["_args"]:
        raise UsageError(f"unexpected argument {cfg['_args'][0]!r}; constants are set as --name=value")
    setup_logging(Path(namespace["OUTPUT_DIR"]) / namespace["EXPERIMENT"] / "logs" / log_name)
    log.info("config: %s", public_config(cfg))
    return cfg


def public_config(cfg: dict) -> dict:
    """The effective configuration as saved to JSON: lower-case names, no private entries."""
    return {k.lower(): v for k, v in cfg.items() if not k.startswith("_")} | \
        ({"config_file": cfg["_config_file"]} if "_config_file" in cfg else {})


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def digest(obj) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def texts_digest(texts, labels=None) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    if labels is not None:
        h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing `dst` (the caller checked it may)."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


# ----------------------------------------------------------------------------------------------
# IMDb
# ----------------------------------------------------------------------------------------------
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Replace IMDb's HTML line breaks (`<br />`) with spaces."""
    return _BR.sub(" ", text)


def _find_parquet(root: Path, split: str) -> list[Path]:
    exact = sorted(root.glob(f"**/{split}.parquet"))
    return exact or sorted(root.glob(f"**/{split}-*.parquet"))


def _find_aclimdb(root: Path) -> Path | None:
    for cand in (root, root / "aclImdb"):
        if (cand / "train" / "pos").is_dir():
            return cand
    return None


def _read_parquet(files: list[Path]) -> dict:
    import pyarrow.parquet as pq
    texts, labels = [], []
    for f in files:
        t = pq.read_table(f, columns=["text", "label"]).to_pydict()
        texts += t["text"]
        labels += t["label"]
    return {"text": texts, "label": labels}


def _read_aclimdb(root: Path, split: str) -> dict:
    folder_split, parts = ("train", [("unsup", UNLABELED)]) if split == "unsupervised" else \
        (split, [("neg", 0), ("pos", 1)])
    texts, labels = [], []
    for sub, label in parts:
        folder = root / folder_split / sub
        if not folder.is_dir():
            raise UsageError(f"{folder}: missing; an aclImdb folder needs {folder_split}/{sub}/*.txt")
        # files are named <id>_<rating>.txt: sort by id so the order is the same everywhere
        files = sorted(folder.glob("*.txt"), key=lambda f: (int(f.stem.split("_")[0]) if f.stem.split("_")[0].isdigit() else 0, f.name))
        texts += [f.read_text(encoding="utf-8") for f in files]
        labels += [label] * len(files)
    return {"text": texts, "label": labels}


def load_imdb(splits=("train", "test"), data_dir: str = "", dataset_name: str = "stanfordnlp/imdb") -> dict:
    """Load IMDb splits as {split: datasets.Dataset with columns text, label}.

    Where from: `data_dir` or else the environment variable IMDB_DIR (a folder of parquet files,
    `train.parquet` or the hub's `train-00000-of-00001.parquet`, or an `aclImdb` folder); with
    neither, the hub dataset `dataset_name`. Splits: train, test, unsupervised (label -1).
    """
    from datasets import Dataset
    local = data_dir or os.environ.get("IMDB_DIR", "")
    out = {}
    if local:
        root = Path(local).expanduser()
        where = "--data_dir" if data_dir else "IMDB_DIR"
        if not root.is_dir():
            raise UsageError(f"{where}={local}: no such folder; point it at a folder with train.parquet/"
                             f"test.parquet or an aclImdb folder (e.g. export IMDB_DIR=../shared/data/imdb)")
        acl = _find_aclimdb(root)
        for split in splits:
            files = _find_parquet(root, split)
            if files:
                cols = _read_parquet(files)
            elif acl is not None:
                cols = _read_aclimdb(acl, split)
            else:
                raise UsageError(f"{where}={local}: no {split}.parquet (nor {split}-*.parquet) and no "
                                 f"aclImdb/{split} folder in it; point it at a local IMDb copy")
            out[split] = Dataset.from_dict({"text": [clean_text(t) for t in cols["text"]],
                                            "label": [int(x) for x in cols["label"]]})
        log.info("IMDb from %s: %s", root, {s: len(d) for s, d in out.items()})
        return out
    try:
        from datasets import load_dataset
        for split in splits:
            ds = load_dataset(dataset_name, split=split).select_columns(["text", "label"])
            out[split] = ds.map(lambda b: {"text": [clean_text(t) for t in b["text"]]}, batched=True)
    except Exception as e:  # offline, missing dataset, no network: say what was tried
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"could not load IMDb: no IMDB_DIR/--data_dir set, and the hub dataset "
                         f"'{dataset_name}' failed ({first[:200]}); for a local copy set "
                         f"IMDB_DIR to a folder of parquet files or an aclImdb folder") from None
    log.info("IMDb from the hub (%s): %s", dataset_name, {s: len(d) for s, d in out.items()})
    return out


def stratified_indices(labels, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of size n with the label proportions of `labels` (sorted)."""
    labels = np.asarray(labels)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    if len(np.unique(labels)) < 2:
        return np.sort(np.random.default_rng(seed).choice(len(labels), n, replace=False))
    from sklearn.model_selection import train_test_split
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


def make_splits(data: dict, val_size: int, train_size: int = 0, test_size: int = 0, seed: int = 0) -> dict:
    """Carve validation from train and subsample; returns {train, validation, test?, unsupervised?}.

    val_size: reviews moved from train to validation (stratified, seeded); the rest is train.
    train_size / test_size: stratified subsample of what remains (0 = all).
    """
    train = data["train"]
    labels = np.asarray(train["label"])
    if not 0 < val_size < len(train):
        raise UsageError(f"--val_size={val_size}: must be between 1 and {len(train) - 1} (train has {len(train)})")
    val_idx = stratified_indices(labels, val_size, seed)
    rest = np.setdiff1d(np.arange(len(train)), val_idx)
    rest = rest[stratified_indices(labels[rest], train_size, seed)]
    out = {"train": train.select(rest), "validation": train.select(val_idx)}
    if "test" in data:
        test = data["test"]
        out["test"] = test.select(stratified_indices(test["label"], test_size, seed))
    if "unsupervised" in data:
        out["unsupervised"] = data["unsupervised"]
    return out


# ----------------------------------------------------------------------------------------------
# tokenization
# ----------------------------------------------------------------------------------------------
def truncate_ids(ids: list[int], budget: int, strategy: str, head_tokens: int) -> list[int]:
    """Cut a token list (no special tokens) to at most `budget` tokens.

    head: the first `budget`; tail: the last `budget`; head+tail: the first `head_tokens` and the
    last `budget - head_tokens` (Sun et al. 2019: head 128 + tail 382 is best on IMDb at 512).
    """
    if len(ids) <= budget:
        return list(ids)
    if strategy == "head":
        return list(ids[:budget])
    if strategy == "tail":
        return list(ids[len(ids) - budget:])
    if strategy == "head+tail":
        head = min(head_tokens, budget)
        return list(ids[:head]) + list(ids[len(ids) - (budget - head):]) if budget > head else list(ids[:head])
    raise UsageError(f"--truncation={strategy}: must be one of {', '.join(TRUNCATIONS)}")


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """(prefix, suffix) special-token ids the tokenizer wraps a single text in, e.g. [CLS] / [SEP]."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    raise ValueError(f"cannot locate the text inside {type(tokenizer).__name__}'s special tokens")


def encode(tokenizer, texts: list[str], max_length: int, strategy: str = "head", head_tokens: int = 128):
    """Tokenize texts to at most `max_length` ids each, special tokens included.

    Returns (input_ids: list[list[int]], full_lengths: np.ndarray of untruncated lengths incl. specials).
    """
    if strategy not in TRUNCATIONS:
        raise UsageError(f"--truncation={strategy}: must be one of {', '.join(TRUNCATIONS)}")
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget <= 0:
        raise UsageError(f"--max_length={max_length}: too small for the tokenizer's special tokens")
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    ids = [prefix + truncate_ids(r, budget, strategy, head_tokens) + suffix for r in raw]
    full = np.array([len(r) + len(prefix) + len(suffix) for r in raw])
    return ids, full


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what decides a tokenizer's output (its full serialized pipeline when available)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:   # minus the per-call truncation/padding state a call leaves behind
        body = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")},
                          sort_keys=True)
    else:
        body = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return digest([type(tokenizer).__name__, hashlib.sha256(body.encode()).hexdigest()])


def tokenize_dataset(ds, tokenizer, max_length: int, strategy: str, head_tokens: int,
                     cache_dir: Path | str | None = None, name: str = "data"):
    """Return `ds` with input_ids, length (and label) columns, cached on disk.

    The cache key hashes the tokenizer, the truncation settings and the texts and labels, so a
    changed tokenizer or setting never reuses stale ids. Token-length statistics are logged.
    """
    from datasets import Dataset, load_from_disk
    key = digest([tokenizer_fingerprint(tokenizer), max_length, strategy, head_tokens,
                  texts_digest(ds["text"], ds["label"])])
    path = Path(cache_dir) / "tokenized" / f"{name}-{key}" if cache_dir else None
    if path is not None and path.exists():
        out = load_from_disk(str(path))
        log.info("tokenized %s: reused cache %s (%d rows)", name, path, len(out))
        return out
    ids, full = encode(tokenizer, ds["text"], max_length, strategy, head_tokens)
    if len(full):
        log.info("tokens %s: mean %.0f, p95 %.0f, max %d; %.1f%% truncated to %d (%s)", name, full.mean(),
                 np.percentile(full, 95), full.max(), 100 * (full > max_length).mean(), max_length, strategy)
    out = Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids], "label": ds["label"]})
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        out.save_to_disk(str(tmp))
        if not path.exists():
            os.replace(tmp, path)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        out = load_from_disk(str(path))
    return out


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
TINY_WORDS = ("the a an and or but not no is was it this that movie film story acting plot good great "
              "best love loved excellent wonderful bad worst awful boring terrible waste").split()


def build_tiny(kind: str, seed: int = 0):
    """A randomly initialised 2-layer classifier and its tokenizer, built in code (for tests).

    kind: `bert` (WordPiece over letters, digits and a few words) or `roberta` (byte-level BPE
    without merges). Different tokenizers on purpose, to test cross-tokenizer distillation.
    """
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, BertTokenizer, RobertaConfig,
                              RobertaForSequenceClassification, RobertaTokenizer)
    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID)
    if kind == "bert":
        chars = string.ascii_lowercase + string.digits
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars + string.punctuation) + \
            ["##" + c for c in chars] + list(TINY_WORDS)
        tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
        model = BertForSequenceClassification(BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **common))
    elif kind == "roberta":
        from tokenizers.pre_tokenizers import ByteLevel
        vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + sorted(ByteLevel.alphabet())
        tok = RobertaTokenizer(vocab={w: i for i, w in enumerate(vocab)}, merges=[])
        model = RobertaForSequenceClassification(RobertaConfig(
            vocab_size=len(vocab), max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, type_vocab_size=1, **common))
    else:
        raise UsageError(f"tiny:{kind}: unknown tiny model; use tiny:bert or tiny:roberta")
    return model, tok


def load_classifier(name_or_path: str, seed: int = 0):
    """(model in float32, tokenizer) for a hub id, a saved folder, or `tiny:bert` / `tiny:roberta`.

    Label names {0: negative, 1: positive} are set in the model config so every later tool shows them.
    """
    if name_or_path.startswith("tiny:"):
        return build_tiny(name_or_path[5:], seed)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID, dtype=torch.float32)
    except OSError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise UsageError(f"cannot load model '{name_or_path}' ({first}); give a saved folder or a hub id "
                         f"that is cached (HF_HUB_CACHE) or reachable") from None
    return model, tok


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_precision() -> dict:
    """TrainingArguments precision flags: bf16 where the GPU supports it, else fp16 on GPU, else fp32."""
    import torch
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


class PadCollator:
    """Batch tokenized rows: pad `input_ids` to the longest in the batch (dynamic padding), build the
    attention mask, rename `label` to `labels`, stack any float columns (e.g. cached teacher logits)
    and drop bookkeeping columns such as `length`."""

    def __init__(self, tokenizer, float_columns=("teacher_logits",)):
        self.tokenizer = tokenizer
        self.float_columns = float_columns

    def __call__(self, rows: list[dict]) -> dict:
        import torch
        batch = self.tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
        batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "label" in rows[0]:
            batch["labels"] = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
        for col in self.float_columns:
            if col in rows[0]:
                batch[col] = torch.tensor([r[col] for r in rows], dtype=torch.float32)
        return batch


def classification_metrics(preds, labels) -> dict:
    """Accuracy, macro F1, macro precision and macro recall of integer predictions (numpy arrays)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    preds, labels = np.asarray(preds), np.asarray(labels)
    p, r, f1, _ = precision_recall_fscore_support(labels, preds, average="macro", labels=[0, 1], zero_division=0)
    return {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1),
            "precision": float(p), "recall": float(r)}
