"""The data, shared by every script (tokenization and models are models.py's; configuration configurator.py's).

Nothing here runs on its own; the scripts import it. What it provides:

- files: `write_json` / `read_json`, `atomic_path` (a file a reader never sees half-written), `replace_dir`.
- `load_imdb`: IMDb from a local copy (`IMDB_DIR` / `DATA_DIR`: parquet files or the original
  `aclImdb` folder) or from the hub (`stanfordnlp/imdb`); rows are `text`, `label` (0 neg, 1 pos,
  -1 unlabeled), with HTML line breaks replaced by spaces. `make_splits`: a stratified, seeded
  validation split carved from train, optional stratified subsampling of train and test.
- `DataSpec` / `load_splits`: any labeled data (IMDb, CSV / TSV / JSON Lines / parquet files or
  folders, a hub dataset), any number of classes, split into train / validation / test (+ transfer
  texts), with duplicates counted and leaks dropped. The test split is for final evaluation only.
- `classification_metrics` / `per_class_metrics`: accuracy, macro F1 / precision / recall, confusion.

Offline use: `export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1`.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from configurator import UsageError, log

UNLABELED = -1  # label of IMDb's `unsupervised` split


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: Path, replace: bool = True):
    """Yield a temporary file name beside `path` to write to (with the same suffix, so savefig and np.savez keep
    the format); when the block ends without an error it replaces `path` in one step. A reader never sees half
    a file, and a crash leaves the old one (and no temporary file). replace=False: FileExistsError rather than
    replace a `path` that appeared meanwhile (a hard link, which fails on an existing name, where the file system
    has them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:          # no hard links here: checked, then replaced (a race left open)
                if path.exists():
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def file_stamps(folder: Path) -> tuple:
    """(name, modification time in ns) of each file of a folder, by name: a model folder's, to tell when a model
    kept loaded (inference.load, onnx_runtime.runner) was replaced since."""
    return tuple(sorted((f.name, f.stat().st_mtime_ns) for f in Path(folder).resolve().iterdir() if f.is_file()))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def digest(obj) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def text_hashes(texts) -> np.ndarray:
    """One key per text, (N,) strings of 20 hex digits of its sha256 (the teacher-logit cache's rows)."""
    return np.array([hashlib.sha256(t.encode()).hexdigest()[:20] for t in texts])


def texts_digest(texts, labels=None) -> str:
    """One key for a whole list of texts (and labels), 16 hex digits of a sha256 over them in order (the
    tokenized cache's folder name, a published soft-label file's check)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    if labels is not None:
        h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def umask_modes(folder: Path) -> None:
    """Give every file in `folder` the mode a new file gets from the umask (0644 under umask 022).

    safetensors >= 0.8 writes weights through a temporary file and leaves them 0600 (safetensors#782), so a
    model saved by one user, or baked into a container image as root, could not be read by another user
    while its config.json could."""
    mask = os.umask(0)
    os.umask(mask)
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(0o666 & ~mask)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing `dst` (the caller checked it may), its files readable as
    the umask says (umask_modes). The old one is renamed aside to `<dst>.replaced` first and removed last: a
    crash in between leaves it there, never no model at all (a folder cannot be swapped in one rename)."""
    umask_modes(src)
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(dst.name + ".replaced")
    if old.exists():
        shutil.rmtree(old)
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old)


# ----------------------------------------------------------------------------------------------
# IMDb
# ----------------------------------------------------------------------------------------------
BR_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)


BOM = "\ufeff"                     # a UTF-8 byte-order mark, as some editors start a file (or a cell) with


def is_blank(text) -> bool:
    """No text: not a string, or only whitespace and byte-order marks."""
    return not isinstance(text, str) or not text.replace(BOM, "").strip()


def clean_text(text: str) -> str:
    """Replace IMDb's HTML line breaks (`<br />`) with spaces."""
    return BR_TAG.sub(" ", text)


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
        # files are named <id>_<rating>.txt: sort by id so the order is the same everywhere
        files = sorted(folder.glob("*.txt"), key=lambda f: (int(f.stem.split("_")[0]) if f.stem.split("_")[0].isdigit() else 0, f.name))
        texts += [f.read_text(encoding="utf-8") for f in files]
        labels += [label] * len(files)
    return {"text": texts, "label": labels}


def imdb_sources(splits, data_dir: str = "") -> dict | None:
    """Where each split of a local IMDb copy is: {split: list of parquet files, or an aclImdb folder},
    or None when no local copy is set (`data_dir`, else IMDB_DIR), i.e. the hub. Checks the folder, the
    files and the parquet columns without reading the reviews, so a bad copy is reported before anything
    else happens."""
    local = data_dir or os.environ.get("IMDB_DIR", "")
    if not local:
        return None
    import pyarrow.parquet as pq
    root = Path(local).expanduser()
    where = "--data_dir" if data_dir else "IMDB_DIR"
    if not root.is_dir():
        raise UsageError(f"{where}={local}: no such folder; point it at a folder with train.parquet/"
                         f"test.parquet or an aclImdb folder (e.g. export IMDB_DIR=../shared/data/imdb)")
    acl, out = _find_aclimdb(root), {}
    for split in splits:
        files = _find_parquet(root, split)
        for f in files:
            found = pq.read_schema(f).names
            if not {"text", "label"} <= set(found):
                raise UsageError(f"{f}: has the columns {', '.join(found)}, IMDb needs text and label (0 negative, "
                                 f"1 positive, -1 unlabeled); rename them, or point {where} at another copy")
        if files:
            out[split] = files
            continue
        subs = ["unsup"] if split == "unsupervised" else ["neg", "pos"]
        folder_split = "train" if split == "unsupervised" else split
        if acl is None or not all((acl / folder_split / sub).is_dir() for sub in subs):
            raise UsageError(f"{where}={local}: no {split}.parquet (nor {split}-*.parquet) and no "
                             f"aclImdb/{folder_split}/{'|'.join(subs)} folder in it; point it at a local IMDb copy")
        out[split] = acl
    return out


def load_imdb(splits=("train", "test"), data_dir: str = "", dataset_name: str = "stanfordnlp/imdb") -> dict:
    """Load IMDb splits as {split: datasets.Dataset with columns text, label}.

    Where from: `data_dir` or else the environment variable IMDB_DIR (a folder of parquet files,
    `train.parquet` or the hub's `train-00000-of-00001.parquet`, or an `aclImdb` folder); with
    neither, the hub dataset `dataset_name`. Splits: train, test, unsupervised (label -1).
    """
    from datasets import Dataset
    sources, out = imdb_sources(splits, data_dir), {}
    if sources is not None:
        for split, src in sources.items():
            cols = _read_parquet(src) if isinstance(src, list) else _read_aclimdb(src, split)
            out[split] = Dataset.from_dict({"text": [clean_text(t) for t in cols["text"]],
                                            "label": [int(x) for x in cols["label"]]})
        log.info("IMDb from %s: %s", data_dir or os.environ["IMDB_DIR"], {s: len(d) for s, d in out.items()})
        return out
    try:
        from datasets import load_dataset
        for split in splits:
            ds = load_dataset(dataset_name, split=split).select_columns(["text", "label"])
            out[split] = ds.map(lambda b: {"text": [clean_text(t) for t in b["text"]]}, batched=True)
    except OSError as e:  # offline, no network, no such dataset (all OSErrors in datasets/huggingface_hub)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"could not load IMDb: no IMDB_DIR/--data_dir set, and the hub dataset "
                         f"'{dataset_name}' failed ({first[:200]}); for a local copy set "
                         f"IMDB_DIR to a folder of parquet files or an aclImdb folder") from None
    log.info("IMDb from the hub (%s): %s", dataset_name, {s: len(d) for s, d in out.items()})
    return out


