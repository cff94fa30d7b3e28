"""Data, tokenization and models, shared by every script (configuration lives in configurator.py).

Nothing here runs on its own; the scripts import it. What it provides:

- `load_imdb`: IMDb from a local copy (`IMDB_DIR` / `DATA_DIR`: parquet files or the original
  `aclImdb` folder) or from the hub (`stanfordnlp/imdb`); rows are `text`, `label` (0 neg, 1 pos,
  -1 unlabeled), with HTML line breaks replaced by spaces.
- `make_splits`: a stratified, seeded validation split carved from train, optional stratified
  subsampling of train and test. The test split is for final evaluation only.
- `encode` / `tokenize_dataset`: head / tail / head+tail truncation for any tokenizer, cached on disk
  under `CACHE_DIR/tokenized/<key>` where the key hashes the tokenizer, the settings and the texts.
- `load_classifier`: a hub id, a saved folder, or `tiny:bert` / `tiny:roberta` (random models built
  from a config in code, for tests; no download). `truncation_settings`: how a saved model tokenizes.
- `logits_in_order` / `batched_logits`: the one batched forward (sort by length, pad, forward, put the
  rows back in input order) behind the teacher-logit pass, evaluation and inference.

Offline use: `export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import string
from pathlib import Path

import numpy as np

from configurator import TRUNCATIONS, UsageError, log

ID2LABEL = {0: "negative", 1: "positive"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
UNLABELED = -1  # label of IMDb's `unsupervised` split
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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


CHECKSUMS = "checksums.json"


def file_checksums(folder: Path) -> dict:
    """{file name: sha256} of the files of a saved dataset (all but the checksum file itself)."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(folder).iterdir())
            if f.is_file() and f.name != CHECKSUMS}


def read_tokenized(path: Path, n_rows: int, vocab_size: int):
    """(dataset, None) for a tokenized cache whose files match the checksums written with it and that
    holds n_rows rows of ids below vocab_size; (None, what is wrong) otherwise."""
    import pyarrow.compute as pc
    from datasets import load_from_disk
    try:
        if file_checksums(path) != read_json(path / CHECKSUMS):
            return None, f"its files do not match {CHECKSUMS}"
        out = load_from_disk(str(path))
        ids = pc.list_flatten(out.data.column("input_ids"))
        low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
    except (OSError, ValueError, KeyError, TypeError) as e:     # missing or unreadable files, an older cache
        return None, str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    if len(out) != n_rows or (len(ids) and (low < 0 or high >= vocab_size)):
        return None, f"{len(out)} rows of ids {low}..{high}, expected {n_rows} rows of ids below {vocab_size}"
    return out, None


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
        vocab = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)   # ids may skip numbers
        out, problem = read_tokenized(path, len(ds), vocab)
        if problem is None:
            log.info("tokenized %s: reused cache %s (%d rows)", name, path, len(out))
            return out
        aside = path.with_name(path.name + ".damaged")
        while aside.exists():
            aside = aside.with_name(aside.name + "+")
        os.replace(path, aside)
        log.warning("tokenized %s: cache %s is damaged (%s): moved aside to %s; tokenizing again", name, path, problem, aside)
    ids, full = encode(tokenizer, ds["text"], max_length, strategy, head_tokens)
    if len(full):
        log.info("tokens %s: mean %.0f, p95 %.0f, max %d; %.1f%% truncated to %d (%s)", name, full.mean(),
                 np.percentile(full, 95), full.max(), 100 * (full > max_length).mean(), max_length, strategy)
    out = Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids], "label": ds["label"]})
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        out.save_to_disk(str(tmp))
        write_json(tmp / CHECKSUMS, file_checksums(tmp))   # what read_tokenized checks the files against
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
    from transformers import AutoModelForSequenceClassification
    tok = load_tokenizer(name_or_path)
    with cannot_load(name_or_path):
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID, dtype=torch.float32)
    return model, tok


def load_tokenizer(name_or_path: str):
    """The tokenizer of a hub id, a saved folder or tiny:bert / tiny:roberta."""
    if name_or_path.startswith("tiny:"):
        return build_tiny(name_or_path[5:])[1]
    from transformers import AutoTokenizer
    with cannot_load(name_or_path):
        return AutoTokenizer.from_pretrained(name_or_path)