def stratified_indices(labels, n: int, seed: int, setting: str = "the sample size", names=()) -> np.ndarray:
    """Indices of a seeded subset of size n with the label proportions of `labels` (sorted); `setting` (the flag
    that asked for n) and `names` (of the label ids) name the problem in the UsageError when no such subset
    exists (sklearn's own error names neither)."""
    labels = np.asarray(labels)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        return np.sort(np.random.default_rng(seed).choice(len(labels), n, replace=False))
    k, where = len(values), f"{setting}={n} of {len(labels)} rows"
    if counts.min() < 2:
        rare = values[counts.argmin()]
        raise UsageError(f"{where}: class {names[rare] if len(names) > rare else rare!r} has a single row there, too few to split by "
                         f"class; add rows of that class, or drop it from the data")
    if min(n, len(labels) - n) < k:
        raise UsageError(f"{where}: each side of the split needs a row of each of the {k} classes; set {setting} "
                         f"between {k} and {len(labels) - k}")
    from sklearn.model_selection import train_test_split
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


def make_splits(data: dict, val_size: int, train_size: int = 0, test_size: int = 0, seed: int = 0, names=()) -> dict:
    """Carve validation from train and subsample; returns {train, validation, test?, unsupervised?}.

    val_size: reviews moved from train to validation (stratified, seeded); the rest is train.
    train_size / test_size: stratified subsample of what remains (0 = all). names: of the label ids, for errors.
    """
    train = data["train"]
    labels = np.asarray(train["label"])
    if not 0 < val_size < len(train):
        raise UsageError(f"--val_size={val_size}: must be between 1 and {len(train) - 1} (train has {len(train)})")
    val_idx = stratified_indices(labels, val_size, seed, "--val_size", names)
    rest = np.setdiff1d(np.arange(len(train)), val_idx)
    rest = rest[stratified_indices(labels[rest], train_size, seed, "--train_size", names)]
    out = {"train": train.select(rest), "validation": train.select(val_idx)}
    if "test" in data:
        test = data["test"]
        out["test"] = test.select(stratified_indices(test["label"], test_size, seed, "--test_size", names))
    if "unsupervised" in data:
        out["unsupervised"] = data["unsupervised"]
    return out


# ----------------------------------------------------------------------------------------------
# any labeled data: files (CSV, TSV, JSON Lines, parquet) or a hub dataset, any number of classes
# ----------------------------------------------------------------------------------------------
IMDB_LABELS = ("negative", "positive")
FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t"}), ".jsonl": ("json", {}), ".json": ("json", {}),
           ".parquet": ("parquet", {})}
# file-name words that name a split (a folder's files are sorted into splits by them)
SPLIT_WORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
               "test": ("test", "testing"), "unsupervised": ("unsupervised", "unlabeled", "unlabelled", "unsup")}


@dataclass(frozen=True)
class DataSpec:
    """Which data a run reads and how it is split: the settings every script shares, saved with the
    teacher (run_config) so that students and evaluation split it the same way."""
    data: str = "imdb"            # imdb | a .csv/.tsv/.jsonl/.json/.parquet file or folder | a hub dataset id
    data_dir: str = ""            # imdb only: a local copy ("" = $IMDB_DIR, else the hub)
    dataset_name: str = "stanfordnlp/imdb"   # imdb only: the hub dataset without a local copy
    text_column: str = "text"
    label_column: str = "label"
    label_names: tuple = ()       # integer labels: names of the sorted values; string labels: their order sets the
                                  # ids; () = from the data (IMDb: negative, positive)
    val_size: int = 2500          # validation rows: carved from train, or kept of the data's own validation split
    train_size: int = 0           # stratified subsample of train; 0 = all
    seed: int = 42
    drop_leaks: bool = True       # drop train rows / transfer texts also in validation or test, validation rows in test
    transfer_data: str = ""       # unlabeled texts: "" = the data's unsupervised split | validation | a file/folder
                                  # (a .txt file or folder of them: one text per line)
    transfer_text_column: str = ""   # the column of a transfer_data table that holds the texts; "" = text_column

    @classmethod
    def from_settings(cls, settings: dict) -> "DataSpec":
        """The spec of a script's constants or of a saved run_config (names in any case; missing ones default)."""
        low = {k.lower(): v for k, v in settings.items()}
        kw = {f: low[f] for f in cls.__dataclass_fields__ if f in low}
        kw |= {k: located(v) for k, v in kw.items() if is_path_setting(k, v)}      # a record's relative path: the checkout's
        if "label_names" in kw:
            kw["label_names"] = tuple(n for n in kw["label_names"] if n != "")
        return cls(**kw)

    @property
    def is_imdb(self) -> bool:
        return self.data.lower() == "imdb"

    @property
    def preparation(self) -> str:
        """How its texts are prepared for training (PREPARE): "imdb" (`<br />` as spaces) or "escapes" (decoded)."""
        return "imdb" if self.is_imdb else "escapes"

    def where(self, split: str = "") -> str:
        """How the data is named in messages."""
        return f"IMDb {split}".strip() if self.is_imdb else f"{self.data}" + (f" ({split})" if split else "")


@dataclass(frozen=True)
class Splits:
    """The data a run uses (frozen: load_splits caches it for every caller). Datasets with columns text (str),
    label (int id into label_names), and where the row came from: source (the data's split it was read from: test,
    or train when test was carved from it) and row (its position there from 0, as pandas and datasets count: a
    CSV's header not counted; through a split's several files, counted on in the order read)."""
    train: object
    validation: object
    test: object
    transfer: tuple = ()          # unlabeled texts, never in validation or test (drop_leaks)
    label_names: tuple = ()
    report: dict = field(default_factory=dict)      # duplicate and leak counts


def split_digests(splits: Splits, names: tuple = ("train", "validation", "test")) -> dict:
    """{split: texts_digest of its texts and labels} for the splits `names`, recorded with the teacher so that the
    later steps can tell the data changed (a file edited in place: same path, same settings)."""
    return {s: texts_digest(getattr(splits, s)["text"], getattr(splits, s)["label"]) for s in names}


def check_digests(recorded: dict, splits: Splits, names: tuple, teacher: Path) -> None:
    """UsageError when a split in `names` differs from the one recorded with the teacher (older teachers record none)."""
    ours = split_digests(splits, tuple(n for n in names if n in recorded))
    for name in ours:
        if recorded[name] != ours[name]:
            raise UsageError(f"the data changed since the teacher {teacher} was trained: its {name} split "
                             f"({len(getattr(splits, name))} rows now) is not the one it recorded; restore the data it "
                             f"was trained on, or retrain the teacher on this data (fine_tuning_teacher.py --overwrite=true)")


def data_files(path: str, flag: str = "--data") -> dict:
    """{split: [files]} of a local file (all train) or folder (split by file-name words, SPLIT_WORDS),
    after checking they exist and share one known format; `flag` is the setting errors name."""
    p = Path(path).expanduser()
    if p.is_file():
        files = {"train": [p]}
    elif p.is_dir():
        found = [f for f in visible_files(p) if f.suffix.lower() in FORMATS]
        files = {}
        for f in found:
            split = file_split(f)
            if split:
                files.setdefault(split, []).append(f)
        if not files:
            lines = "; or put .txt files of texts in it (one per line) and no table" if flag == "--transfer_data" else ""
            raise UsageError(f"{flag}={path}: no {'/'.join(FORMATS)} file named train, validation, test or "
                             f"unlabeled in this folder (found {len(found)} data files); name the files by split{lines}")
        files = {s: files[s] for s in SPLIT_WORDS if s in files}      # train first: errors name it first
    else:
        raise no_such_path(flag, path)
    kinds = {f.suffix.lower() for fs in files.values() for f in fs}
    unknown = kinds - set(FORMATS)
    if unknown:
        lines = " or .txt (one text per line)" if flag == "--transfer_data" else ""
        raise UsageError(f"{flag}={path}: unknown file format {sorted(unknown)[0]!r}; use one of {', '.join(FORMATS)}{lines}")
    if len({str(FORMATS[k]) for k in kinds}) > 1:
        raise UsageError(f"{flag}={path}: files of several formats ({', '.join(sorted(kinds))}); keep one format per folder")
    return files