@contextlib.contextmanager
def cannot_load(name_or_path: str):
    """Turn the OSError of a model that is neither a folder nor a reachable hub id into a UsageError."""
    try:
        yield
    except OSError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise UsageError(f"cannot load model '{name_or_path}' ({first}); give a saved folder or a hub id "
                         f"that is reachable or cached (offline: HF_HUB_CACHE=... HF_HUB_OFFLINE=1, README "
                         f"'Offline use')") from None


def is_saved_model(folder: Path) -> bool:
    """A folder that from_pretrained can load: config.json, weights and a tokenizer."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHT_FILES) \
        and any((folder / t).is_file() for t in ("tokenizer.json", "tokenizer_config.json"))


def is_finished(folder: Path) -> bool:
    """A finished run of this project: a loadable model (weights included) and its metrics.json.
    Published results (outputs/<exp>/models/*.json, tables) never make a run look finished."""
    return is_saved_model(folder) and (Path(folder) / "metrics.json").is_file()


def truncation_settings(kd: dict, tokenizer=None) -> dict:
    """How a saved model tokenizes: {max_length, truncation, head_tokens} from the `sentiment_kd` entry
    of its config.json; for a model trained elsewhere, the tokenizer's length limit (at most 512) and
    head truncation."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return {"max_length": kd.get("max_length", min(limit, 512)), "truncation": kd.get("truncation", "head"),
            "head_tokens": kd.get("head_tokens", 128)}


def logits_in_order(model, collate, ids: list[list[int]], batch_size: int, device: str, forward=None,
                    desc: str | None = None) -> np.ndarray:
    """Logits (N, C) float32 of `model` for N token-id lists, returned in the input order.

    The lists are sorted by length (batches of similar length pad little), padded by `collate` into
    batches of `batch_size`, run through `forward(batch)` (default `model(**batch).logits`; evaluation
    passes a timed one) under inference_mode, and each batch's rows are written back to the positions
    they came from. `desc` shows a progress bar.
    """
    import torch
    forward = forward or (lambda batch: model(**batch).logits)
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    if desc:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc, unit="batch")
    with torch.inference_mode():
        for i in starts:
            idx = order[i:i + batch_size]
            batch = {k: v.to(device) for k, v in collate([{"input_ids": ids[j]} for j in idx]).items()}
            out[idx] = forward(batch).float().cpu().numpy()
    return out


def batched_logits(model, tokenizer, texts: list[str], settings: dict, batch_size: int, device: str,
                   desc: str | None = None) -> np.ndarray:
    """Logits (N, C) of `model` for texts, tokenized with `settings` (truncation_settings), in input order."""
    ids, _ = encode(tokenizer, texts, settings["max_length"], settings["truncation"], settings["head_tokens"])
    return logits_in_order(model, PadCollator(tokenizer), ids, batch_size, device, desc=desc)


def model_config(name_or_path: str):
    """The transformers config of a hub id, a folder or tiny:bert / tiny:roberta, without the weights
    (for checks before anything is loaded or written)."""
    if name_or_path.startswith("tiny:"):
        return build_tiny(name_or_path[5:])[0].config
    from transformers import AutoConfig
    with cannot_load(name_or_path):
        return AutoConfig.from_pretrained(name_or_path)


def check_max_length(config, max_length: int, name: str) -> None:
    """UsageError when max_length exceeds the positions a model has (config: its transformers config;
    RoBERTa-style models number positions after the padding index: max_position_embeddings - pad - 1)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    if config.model_type in ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer"):
        limit -= (config.pad_token_id or 0) + 1
    if max_length > limit:
        raise UsageError(f"max_length {max_length}: {name} takes at most {limit} tokens; lower --max_length")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


class PadCollator:
    """Batch tokenized rows: pad `input_ids` to the longest in the batch (dynamic padding), build the
    attention mask, rename `label` to `labels`, stack any float columns (e.g. cached teacher logits)
    and drop bookkeeping columns such as `length`."""

    def __init__(self, tokenizer, float_columns=("teacher_logits",)):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.float_columns = float_columns

    def __call__(self, rows: list[dict]) -> dict:
        # numpy, not tokenizer.pad (what DataCollatorWithPadding calls): 17x faster here (60,900 vs 3,500
        # rows/s for 512-token IMDb reviews on a 2-core Xeon), which keeps the loader ahead of a GPU
        import torch
        n = max(len(r["input_ids"]) for r in rows)
        ids = np.full((len(rows), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), n), dtype=np.int64)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            cols = slice(n - k, n) if self.left else slice(0, k)
            ids[i, cols], mask[i, cols] = r["input_ids"], 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
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