def visible_files(folder: Path) -> list[Path]:
    """The files under `folder`, in name order, hidden ones left out (._train.csv, an editor's .~copy) and hidden
    folders not walked (.git, .venv, .ipynb_checkpoints)."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".")]
    return sorted(found)


def file_split(f: Path) -> str | None:
    """The split a data file's name says (SPLIT_WORDS), None for none; an unlabeled word wins (train_unlabeled.csv
    is unsupervised); words of two labeled splits (train_test.csv) are one UsageError."""
    words = set(re.split(r"[^a-z]+", f.stem.lower()))
    named = [s for s, ws in SPLIT_WORDS.items() if words & set(ws)]
    if "unsupervised" in named:
        return "unsupervised"
    if len(named) > 1:
        raise UsageError(f"{f}: its name says both {named[0]} and {named[1]}; rename it after one split")
    return named[0] if named else None


def safe_split(f: Path) -> str | None:
    """file_split, None for a name of two splits (a file beside the data, not read: no error for it)."""
    try:
        return file_split(f)
    except UsageError:
        return None


def check_data(spec: DataSpec, splits=("train",)) -> None:
    """What can be checked of the data before anything is written: an IMDb copy's files (imdb_sources),
    a local path's existence and format; a hub id is checked when it loads."""
    if spec.is_imdb:
        imdb_sources(tuple(splits), spec.data_dir)
    elif is_local(spec.data):
        data_files(spec.data)
    if spec.transfer_data not in ("", "validation") and not (
            is_lines_file(spec.transfer_data) and Path(spec.transfer_data).expanduser().exists()):
        data_files(spec.transfer_data, "--transfer_data")


def is_lines_file(path: str) -> bool:
    """A .txt file, or a folder of them (lines_files): unlabeled texts, one per line (transfer_data)."""
    return bool(lines_files(path))


def lines_files(path: str) -> list[Path]:
    """The .txt files of transfer_data: the file itself (whether there or not: reading it names a missing one), or
    every .txt file under a folder that holds no table (IMDb's aclImdb/train/unsup: a review per file), in name
    order, hidden ones left out; [] for anything else."""
    if path in ("", "validation"):         # the data's own splits: no files of texts (and "" must not walk ".")
        return []
    p = Path(path).expanduser()
    if not p.is_dir():
        return [p] if p.suffix.lower() == ".txt" else []
    found = visible_files(p)
    if any(f.suffix.lower() in FORMATS for f in found):        # a folder of tables: its .txt files are notes
        return []
    return [f for f in found if f.suffix.lower() == ".txt"]


def no_such_path(flag: str, path: str) -> UsageError:
    """The error for a data path `flag` gave that is not there: where it was looked for, and what the flag takes."""
    here = "" if Path(path).expanduser().is_absolute() else f" in {Path.cwd()}"   # run_experiment.sh runs in the checkout
    return UsageError(f"{flag}={path}: no such file or folder{here}; " + (
        "give a CSV/TSV/JSON Lines/parquet file, or a text file (one text per line)" if flag == "--file" else
        "give a CSV/TSV/JSON Lines/parquet file or folder" + {"--data": ", a hub dataset id, or imdb", "--transfer_data":
                                                              ", or a .txt file or folder of them (one text per line)"}.get(flag, "")))


def read_lines(path: str, flag: str = "--file") -> list[str]:
    """The lines of a UTF-8 text file ("-" = standard input), without a leading byte-order mark; a file that cannot
    be read, or a line that is not UTF-8, is one UsageError naming it (`flag`: the setting that gave the path)."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise no_such_path(flag, path) from None
    except OSError as e:
        here = "" if Path(path).is_absolute() else f" in {Path.cwd()}"
        raise UsageError(f"{flag}={path}: cannot read it ({e.strerror}{here}); give a UTF-8 text file, one text per "
                         f"line") from None
    lines = []
    for n, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append(line.decode("utf-8").removeprefix(BOM))
        except UnicodeDecodeError:
            raise UsageError(f"{'standard input' if path == '-' else path}: line {n} is not valid UTF-8; "
                             f"save the file as UTF-8") from None
    return lines


def is_local(path: str) -> bool:
    """A local file or folder (else a hub dataset id or a URL): it exists, or it looks like a path."""
    if "://" in path:
        return False
    return Path(path).expanduser().exists() or path.startswith((".", "/", "~")) or is_lines_file(path) \
        or Path(path).suffix.lower() in FORMATS or (REPO / path).exists()     # a record's path, relative to the checkout


REPO = Path(__file__).resolve().parent          # the checkout: relative data paths in records are relative to it
PATH_SETTINGS = {"data": ("imdb",), "data_dir": (), "transfer_data": ("validation",)}   # may be paths; their keywords


def is_path_setting(key: str, value) -> bool:
    """Whether `value` of setting `key` names a local file or folder (not "", a keyword, a hub id or a URL)."""
    key = key.lower()
    return key in PATH_SETTINGS and isinstance(value, str) and value != "" and value.lower() not in PATH_SETTINGS[key] \
        and is_local(value)


def located(path: str) -> str:
    """A recorded data path as this checkout reads it: a relative one is relative to the checkout (REPO), where
    run_experiment.sh runs; ~ expanded."""
    p = Path(path).expanduser()
    return os.path.normpath(p if p.is_absolute() else REPO / p)


def portable(path: str) -> str:
    """An absolute data path as records keep it: relative to the checkout when it lies in the checkout's parent folder
    (data/mine.csv, ../shared/data/...: right in any clone laid out alike), else absolute."""
    try:
        rel = os.path.relpath(path, REPO)
    except ValueError:                  # another drive
        return path
    if rel.startswith(os.path.join(os.pardir, os.pardir)):
        return path
    return rel if rel.startswith(os.pardir) else os.path.join(os.curdir, rel)     # ./data/mine: a path, not a hub id


def same_setting(key: str, a, b) -> bool:
    """Whether two values of setting `key` mean the same: a local path (PATH_SETTINGS) written two ways (relative
    to the checkout, as records keep it, or absolute; ~, ./, a symlink) is one path; anything else compares as it
    is. A different path to identical data is not the same setting."""
    if a == b:
        return True
    paths = is_path_setting(key, a) and is_path_setting(key, b)
    return paths and Path(located(a)).resolve() == Path(located(b)).resolve()


def moved_copy(recorded, given, digests: dict | None, splits: tuple) -> bool:
    """Whether data path `given` may stand for the teacher's recorded `recorded`, which is no longer there (the data
    moved, or this is another machine): both local paths, and the teacher recorded digests of `splits`, which
    check_digests then compares (so other contents under the new path are refused there). While the recorded path
    is there, another one is other data."""
    return is_path_setting("data", recorded) and is_path_setting("data", given) and set(splits) <= set(digests or {}) \
        and not Path(located(recorded)).exists()


def read_raw(spec: DataSpec, transfer: bool = False) -> tuple[dict, dict]:
    """({split: Dataset with columns text, label (as in the data)}, {split: where it came from}).

    IMDb through load_imdb (labels 0/1); anything else through the `datasets` loaders: a local file or
    folder (load_dataset("csv" | "json" | "parquet", data_files=...)), or a hub dataset id."""
    if spec.is_imdb:
        splits = ("train", "test", "unsupervised") if transfer and not spec.transfer_data else ("train", "test")
        data = load_imdb(splits, spec.data_dir, spec.dataset_name)
        return data, {s: spec.where(s) for s in data}
    from datasets import load_dataset
    if is_local(spec.data):
        raw, where = read_files(spec.data, "--data")
    else:
        quiet_datasets()
        try:
            raw = load_dataset(spec.data)
        except Exception as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UsageError(f"--data={spec.data}: not a local file or folder, and the hub dataset failed ({first}); "
                             f"give a path to your data or a reachable hub id") from None
        names = {w: s for s, ws in SPLIT_WORDS.items() for w in ws}
        raw = {names.get(k, k): v for k, v in raw.items() if names.get(k, k) in SPLIT_WORDS}
        where = {s: f"{spec.data} ({s})" for s in raw}
    return {s: columns(d, spec, where[s], s) for s, d in raw.items()}, where


def quiet_datasets() -> None:
    """No `datasets` progress bars: stderr keeps to the log lines (a bad-data error to one line, inference's
    output to its predictions)."""
    from datasets.utils.logging import disable_progress_bar
    disable_progress_bar()


def read_files(path: str, flag: str) -> tuple[dict, dict]:
    """({split: Dataset as in the file}, {split: its files}) of a local file or folder (data_files), read with
    load_dataset("csv" | "json" | "parquet", data_files=...); a file it cannot parse is one UsageError."""
    from datasets import load_dataset
    quiet_datasets()
    files = data_files(path, flag)
    builder, kw = FORMATS[next(iter(files.values()))[0].suffix.lower()]
    for f in (f for fs in files.values() for f in fs):
        check_not_empty(f, flag)
    check_same_columns(files, flag)
    log_files(path, files, flag)
    from datasets.utils import logging as datasets_logging
    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)     # its "Failed to read file" line: ours says it
    try:
        raw = load_dataset(builder, data_files={s: [str(f) for f in fs] for s, fs in files.items()}, **kw)
    except Exception as e:   # pyarrow / pandas parse errors of many kinds
        while e.__cause__ or e.__context__:     # datasets wraps the parser's own error, which says where
            e = e.__cause__ or e.__context__
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        head = next(iter(files.values()))[0]
        hint = separator_hint(file_columns(head) or []) if head.suffix.lower() == ".csv" else ""
        if "EOF inside string" in first:       # pandas: a quote opened and never closed took the rest of the file
            hint += ('; a field that opens with a " is read to the next " (line breaks included): close it, write it '
                     'twice ("") inside a quoted field, or remove it')
        kind = head.suffix.lower().lstrip(".").upper() if builder == "csv" else builder    # a .tsv is no "csv" to its user
        which = differing_file(files)
        raise UsageError(f"{flag}={path}: " + (which or f"cannot read it as {kind} ({first}); check the file's "
                                                 f"format{hint}")) from None
    finally:
        datasets_logging.set_verbosity(level)
    if kw.get("sep") == "\t":
        check_tsv_fields(raw, files)
    if builder == "json":
        check_json_rows(raw, files)
    return dict(raw), {s: ", ".join(str(f) for f in fs) for s, fs in files.items()}


def differing_file(files: dict) -> str:
    """After the reader failed on several files together (one schema for all: "Failed to parse string: 'pos' as a
    scalar of type int64"): which file holds a column of another type than the first file's, read alone with pandas
    (a column of labels as names in one file, integers in another); "" when none does or one file is read."""
    import pandas as pd
    listed = [f for fs in files.values() for f in fs]
    if len(listed) < 2:
        return ""

    def kinds(f: Path) -> dict:
        suffix = f.suffix.lower()
        df = pd.read_parquet(f) if suffix == ".parquet" else pd.read_json(f, lines=suffix == ".jsonl") \
            if suffix in (".json", ".jsonl") else pd.read_csv(f, sep="\t" if suffix == ".tsv" else ",")
        return {c: "texts" if t.kind in "OSU" else "numbers" for c, t in df.dtypes.items()}
    try:
        ref = kinds(listed[0])
        for f in listed[1:]:
            theirs = kinds(f)
            column = next((c for c in theirs if c in ref and theirs[c] != ref[c]), None)
            if column is not None:
                return (f"column {column!r} holds {theirs[column]} in {f}, {ref[column]} in {listed[0]}; write it the "
                        f"same way in every file (labels: all names, or all integers)")
    except Exception:     # a file pandas cannot read either: the reader's own error says more
        return ""
    return ""


def check_json_rows(raw: dict, files: dict) -> None:
    """UsageError for a JSON file of columns (pandas' to_json default: {"text": {"0": ...}, ...}; or of lists,
    {"text": [...], ...}), which reads as one row of objects or lists; JSON Lines and a JSON array of row objects
    read a row per text."""
    for split, ds in raw.items():
        nested = [c for c, f in ds.features.items() if isinstance(f, dict) or type(f).__name__ in ("List", "LargeList", "Sequence")]
        if len(ds) == 1 and nested and len(nested) == len(ds.features):    # a nested field of a row file is its own
            raise UsageError(f"{', '.join(map(str, files[split]))}: column {nested[0]!r} holds objects or lists, not values: a JSON "
                             f"file of columns (pandas' to_json default) rather than of rows; write one row per line "
                             f"(df.to_json(path, orient='records', lines=True), as .jsonl)")


def check_not_empty(f: Path, flag: str) -> None:
    """UsageError for a data file without a single row: empty, blank, or (CSV/TSV) a header line alone. The
    readers' own errors say neither ("No columns to parse", "corresponds to no data"). A file that cannot be
    parsed at all is left to the reader's error (read_files)."""
    needed = 2 if f.suffix.lower() in (".csv", ".tsv") else 1          # a CSV/TSV's first line is its header
    if f.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq
        try:
            seen = pq.ParquetFile(f).metadata.num_rows if f.stat().st_size else 0
        except Exception:    # not a parquet file: read_files names it
            return
    else:
        with open(f, "rb") as fh:          # the first two non-blank lines are enough to tell
            seen = sum(1 for _ in zip(range(needed), (line for line in fh if line.strip())))
        if f.suffix.lower() == ".json" and seen and f.stat().st_size < 64:      # a JSON array of no rows: "[]"
            seen = 0 if f.read_bytes().decode("utf-8-sig", "replace").split() in (["[]"], ["[", "]"]) else seen
    if seen < needed:
        what = "is empty" if seen == 0 else "holds a header line and no rows"
        raise UsageError(f"{flag}: {f} {what}; give a file with one row per text")


def separator_hint(columns: list) -> str:
    """A hint when a CSV's header read as one column holding `;` (as spreadsheets save CSV in many locales), else ""."""
    if len(columns) == 1 and ";" in str(columns[0]):
        return "; its header reads as one column with ';' in it: save the file with commas, or tabs as .tsv"
    return ""


def file_columns(f: Path) -> list[str] | None:
    """A data file's column names from its header line, first JSON object or parquet schema; None when that cannot
    be read here (read_files' reader then names the problem)."""
    suffix = f.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq
            return list(pq.ParquetFile(f).schema_arrow.names)
        with open(f, encoding="utf-8-sig", newline="") as fh:
            first = next((line for line in fh if line.strip()), "")
        if suffix in (".csv", ".tsv"):
            import csv
            return next(csv.reader([first], delimiter="\t" if suffix == ".tsv" else ","))
        first = first.lstrip()                  # JSON Lines: the first object; a one-line JSON array of them: its first,
        first = first[1:].lstrip() if first.startswith("[") else first     # decoded alone, not the whole array
        obj, _ = json.JSONDecoder().raw_decode(first)
        return list(obj) if isinstance(obj, dict) else None
    except Exception:
        return None


def check_same_columns(files: dict, flag: str) -> None:
    """UsageError when a file of a folder has other columns than its first train file (an unsupervised file may
    leave some out: its labels). The reader would read a missing column as empty (a test file without its label
    column was reported as missing labels) or fail to cast, naming neither file; or when a header names a column
    twice (read as `text` and `text.1`, or not at all)."""
    first = next(iter(files.values()))[0]
    ref = file_columns(first)
    for split, fs in files.items():
        for f in fs:
            cols = file_columns(f)
            twice = next((c for c in cols or [] if c.strip() and cols.count(c) > 1), None)   # not a spreadsheet's
            # trailing empty fields (text,label,,), which the reader names Unnamed: 2, ...
            if twice is not None:
                raise UsageError(f"{flag}: {f} names the column {twice!r} twice in its header; give each column its own name")
            if ref is None or cols is None or set(cols) == set(ref) or (split == "unsupervised" and set(cols) <= set(ref)):
                continue
            raise UsageError(f"{flag}: {f} has the columns {', '.join(cols)}, but {first} has {', '.join(ref)}; give the "
                             f"files the same columns (an unsupervised one may leave out the labels), or move this one "
                             f"out of the folder")


def log_files(path: str, files: dict, flag: str) -> None:
    """Log the files read for each split of a folder, and warn when a split gathers several that are not shards
    (name-00000-of-00002.csv): every file whose name says a split is read into it, backups and old copies too."""
    if Path(path).expanduser().is_file():
        if flag != "--data":             # a transfer file beside others is no split of the data
            return
        f = Path(path).expanduser()
        try:
            listed = sorted(f.parent.iterdir())
        except OSError:                  # a folder it may read the file of but not list
            listed = []
        beside = [g.name for g in listed if g != f and g.is_file() and g.suffix.lower() == f.suffix.lower()
                  and not g.name.startswith(".") and safe_split(g) in ("validation", "test", "unsupervised")]
        if beside:                        # reviews-test.jsonl beside reviews-train.jsonl: test carved from train instead
            log.warning("%s=%s: this one file is read, its validation and test splits carved from it; %s beside it "
                        "%s not read: --data=%s reads each file named after a split as that split", flag, path,
                        ", ".join(beside), "is" if len(beside) == 1 else "are", shlex.quote(str(f.parent)))
        return
    if not Path(path).expanduser().is_dir():
        return
    log.info("%s=%s: %s", flag, path, "; ".join(f"{s}: {', '.join(f.name for f in fs)}" for s, fs in files.items()))
    folder, read = Path(path).expanduser(), {f for fs in files.values() for f in fs}
    kinds = {f.suffix.lower() for f in read}        # of the data's own format: not a dataset_info.json beside CSVs
    unread = [str(f.relative_to(folder)) for f in visible_files(folder) if f.suffix.lower() in kinds and f not in read]
    if unread:          # e.g. mytest.csv beside train.csv: the test rows would be carved from train instead
        log.warning("%s=%s: not read, as no split is in the name: %s; name a file after its split (train, validation, "
                    "test or unlabeled: test.csv, my_test.csv) to read it", flag, path,
                    ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else ""))
    for split, fs in files.items():
        if len(fs) > 1 and not all(re.search(r"-\d+-of-\d+$", f.stem) for f in fs):
            log.warning("%s=%s: %d files read as its %s split (%s); move any that are not %s data out of the folder",
                        flag, path, len(fs), split, ", ".join(str(f.relative_to(Path(path).expanduser())) for f in fs), split)


def check_tsv_fields(raw: dict, files: dict) -> None:
    """UsageError for a TSV field that most likely opened with an unmatched `"`, which makes the reader join it
    with the lines after it (rows lost without a word): with two or more columns the joined lines bring their
    tabs and line breaks, so a field holding both; in a one-column file, one holding a tab or a line break. A
    quoted tab, or a quoted line break in a file of two or more columns (a multi-paragraph text as pandas and
    csv.writer write it), reads as written."""
    for split, ds in raw.items():
        several = len(ds.column_names) > 1
        for column in ds.column_names:
            bad = next((i for i, v in enumerate(ds[column]) if isinstance(v, str) and
                        (("\t" in v and "\n" in v) if several else ("\t" in v or "\n" in v))), None)
            if bad is not None:
                where = ", ".join(map(str, files[split]))
                raise UsageError(f"{where}: column {column!r} at {data_row(where, bad)}, spans "
                                 f"{'tabs and line breaks' if several else 'a tab or line break'}, most "
                                 f'likely from a field opening with an unmatched " that joined the lines after it; remove or '
                                 f"double that quote, or save the data as CSV")


def data_row(where: str, i: int) -> str:
    """How an error names row `i` (from 0) of the data `where` (its file, or files joined by ", " as one split reads
    them): from 1, a CSV/TSV's header line not counted, and through several files counted on in the order named."""
    header = ", a header line not counted" if where.lower().endswith((".csv", ".tsv")) else ""
    several = ", counted on through the files in the order named" if ", " in where and not where.endswith(")") else ""
    return f"data row {i + 1}{header}{several}"


def more_rows(rows: list[int], shown: int = 5) -> str:
    """The data row numbers (1-based) of the rows after the first, up to `shown` in all: ", then 9, 12", else ""."""
    rest = [str(i + 1) for i in rows[1:shown]]
    return f", then {', '.join(rest)}{', ...' if len(rows) > shown else ''}" if rest else ""


def near_column(name: str, cols: list, flag: str) -> str:
    """A hint naming the column `name` was most likely meant to be: one equal to it but for case and the spaces around
    it (a header's trailing space does not show in a list), else one spelled alike (difflib), else ""."""
    import difflib
    same = [c for c in map(str, cols) if c.strip().casefold() == name.strip().casefold()]
    if same:
        return f"; {same[0]!r} differs from it only in case or spaces: {flag}={shlex.quote(same[0])}"
    alike = difflib.get_close_matches(name, list(map(str, cols)), n=1, cutoff=0.75)
    return f"; did you mean {alike[0]!r}? {flag}={shlex.quote(alike[0])}" if alike else ""


def columns(ds, spec: DataSpec, where: str, split: str, decode: bool = True, column_flag: str = "--text_column"):
    """`ds` reduced to columns text, label (as in the data, but a ClassLabel id as its name and a string without
    the spaces around it; none for the unsupervised split), after checking the columns exist and no text or
    label is missing or empty; with `decode`, the texts' literal escapes decoded (decode_escapes). `column_flag`:
    the setting that names the text column, in the error when it is missing."""
    cols = ds.column_names
    need = [spec.text_column] + ([spec.label_column] if split != "unsupervised" else [])
    for c in need:
        if c not in cols:
            texts = c == spec.text_column
            flag = column_flag if texts else "--label_column"
            raise UsageError(f"{where}: no column {c!r} (found {', '.join(map(str, cols))}); set {flag} to the column "
                             f"that holds the {'texts' if texts else 'labels'}{near_column(c, cols, flag)}"
                             f"{separator_hint(cols)}")
    texts = ds[spec.text_column]
    # CSV/TSV: pandas reads an empty field, and NA, N/A, null, None, nan, as missing (R writes missing values as NA)
    na = " (CSV/TSV readers take NA, null, None as missing too)" if where.lower().endswith((".csv", ".tsv")) else ""
    numbers = [i for i, t in enumerate(texts) if isinstance(t, (int, float, bool)) and not (isinstance(t, float) and math.isnan(t))]
    if numbers:      # a reader took the column for numbers: most likely another column (an id) named as the texts'
        raise UsageError(f"{where}: column {spec.text_column!r} holds numbers, not texts ({texts[numbers[0]]!r} at "
                         f"{data_row(where, numbers[0])}); set {column_flag} to the column that holds the texts "
                         f"(found {', '.join(map(str, cols))})")
    bad = [i for i, t in enumerate(texts) if is_blank(t)]
    problems = [f"column {spec.text_column!r} has {len(bad)} empty or missing text(s) (first at {data_row(where, bad[0])}"
                f"{more_rows(bad)}){na}; drop or fill those rows"] if bad else []
    labels = ds[spec.label_column] if split != "unsupervised" else [None] * len(texts)
    names = getattr(ds.features.get(spec.label_column), "names", None) if split != "unsupervised" else None
    if names:     # a ClassLabel column (hub datasets, parquet saved by datasets): its names, string labels (label_names
        # then orders them, as for any string labels, instead of renaming its ids by rank)
        labels = [names[y] if isinstance(y, int) and 0 <= y < len(names) else None for y in labels]   # -1: no label
    labels = [y.strip() if isinstance(y, str) else y for y in labels]      # "pos " is "pos"
    if not names and labels and all(isinstance(y, str) and y.lstrip("-").isdigit() for y in labels):
        labels = [int(y) for y in labels]    # integers written as text (JSON Lines "1", parquet strings): integers, as a
        # CSV reader makes them ("10" after "2"); not a ClassLabel's names, string labels even when they are digits
    if split != "unsupervised":
        missing = [i for i, y in enumerate(labels) if y is None or (isinstance(y, float) and math.isnan(y))
                   or y == ""]
        if missing:      # said with the texts' problem, if any: one run names both
            problems.append(f"column {spec.label_column!r} has {len(missing)} missing label(s) (first at "
                            f"{data_row(where, missing[0])}{more_rows(missing)}){na if not bad else ''}; drop those rows, "
                            f"or move them to an unsupervised file for transfer")
    if problems:
        raise UsageError(f"{where}: " + "; and ".join(problems))
    from datasets import Dataset
    return Dataset.from_dict({"text": [decode_escapes(t) for t in texts] if decode else list(texts), "label": list(labels)})


def preparation(kd: dict) -> str:
    """How a model's training texts were prepared (kd: the `sentiment_kd` record of its config.json): "imdb" (IMDb's
    `<br />` line breaks as spaces, clean_text), "escapes" (your own data's literal \\uXXXX escapes decoded,
    decode_escapes), or "" for a model trained elsewhere (no record: texts as they are). model_card writes the same
    preparation out for code that runs without this repository."""
    return DataSpec.from_settings(kd["run_config"]).preparation if kd.get("run_config") else ""


def as_trained(texts: list[str], kd: dict) -> list[str]:
    """`texts` prepared as a model's training data were (preparation)."""
    kind = preparation(kd)
    return [PREPARE[kind](t) for t in texts] if kind else list(texts)


def prepared(texts: list[str], spec: DataSpec) -> list[str]:
    """Texts read as written, prepared as `spec`'s data are for training: IMDb's `<br />` line breaks as spaces
    (clean_text), your own data's literal \\uXXXX escapes decoded (decode_escapes)."""
    prepare = PREPARE[spec.preparation]
    return [prepare(t) for t in texts]


# a UTF-16 surrogate pair (an emoji written as two escapes), else one escape that is not half of a pair
ESCAPE = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
                    r"|\\u(?![dD][89a-fA-F])([0-9a-fA-F]{4})")


def _unescape(m: re.Match) -> str:
    if m.group(3):
        return chr(int(m.group(3), 16))
    high, low = int(m.group(1), 16), int(m.group(2), 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def decode_escapes(text: str) -> str:
    r"""Literal `\uXXXX` escapes (as some exports leave, e.g. `I\u2019m`, or `\ud83d\ude02` for 😂) turned into the
    characters they name, so that the same word is the same tokens in every split; a lone half of a surrogate
    pair names no character and stays as written."""
    return ESCAPE.sub(_unescape, text) if "\\u" in text else text


PREPARE = {"imdb": clean_text, "escapes": decode_escapes}    # preparation() -> the function


def label_ids(raw: dict, spec: DataSpec, where: dict) -> tuple[list[str], dict, list[int]]:
    """(label names in id order, {split: rank of each row's label}, [id of each rank]) of the labeled splits.
    Ranks follow the sorted label values of train (strings as they are, integers by value), so the splits carved
    by them do not move when --label_names reorders the ids; ids follow the order of spec.label_names for string
    labels, else the ranks. Names are spec.label_names, else the strings, else the numbers (IMDb: negative, positive)."""
    values = {s: list(d["label"]) for s, d in raw.items() if s != "unsupervised"}
    kinds = {type(v).__name__ for vs in values.values() for v in vs}
    if kinds == {"float"} and all(float(v).is_integer() for vs in values.values() for v in vs):
        values, kinds = {s: [int(v) for v in vs] for s, vs in values.items()}, {"int"}
    if kinds in ({"float"}, {"bool"}):
        odd = next(v for vs in values.values() for v in vs if isinstance(v, bool) or not float(v).is_integer())
        raise UsageError(f"{where['train']}: column {spec.label_column!r} holds {'numbers that are not integers' if kinds == {'float'} else 'true/false values'}"
                         f" ({odd!r}, ...); labels are class names or integer ids: convert them")
    if kinds - {"int", "str"} or len(kinds) > 1 or (kinds == {"str"} and _mixed(values)):
        raise UsageError(f"{where['train']}: column {spec.label_column!r} mixes label types ({', '.join(sorted(kinds))}"
                         f"{' and numbers written as text' if kinds == {'str'} else ''}); use only names or only integers")
    spelled = {}                   # "Pos" beside "pos": one class written two ways would train as two
    for split, vs in values.items():
        for v in sorted(set(vs)) if kinds == {"str"} else ():        # sorted: the same message every run
            other = spelled.setdefault(v.casefold(), (v, split))
            if other[0] != v:
                first = [f"{w!r} ({s}, first at {data_row(where[s], values[s].index(w))}"
                         + (f" of {where[s]}" if where[s] != where[split] else "") + ")" for w, s in ((v, split), other)]
                raise UsageError(f"{where[split]}: labels {first[0]} and {first[1]} of column {spec.label_column!r} "
                                 f"differ only in case, so they would be two classes; write them the same way")
    found = sorted(set(values["train"]))
    if len(found) < 2:
        raise UsageError(f"{where['train']}: column {spec.label_column!r} has a single class ({found[0]!r}); a classifier "
                         f"needs at least two labels")
    if len(found) > 10 and len(found) > len(values["train"]) // 2:    # an id or a text column
        raise UsageError(f"{where['train']}: column {spec.label_column!r} has {len(found):,} different values in "
                         f"{len(values['train']):,} rows, too many to be labels; set --label_column to the column that holds them")
    for s, vs in values.items():
        extra = sorted(set(vs) - set(found), key=str)
        if extra:
            raise UsageError(f"{where[s]}: label {extra[0]!r} of the {s} split is not in train ({', '.join(map(str, found))}); "
                             f"fix the labels or add train examples of it")
    names = list(spec.label_names) or (list(IMDB_LABELS) if spec.is_imdb else [str(v) for v in found])
    if kinds == {"str"} and spec.label_names:
        if sorted(names) != found:
            raise UsageError(f"label_names = {names}: the data's labels are {', '.join(found)}; list exactly those "
                             f"(their order sets the ids) or leave it empty")
        to_id = [names.index(v) for v in found]
    else:
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:        # two ids of one name: inference would show one of them, its probabilities short of 1
            raise UsageError(f"label_names = {names}: {twice[0]!r} is given twice; give each label value its own name")
        if len(names) != len(found):
            counts = collections.Counter(values["train"])
            stray = [v for v in found if counts[v] <= 3] if len(found) > len(names) else []   # a slip in the data?
            said = "; ".join(f"{v!r} is on {counts[v]} train row{'s' if counts[v] > 1 else ''} only "
                             f"({data_row(where['train'], values['train'].index(v))}{', ...' if counts[v] > 1 else ''})"
                             for v in stray)
            raise UsageError(f"label_names = {names}: {len(names)} names for the {len(found)} label values "
                             f"{', '.join(map(str, found))} of {where['train']}; "
                             + (f"{said}: fix such rows if they are slips, else give" if said else "give")
                             + " one name per value, in sorted order")
        to_id = list(range(len(found)))
    rank = {v: i for i, v in enumerate(found)}
    return names, {s: [rank[v] for v in vs] for s, vs in values.items()}, to_id


def _mixed(values: dict) -> bool:
    """String labels of which some, not all, are numbers ("1", "pos")."""
    digits = {v.strip().lstrip("-").isdigit() for vs in values.values() for v in vs}
    return len(digits) > 1


@functools.lru_cache(maxsize=2)    # a script's checks load the data (bad data fails before anything is written); main reuses it
def load_splits(spec: DataSpec, transfer: bool = False) -> Splits:
    """The train / validation / test splits of `spec` (and with `transfer` the unlabeled transfer texts).

    Validation: the data's own split (a stratified seeded subset of val_size rows when it is larger), else
    val_size rows carved from train (stratified, seeded). Test: the data's own, else carved from train the
    same way before validation. Train: a stratified subsample of train_size rows (0 = all). With drop_leaks,
    train rows and transfer texts that also appear in validation or test are dropped, validation rows that
    appear in test (IMDb: 9 of 2,500 at seed 42, so 2,491 are left), and repeated transfer texts and those that are
    train texts (leaks); duplicates are counted in `report` (and logged). IMDb keeps the splits it always had (make_splits)."""
    from datasets import Dataset
    raw, where = read_raw(spec, transfer)
    if "train" not in raw:
        raise UsageError(f"--data={spec.data}: no train split (found {', '.join(raw)}); name a file train.*")
    names, ranks, to_id = label_ids(raw, spec, where)
    table = {s: Dataset.from_dict({"text": list(raw[s]["text"]), "label": ranks[s], "source": [s] * len(ranks[s]),
                                   "row": list(range(len(ranks[s])))}) for s in ranks}     # where each row came from
    rest = "validation" if transfer and spec.transfer_data == "validation" else ""
    parts = carve(table, spec, rest, [names[i] for i in to_id])
    pool = transfer_texts(spec, raw, parts.pop("rest", []), where) if transfer else []
    if to_id != sorted(to_id):      # carved by rank; the model's ids follow --label_names
        parts = {s: Dataset.from_dict(d.to_dict() | {"label": [to_id[r] for r in d["label"]]}) for s, d in parts.items()}
    report, train, validation, pool = leaks(parts["train"], parts["validation"], parts["test"], pool, spec.drop_leaks)
    return Splits(train, validation, parts["test"], tuple(pool), tuple(names), report)


def alike_labels(counts: dict[str, int], min_ratio: float = 0.75, rare: int = 20) -> list[tuple[str, str]]:
    """(rare, common) label pairs that look like one label mistyped: names alike (difflib's similarity of the
    lower-cased names >= min_ratio: grate / great 0.8, netural / neutral 0.86) and one at most 1/`rare` as frequent
    as the other (counts: {label: train rows}); two real classes of alike names are seldom that lopsided."""
    from difflib import SequenceMatcher
    return [(a, b) for a in counts for b in counts if a != b and counts[a] * rare <= counts[b]
            and SequenceMatcher(None, a.lower(), b.lower()).ratio() >= min_ratio]


def conflicting_labels(texts, labels) -> dict[str, list[int]]:
    """{text: its label ids, sorted} for each text that appears more than once with different labels (N texts, N
    integer labels): rows a model cannot get all right, most often a labelling slip or annotators who disagree."""
    seen: dict[str, set] = collections.defaultdict(set)
    for t, y in zip(texts, labels):
        seen[t].add(int(y))
    return {t: sorted(ys) for t, ys in seen.items() if len(ys) > 1}


def log_splits(splits: Splits, spec: DataSpec) -> None:
    """Log the split sizes, labels and duplicate counts (the scripts call it once logging is set up: their
    checks load the data before that)."""
    transfer = f", transfer {len(splits.transfer)}" if splits.transfer else ""     # loaded only for distillation
    r = splits.report
    fewer = " (after dropping the texts also in a later split: duplicates below; --drop_leaks=false keeps them)" \
        if r.get("dropped") and (r["train_rows_in_validation"] or r["train_rows_in_test"] or r["validation_texts_in_test"]
                                 or r.get("transfer_texts_in_validation_or_test") or r.get("transfer_duplicate_texts")
                                 or r.get("transfer_texts_in_train")) else ""
    log.info("data %s: train %d, validation %d, test %d%s%s; labels %s", spec.where(), len(splits.train),
             len(splits.validation), len(splits.test), transfer, fewer, ", ".join(splits.label_names))
    log.info("duplicates: %s", splits.report)
    counts = dict(zip(splits.label_names, class_counts(splits.train["label"], len(splits.label_names))))
    both = conflicting_labels(splits.train["text"], splits.train["label"])
    if both:        # kept (annotators may disagree): the model is trained towards both, and can be right on one only
        shown = "; ".join(f"{t[:60]!r}{'...' if len(t) > 60 else ''} as {' and '.join(splits.label_names[y] for y in ys)}"
                          for t, ys in list(both.items())[:2])
        log.warning("%d train text%s appear%s with different labels (%s%s): fix those rows if they are slips", len(both),
                    "s" if len(both) > 1 else "", "" if len(both) > 1 else "s", shown, "; ..." if len(both) > 2 else "")
    for rare, common in alike_labels(counts):
        log.warning("label %r (%d train rows) looks like %r (%d) mistyped: a class of its own here; fix those rows if it "
                    "is a typo", rare, counts[rare], common, counts[common])


def carve(table: dict, spec: DataSpec, rest: str = "", names=()) -> dict:
    """{train, validation, test[, rest]}: the data's own splits where present, else carved from train;
    `rest`="validation": the texts of the data's validation split beyond val_size (for transfer); `names`:
    of the labels (the table's label column: ranks of the sorted values), for errors."""
    missing = [s for s in ("test", "validation") if s not in table]      # each carved from train: val_size rows
    n, v, k = len(table["train"]), spec.val_size, len(set(table["train"]["label"]))   # k classes: a row each is left
    if missing and n - v * len(missing) < k:
        raise UsageError(f"{spec.where()} has {n} train rows and no {' or '.join(missing)} file: --val_size={v} takes "
                         f"{v} rows for each of {', '.join(missing)} from them; set --val_size to at most "
                         f"{(n - k) // len(missing)} (or add a {missing[0]} file)")
    out = {}
    if "test" not in table:
        test_idx = stratified_indices(table["train"]["label"], spec.val_size, spec.seed, "--val_size", names)
        out["test"] = table["train"].select(test_idx)
        table = table | {"train": table["train"].select(np.setdiff1d(np.arange(len(table["train"])), test_idx))}
    else:
        out["test"] = table["test"]
    if "validation" in table:
        val = table["validation"]
        keep = stratified_indices(val["label"], spec.val_size, spec.seed, "--val_size", names)
        out["validation"] = val.select(keep)
        if rest:
            out["rest"] = list(val.select(np.setdiff1d(np.arange(len(val)), keep))["text"])
        train = table["train"]
        out["train"] = train.select(stratified_indices(train["label"], spec.train_size, spec.seed, "--train_size", names))
        return out
    made = make_splits({"train": table["train"]}, spec.val_size, spec.train_size, seed=spec.seed, names=names)
    return out | {"train": made["train"], "validation": made["validation"]}


def transfer_texts(spec: DataSpec, raw: dict, rest: list[str], where: dict) -> list[str]:
    """Unlabeled texts for transfer: the rest of the validation split, a file or folder of texts
    (TEXT_COLUMN; labels ignored), or the data's unsupervised split."""
    if spec.transfer_data == "validation":
        if "validation" not in raw:      # carved from train: there is no rest to take
            raise UsageError(f"transfer_size > 0 with transfer_data = validation, but {spec.where()} has no validation "
                             f"split (its rows beyond --val_size are the transfer texts); set --transfer_data to a file "
                             f"of unlabeled texts")
        return rest
    if spec.transfer_data:    # prepared as the data's own texts, so leaks into validation or test are found
        return prepared(transfer_file_texts(spec, say=True), spec)
    if "unsupervised" not in raw:
        raise UsageError(f"transfer_size > 0 but {spec.where()} has no unsupervised split; set --transfer_data to a file "
                         f"of unlabeled texts, or to validation (its rows beyond --val_size)")
    return list(raw["unsupervised"]["text"])


def transfer_file_texts(spec: DataSpec, say: bool = False) -> list[str]:
    """The texts of spec.transfer_data as written: the non-blank lines of a .txt file or of a folder's .txt files
    (lines_files, in name order; `say`: log how many, once per load rather than per check), or a table's
    transfer_text_column (else text_column; labels ignored), checked as training texts are."""
    files = lines_files(spec.transfer_data)
    if files:
        texts = [t for f in files for t in read_lines(str(f), "--transfer_data") if not is_blank(t)]
        if not texts:
            raise UsageError(f"--transfer_data={spec.transfer_data}: no text in it; give a file of unlabeled texts, one per line")
        root = Path(spec.transfer_data).expanduser()
        if say and root.is_dir():    # by sub-folder: aclImdb/train rather than train/unsup would show pos/ and neg/
            folders = collections.Counter(str(f.parent.relative_to(root)) for f in files)
            log.info("--transfer_data=%s: %d .txt files, %d texts (each non-blank line one)%s", spec.transfer_data,
                     len(files), len(texts), "; files by folder: " + ", ".join(f"{d}/ {n}" for d, n in
                                                                              sorted(folders.items())) if len(folders) > 1 else "")
        return texts
    return read_table(spec.transfer_data, spec.transfer_text_column or spec.text_column, "--transfer_data",
                      "--transfer_text_column")[0]


def read_table(path: str, column: str, flag: str, column_flag: str = "--text_column") -> tuple[list[str], list]:
    """(the texts of `column` as written, the table's Datasets with all their columns, in the same order) of a
    local file or folder (read_files; every file, whatever split its name says), checked as training texts are
    (columns: the column present, no text empty or missing); `flag` is the setting errors name, `column_flag` the
    one that names the column."""
    spec = DataSpec(data=path, text_column=column, label_column="")
    found, files = read_files(path, flag)
    texts = [t for s, ds in found.items()
             for t in columns(ds, spec, files[s], "unsupervised", decode=False, column_flag=column_flag)["text"]]
    return texts, list(found.values())


def leaks(train, validation, test, transfer: list[str], drop: bool) -> tuple[dict, object, object, list[str]]:
    """(counts, train, validation, transfer): duplicate texts counted (within train; train and transfer texts in
    validation or test; validation texts in test; transfer texts repeated, or already train texts) and, with `drop`,
    the train rows and transfer texts that are in validation or test removed, the validation rows that are in test
    (they choose checkpoints), and each transfer text kept once and only when it is no train text (IMDb's unsupervised
    split, past the 296 in validation or test, repeats 488 reviews and holds 329 train reviews at seed 42: their soft
    labels would count twice).
    train, validation, test: Datasets with a text column."""
    texts, val, test = list(train["text"]), set(validation["text"]), set(test["text"])
    held, known = val | test, set(texts)
    report = {"train_duplicate_rows": len(texts) - len(known),
              "train_rows_in_validation": sum(t in val for t in texts),
              "train_rows_in_test": sum(t in test for t in texts),
              "validation_texts_in_test": len(val & test),
              "transfer_texts_in_validation_or_test": sum(t in held for t in transfer),
              # counted in turn, so that the three add up to the texts dropped: repeats among the rest, then train texts
              "transfer_duplicate_texts": len(rest := [t for t in transfer if t not in held]) - len(set(rest)),
              "transfer_texts_in_train": sum(t in known for t in set(rest)),
              "dropped": drop}
    if not drop:
        return report, train, validation, transfer
    keep = [i for i, t in enumerate(texts) if t not in held]
    keep_val = [i for i, t in enumerate(validation["text"]) if t not in test]
    return (report, train.select(keep) if len(keep) < len(texts) else train,
            validation.select(keep_val) if len(keep_val) < len(validation) else validation,
            [t for t in dict.fromkeys(transfer) if t not in held and t not in known])


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def accuracy_se(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n texts, in points: 100 * sqrt(p (1 - p) / n), the test set's
    own noise (a binomial proportion), before any seed-to-seed spread. A perfect (or null) score is taken as half a
    text off it, p clipped to [0.5 / n, 1 - 0.5 / n]: 8 of 8 right is not a certain 100%, and its error is not 0."""
    p = min(max(p, 0.5 / n), 1 - 0.5 / n)
    return 100 * math.sqrt(p * (1 - p) / n)


def classification_metrics(preds, labels) -> dict:
    """Accuracy, and macro-averaged F1, precision and recall, of integer predictions and labels (numpy arrays of
    shape (N,)). Macro: the unweighted mean over classes of each class's figure, so a rare class counts as much as a
    common one (macro recall is SemEval-2017's metric). A class missing from a split's labels (a small validation or
    test file without it) has no recall there, so macro recall is over the classes in the labels (SemEval's AvgRec);
    F1 and precision are over the classes in the labels or the predictions, so predicting a class that is not there
    counts its 0. A class never predicted counts 0 in all three."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, recall_score
    preds, labels = np.asarray(preds), np.asarray(labels)
    p, _, f1, _ = precision_recall_fscore_support(labels, preds, average="macro", zero_division=0)
    r = recall_score(labels, preds, labels=np.unique(labels), average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1),
            "precision": float(p), "recall": float(r)}


def class_counts(labels, n: int) -> list[int]:
    """How many of integer labels (N,) are each class id 0..n-1."""
    return np.bincount(np.asarray(labels, dtype=int), minlength=n)[:n].tolist()


def class_shares(labels, n: int) -> list[float]:
    """The share of each class id 0..n-1 among integer labels (N,): counts / N, summing to 1."""
    counts = np.asarray(class_counts(labels, n))
    return (counts / max(counts.sum(), 1)).tolist()


def shift_note(names: list[str], validation: list[float], test: list[float], noun: str = "texts",
               min_gap: float = 0.10) -> str:
    """A warning when the test texts' class shares differ from validation's by `min_gap` (0.10: 10 points) or more
    for some class, naming each class's two shares, else "": validation accuracy, and the choices made on it, then
    say less about test (SemEval-2017's test tweets are a third negative, its train and validation a sixth)."""
    if max(abs(a - b) for a, b in zip(validation, test)) < min_gap:
        return ""
    shares = ", ".join(f"{n} {100 * t:.1f}% / {100 * v:.1f}%" for n, v, t in zip(names, validation, test))
    return (f"**The test {noun}' classes are not in validation's proportions** (test / validation: {shares}): "
            f"validation accuracy, and any choice made on it (checkpoints, recipes), may not carry over to test; macro "
            f"recall weighs each class equally. ")


def classes_missed(row: dict) -> str:
    """"k of C" when an evaluation row's model predicted only k of the C classes its texts hold (its confusion
    matrix; a class the texts lack is not counted), else "": a model that has not learned, whatever its accuracy."""
    confusion = row.get("confusion") or []
    held = [i for i, counts in enumerate(confusion) if sum(counts) > 0]
    k = sum(1 for i in held if sum(counts[i] for counts in confusion) > 0)
    return f"{k} of {len(held)}" if k < len(held) else ""


def classes_neglected(row: dict, floor: float = 0.05, min_support: int = 20) -> dict:
    """{class name: recall} of the classes an evaluation row's model recalls under `floor` (0.05: fewer than 1 in 20
    of that class's texts) though it does predict them (a class never predicted is classes_missed's), each with at
    least `min_support` texts (so that one or two texts of a rare class are not read as a pattern), from its
    per_class figures: a model that has all but given up on a class, whatever its accuracy."""
    confusion = row.get("confusion") or []
    predicted = [sum(column) > 0 for column in zip(*confusion)]
    return {name: c["recall"] for i, (name, c) in enumerate((row.get("per_class") or {}).items())
            if c.get("support", 0) >= min_support and c["recall"] < floor and (i >= len(predicted) or predicted[i])}


def recalled(classes: dict) -> str:
    """"class '9' recall 0.0100, ..." for classes_neglected's {name: recall}."""
    return ", ".join(f"class '{name}' recall {r:.4f}" for name, r in classes.items())


def per_class_metrics(preds, labels, names: list[str]) -> dict:
    """{name: {precision, recall, f1, support}} per class, and the confusion matrix (rows: true class,
    columns: predicted class, counts) as `confusion`."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    ids = list(range(len(names)))
    p, r, f1, n = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    per = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(n[i])}
           for i, name in enumerate(names)}
    return {"per_class": per, "confusion": confusion_matrix(labels, preds, labels=ids).tolist()}
