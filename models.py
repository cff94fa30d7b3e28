"""Tokenization and models, shared by every script (the data is data_utils.py's).

Nothing here runs on its own; the scripts import it. What it provides:

- `encode` / `tokenize_dataset`: head / tail / head+tail truncation for any tokenizer, cached on disk
  under `CACHE_DIR/tokenized/<key>` where the key hashes the tokenizer, the settings and the texts.
- `load_classifier` / `load_tokenizer`: a hub id, a saved folder, or `tiny:bert` / `tiny:roberta` (random
  models built from a config in code, for tests; no download). `truncation_settings`: how a saved model
  tokenizes; `is_finished`: a saved model with its metrics (a finished run).
- `logits_in_order` / `batched_logits`: the one batched forward (sort by length, pad, forward, put the
  rows back in input order) behind the teacher-logit pass, evaluation and inference; `PadCollator`.
- `student_fields` / `student_key` / `recipe`: what a saved student's record says of it, which runs are the
  same student (a distilled one and its matched baseline) and the same recipe (seeds of one entry), for
  evaluation's pairing and distillation's choice of the best recipe.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import string
from pathlib import Path

import numpy as np

from configurator import TRUNCATIONS, UsageError, flag, log
from data_utils import IMDB_LABELS, digest, read_json, texts_digest, write_json

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def teacher_folder(output_dir: str, experiment: str, teacher_dir: str = "") -> Path:
    """The teacher a run reads: TEACHER_DIR when set, else OUTPUT_DIR/EXPERIMENT/teacher (fine_tuning_teacher.py's)."""
    return Path(teacher_dir) if teacher_dir else Path(output_dir) / experiment / "teacher"


def default_device(device: str = "auto") -> str:
    """The torch device to run on: for "auto" the GPU when there is one, else the CPU; "cpu"; "cuda" after
    checking that a GPU is visible."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda: no GPU is visible; use --device=auto or cpu")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


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
    if strategy == "head+tail" and head_tokens >= budget:     # the settings' check assumes 2 special tokens; some add more
        raise UsageError(f"--head_tokens={head_tokens}: must be below {budget}, what --max_length={max_length} leaves after "
                         f"this tokenizer's {len(prefix) + len(suffix)} special tokens (head+tail would keep no tail)")
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


def build_tiny(kind: str, seed: int = 0, labels=IMDB_LABELS):
    """A randomly initialised 2-layer classifier and its tokenizer, built in code (for tests).

    kind: `bert` (WordPiece over letters, digits and a few words) or `roberta` (byte-level BPE
    without merges). Different tokenizers on purpose, to test cross-tokenizer distillation.
    """
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, BertTokenizer, RobertaConfig,
                              RobertaForSequenceClassification, RobertaTokenizer)
    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
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


def load_classifier(name_or_path: str, seed: int = 0, labels=None):
    """(model in float32, tokenizer) for a hub id, a saved folder, or `tiny:bert` / `tiny:roberta`.

    labels: the label names in id order, set in the model config so every later tool shows them; the head is the
    checkpoint's where head_plan keeps it (a classifier fine-tuned for these classes: its rows put in this order),
    else a new one of that many classes. None keeps a classifier's own head and names (a saved folder or a hub
    id); an encoder gets a new head of IMDb's two.
    """
    if name_or_path.startswith("tiny:"):
        return build_tiny(name_or_path[5:], seed, labels or IMDB_LABELS)
    import torch
    from transformers import AutoModelForSequenceClassification
    tok = load_tokenizer(name_or_path)
    config = model_config(name_or_path)
    kind, order = ("own", None) if labels is None and is_classifier(config) else head_plan(config, labels or IMDB_LABELS)
    names = list(labels or IMDB_LABELS)
    head = {} if kind != "new" else {"num_labels": len(names), "id2label": dict(enumerate(names)),
                                     "label2id": {n: i for i, n in enumerate(names)}, "ignore_mismatched_sizes": True}
    with cannot_load(name_or_path), quiet_transformers():   # its LOAD REPORT table: said by report_loading instead
        model, info = AutoModelForSequenceClassification.from_pretrained(loadable(name_or_path), dtype=torch.float32,
                                                                         output_loading_info=True, **head)
    report_loading(name_or_path, model, info, config)
    if order is not None:
        reorder_head(model, order)
        model.config.id2label, model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        model.config.problem_type = "single_label_classification"   # one class per text (a multi-label head's loss is another)
        say_head(name_or_path, kind, label_names(config.to_dict()), names)
    stored = "/".join(sorted(stored_float_dtypes(name_or_path) - {"F32", "F64"}))
    if stored:      # e.g. the GPU pack's copies (make-device-pack stores them in float16 to fit its chunks)
        log.warning("%s: weights stored as %s, loaded as float32: a training from them starts from weights rounded "
                    "to %s", name_or_path, stored, stored)
    return model, tok


def head_plan(config, labels) -> tuple[str, list[int] | None]:
    """How a checkpoint (config: its transformers config) serves the data's `labels` (names in id order): (kind,
    order), order[i] being the checkpoint's class for the data's class i, its head kept; None: a new head.
    kind: "new" (a pretrained encoder, or a classifier of another number of classes), "same" (a classifier of the
    data's classes, whatever their case and order: NEGATIVE / POSITIVE serve negative / positive), "unnamed" (of
    as many classes named LABEL_0, LABEL_1, ...: taken in id order) or "other" (as many classes of other names:
    its head is kept in id order, to be trained further)."""
    theirs = label_names(config.to_dict())
    if not is_classifier(config) or len(theirs) != len(labels):
        return "new", None
    folded = [n.lower() for n in theirs]
    if sorted(folded) == sorted(n.lower() for n in labels) and len(set(folded)) == len(folded):
        return "same", [folded.index(n.lower()) for n in labels]
    if theirs == [f"LABEL_{i}" for i in range(len(theirs))]:
        return "unnamed", list(range(len(labels)))
    return "other", list(range(len(labels)))


def is_classifier(config) -> bool:
    """Whether a transformers config is a sequence classifier's (a head of its own), not a bare encoder's."""
    return any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ())


def say_head(name_or_path: str, kind: str, theirs: list[str], labels: list[str]) -> None:
    """One line for a checkpoint's classification head kept for the data's labels (head_plan's kind)."""
    if kind == "same":
        moved = "" if [n.lower() for n in theirs] == [n.lower() for n in labels] else ", its classes put in the data's order"
        log.info("%s: its classification head (%s) serves the data's labels (%s)%s", name_or_path, ", ".join(theirs),
                 ", ".join(labels), moved)
    elif kind == "unnamed":
        log.info("%s: its classes are unnamed (%s): taken in id order as the data's %s", name_or_path,
                 ", ".join(theirs), ", ".join(labels))
    else:
        log.info("%s: its classification head is for other classes (%s): trained further as the data's %s, in id order",
                 name_or_path, ", ".join(theirs), ", ".join(labels))


def reorder_head(model, order: list[int]) -> None:
    """Put a classifier's output classes in `order` (order[i]: the class now at index i, C = len(order)): the rows
    of its last C-output linear layer outside the encoder (BERT's classifier, RoBERTa's classifier.out_proj), so
    that logits_new[:, i] = logits_old[:, order[i]]."""
    import torch
    if order == sorted(order):
        return
    inside = f"{model.base_model_prefix}."
    outs = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith(inside)
            and m.out_features == len(order)]
    if not outs:
        raise UsageError(f"{type(model).__name__}: no classification layer of {len(order)} outputs found to put its "
                         f"classes in the data's order (a head this code does not know); save the model with its head's "
                         f"rows and id2label in the data's order")
    with torch.no_grad():
        outs[-1].weight.copy_(outs[-1].weight[order])
        if outs[-1].bias is not None:
            outs[-1].bias.copy_(outs[-1].bias[order])


@contextlib.contextmanager
def quiet_transformers():
    """transformers' own warnings off for a block (restored after)."""
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def report_loading(name_or_path: str, model, info: dict, config) -> None:
    """One line for what from_pretrained's `info` (output_loading_info) says, in place of transformers' LOAD REPORT
    table, which reads as an error to a newcomer when it only lists the new classification head: the head (weights
    outside the encoder, model.base_model_prefix) as information; checkpoint weights a classifier does not use
    (pre-training heads) as information; encoder weights missing from the checkpoint, newly initialized, as a
    warning (another architecture, a damaged or partial checkpoint). config: the checkpoint's (its own classes)."""
    prefix = f"{model.base_model_prefix}."
    missing = sorted(info.get("missing_keys") or ())
    body = [k for k in missing if k.startswith(prefix)]
    head = [k for k in missing if not k.startswith(prefix)]
    resized = sorted(k[0] for k in info.get("mismatched_keys") or ())     # (name, its shape, the model's): a head
    if head:
        log.info("%s: a new classification head (%s), trained here", name_or_path, ", ".join(head))
    if resized:     # of another number of classes (head_plan: "new")
        log.info("%s: a new classification head (%s) in place of its own for %d classes, trained here", name_or_path,
                 ", ".join(resized), len(label_names(config.to_dict())))
    unused = sorted(info.get("unexpected_keys") or ())
    if unused:
        log.info("%s: %d checkpoint weights a classifier does not use (%s%s)", name_or_path, len(unused),
                 ", ".join(unused[:3]), ", ..." if len(unused) > 3 else "")
    if body:
        log.warning("%s: %d encoder weights are not in the checkpoint and start random (%s%s): a checkpoint of "
                    "another architecture, or a damaged one? It will train poorly", name_or_path, len(body),
                    ", ".join(body[:3]), ", ..." if len(body) > 3 else "")


def stored_float_dtypes(name_or_path: str) -> set[str]:
    """The safetensors dtypes ("F16", "BF16", "F32", ...) of the floating-point tensors in a model's one
    model.safetensors (a folder's, or a hub id's cached copy), read from the file's header; empty when there is
    no such file (sharded, not cached)."""
    path = Path(loadable(name_or_path)) / "model.safetensors"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache
        try:
            cached = try_to_load_from_cache(name_or_path, "model.safetensors")
        except ValueError:            # not a hub id (a path that is not a model folder)
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return set()
    header, _ = safetensors_header(path)
    return {t["dtype"] for t in header.values() if t["dtype"].startswith(("F", "BF"))}


def safetensors_header(path: Path) -> tuple[dict, int]:
    """({tensor name: {dtype, shape, data_offsets}} without __metadata__, the file size its header implies) of a
    safetensors file: an 8-byte little-endian header length, the JSON header, then the tensors' bytes. Raises
    OSError / ValueError / KeyError on a file that is not one."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n + max((t["data_offsets"][1] for t in header.values()), default=0)


def load_tokenizer(name_or_path: str):
    """The tokenizer of a hub id, a saved folder or tiny:bert / tiny:roberta, padding on the right whatever it was
    saved with: BERT-style encoders number positions from the first token, so a left-padded text would read other
    positions in a batch than alone (and than the ONNX path, which pads on the right)."""
    if name_or_path.startswith("tiny:"):
        return build_tiny(name_or_path[5:])[1]
    from transformers import AutoTokenizer
    with cannot_load(name_or_path):
        tok = AutoTokenizer.from_pretrained(loadable(name_or_path))
    tok.padding_side = "right"
    return tok


def local_path(name_or_path: str) -> Path | None:
    """The path a model name means on this machine (~ expanded), or None for a hub id: a name that exists here, looks
    like a path (/, ./, ../, ~), has more than one '/' (a hub id has at most one: owner/name), or begins with a
    folder that exists here (outputs/...)."""
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 \
            or ("/" in name_or_path and Path(name_or_path.split("/", 1)[0]).is_dir()):
        return path
    return None


def loadable(name_or_path: str) -> str:
    """The name from_pretrained is given: a local path with ~ expanded (transformers would take `~/m` for a hub id)."""
    path = local_path(name_or_path)
    return name_or_path if path is None else str(path)


def check_local_model(name_or_path: str) -> None:
    """UsageError for a model given as a local path (local_path) that cannot be one: missing, a file, a folder
    without config.json (an experiment's folder, say: the models in it named; an ONNX export: its model folder),
    a config.json without model_type, or no weights. A hub id passes (from_pretrained says what is wrong with it)."""
    path = local_path(name_or_path)
    if path is None:
        return
    fix = "give a saved model folder (config.json and weights, e.g. outputs/<experiment>/teacher) or a hub id"
    if not path.exists():
        raise UsageError(f"model '{name_or_path}': no such folder; {fix}")
    from onnx_runtime import is_onnx_folder      # here: onnx_runtime imports this module
    if is_onnx_folder(path if path.is_dir() else path.parent):     # an export runs in ONNX Runtime, not torch
        export = path if path.is_dir() else path.parent
        raise UsageError(f"model '{name_or_path}' is an ONNX export, which torch does not load; give the model folder "
                         f"it was exported from: {export.parent}")
    if not path.is_dir():
        raise UsageError(f"model '{name_or_path}' is a file; " + (
            f"give its folder: {path.parent}" if is_saved_model(path.parent) else fix))
    if not (path / "config.json").is_file():
        inside = [str(p) for p in finished_models(experiment_of(path)) if path.resolve() in p.resolve().parents]
        raise UsageError(f"model '{name_or_path}' is a folder without config.json, not a saved model; " + (
            f"the models in it: {', '.join(inside)}" if inside else fix))
    try:
        model_type = read_json(path / "config.json").get("model_type")
    except (ValueError, AttributeError):     # not JSON, or not an object
        model_type = None
    if not model_type:
        raise UsageError(f"model '{name_or_path}': its config.json is not a transformers model's (no model_type); {fix}")
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise UsageError(f"model '{name_or_path}' has no weights (model.safetensors or pytorch_model.bin); {fix}")


@contextlib.contextmanager
def cannot_load(name_or_path: str):
    """Check a model given as a local path (check_local_model), then turn the OSError of one that is neither a
    folder nor a reachable hub id into a UsageError."""
    check_local_model(name_or_path)
    try:
        yield
    except OSError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise UsageError(f"cannot load model '{name_or_path}' ({first}); give a saved folder or a hub id "
                         f"that is reachable or cached (offline: HF_HUB_CACHE=... HF_HUB_OFFLINE=1, README "
                         f"'Offline use')") from None


def label_names(config: dict) -> list[str]:
    """A saved model's class names in id order, from its config.json (a dict). transformers leaves id2label out
    of config.json when it is its own default (LABEL_0, LABEL_1 for 2 classes): then those, for num_labels."""
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(config.get("num_labels", 2))}
    return [id2label[k] for k in sorted(id2label, key=int)]


def is_saved_model(folder: Path) -> bool:
    """A folder that from_pretrained can load: config.json, weights and a tokenizer."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHT_FILES) \
        and any((folder / t).is_file() for t in ("tokenizer.json", "tokenizer_config.json"))


def is_finished(folder: Path) -> bool:
    """A finished run of this project: a loadable model (weights included) and its metrics.json, not a save in
    progress (`<name>.partial`) or a replaced model on its way out (`<name>.replaced`: data_utils.replace_dir).
    Published results (outputs/<exp>/models/*.json, tables) never make a run look finished."""
    return is_saved_model(folder) and (Path(folder) / "metrics.json").is_file() \
        and not Path(folder).name.endswith((".partial", ".replaced"))


def finished_models(root: Path) -> list[Path]:
    """An experiment folder's finished teacher and students (is_finished: not a save in progress), teacher first."""
    root = Path(root)
    return [p for p in [root / "teacher"] + sorted((root / "students").glob("*")) if is_finished(p)]


def saved_models(output_dir: str) -> list[Path]:
    """Every finished model folder of every experiment under output_dir (finished_models of each)."""
    return [p for root in sorted(Path(output_dir).glob("*")) for p in finished_models(root)]


def experiment_of(folder: Path) -> Path:
    """The experiment folder a model folder belongs to (<exp>/teacher, <exp>/students/<name>); that of <exp>/students
    itself; else the folder itself."""
    folder = Path(folder)
    if folder.parent.name == "students":
        return folder.parent.parent
    return folder.parent if folder.name in ("teacher", "students") else folder


def run_fingerprint(folder: Path) -> str:
    """Names one training run of a finished model, or one publication of soft labels: the digest of its
    metrics.json (soft labels: train.json), written once when the run finished, with its times, so a retrain
    changes it and copying or moving the folder does not. A student records its teacher's."""
    folder = Path(folder)
    meta = folder / "metrics.json" if (folder / "metrics.json").is_file() else folder / "train.json"
    return digest(read_json(meta))


def recorded_teacher(student: Path) -> tuple[dict, str | None]:
    """(its sentiment_kd record, the run_fingerprint of the teacher folder or soft labels it learned from: None for
    older runs and a pretrained student's baseline) of a student folder."""
    kd = read_json(Path(student) / "config.json").get("sentiment_kd", {})
    return kd, (kd.get("training_settings") or {}).get("teacher")


def teacher_retrained_since(student: Path, teacher: Path) -> bool:
    """Whether `student` learned from another training of the teacher than the one now in `teacher` (retrained
    since: run_fingerprint). Students of older runs record no teacher, and a missing teacher is no other one."""
    theirs = recorded_teacher(student)[1]
    return bool(theirs) and is_finished(Path(teacher)) and theirs != run_fingerprint(teacher)


def learned_from_elsewhere(student: Path, teacher: Path) -> str:
    """The teacher folder `student` was distilled from with --teacher_dir (its run configuration's), when that is not
    `teacher`, else "": a student of its own experiment's teacher records none, whatever the experiment has been
    renamed or moved to since. Paths as the run wrote them (relative to the checkout, or absolute), so a folder is
    told by its last two parts (<experiment>/teacher)."""
    rc = read_json(Path(student) / "config.json").get("sentiment_kd", {}).get("run_config") or {}
    theirs = "" if rc.get("soft_labels") else rc.get("teacher_dir") or ""      # soft labels: no teacher folder
    return theirs if theirs and Path(theirs).parts[-2:] != Path(teacher).parts[-2:] else ""


def teacher_run_of(student: Path) -> str | None:
    """The training run (run_fingerprint) of the teacher `student` learned from or was cut from: its record's, or,
    for a student of published soft labels, the teacher run those record; None when not recorded (older runs, a
    pretrained student's baseline)."""
    kd, theirs = recorded_teacher(student)
    soft = Path(kd.get("teacher") or "") / "train.json"
    if theirs and soft.is_file():
        return read_json(soft).get("teacher_run")
    return theirs


def reorder_hint(theirs: list, ours: list) -> str:
    """What to do when a model's classes (`theirs`, id order) are the data's (`ours`) in another order, else "":
    string labels take --label_names in the model's order; integer names ("1", "10", "2") are a model trained before
    integers written as text (JSON Lines, parquet) were read as integers and sorted by value, which --label_names
    cannot undo (it names integer values by rank): retrain it."""
    theirs, ours = [str(x) for x in theirs], [str(x) for x in ours]
    if theirs == ours or sorted(theirs) != sorted(ours):
        return ""
    if all(x.lstrip("-").isdigit() for x in ours):
        return ("its classes are the data's in another order, as when integer labels written as text were sorted as "
                "text (before they were read as integers): retrain it on this data (--overwrite=true)")
    return f"its classes are the data's in another order: give the order it was trained with, {flag('label_names', theirs)}"


NEAR_CHANCE = 0.05   # validation accuracy less than this above the most common class's share: learned little


def near_chance(metrics: dict) -> str:
    """"less than 5 points above 0.6000, what always predicting the most common class scores" when a model's
    metrics.json (val_accuracy, val_majority_share) says it learned little, else "" (also where the share was not
    recorded, or where it left classes out: unpredicted_classes says that instead)."""
    share, accuracy = metrics.get("val_majority_share"), metrics.get("val_accuracy")
    seen, held = metrics.get("val_classes_predicted"), metrics.get("val_classes_in_labels")
    if share is None or accuracy is None or (seen is not None and held and seen < held) or accuracy >= share + NEAR_CHANCE:
        return ""
    return f"less than {round(NEAR_CHANCE * 100)} points above {share:.4f}, what always predicting the most common class scores"


NEGLECT_MIN_TEXTS = 20   # validation texts of a class below which its recall is not read as neglect (noise)


def neglected_class(metrics: dict, labels: list) -> str:
    """What a model's metrics.json says of a class it predicts but all but ignores on validation: the lowest recall
    of a class (val_min_recall, of class id val_min_recall_class with val_min_recall_texts texts) under half of what
    guessing at random would, 1 / (2 x len(labels)), with at least NEGLECT_MIN_TEXTS texts: "it recognised class
    'bad' in only 10.0% of its 40 validation texts of that class (4; guessing at random: 33.3%)"; else "", as
    where it was not recorded, or where some class is never predicted (unpredicted_classes says that)."""
    low, c, n = (metrics.get(f"val_min_recall{k}") for k in ("", "_class", "_texts"))
    seen, held = metrics.get("val_classes_predicted"), metrics.get("val_classes_in_labels")
    if low is None or c is None or (n or 0) < NEGLECT_MIN_TEXTS or (seen is not None and held and seen < held) \
            or low >= 1 / (2 * len(labels)):
        return ""
    name = labels[c] if 0 <= c < len(labels) else c
    return (f"it recognised class {name!r} in only {100 * low:.1f}% of its {n} validation texts of that class "
            f"({round(low * n)}; guessing at random: {100 / len(labels):.1f}%)")


def unpredicted_classes(metrics: dict, classes: int) -> str:
    """What a model's metrics.json says of the classes it never predicted on validation (val_classes_predicted, of
    `classes`; of those validation holds, val_classes_in_labels, where recorded): "it predicted one class for every
    validation text", "... only k of C classes ...", or "" for all."""
    seen, held = metrics.get("val_classes_predicted"), metrics.get("val_classes_in_labels") or classes
    if seen is None or seen >= held:        # None: recorded before it was counted
        return ""
    of = f"its {classes} classes on validation" if held == classes else f"the {held} classes validation holds"
    return "it predicted one class for every validation text" if seen == 1 else \
        f"it predicted none of {of}" if seen == 0 else f"it predicted only {seen} of {of}"


def truncation_settings(kd: dict, tokenizer=None, config=None) -> dict:
    """How a saved model tokenizes: {max_length, truncation, head_tokens} from the `sentiment_kd` entry
    of its config.json; for a model trained elsewhere, default_max_length (its tokenizer's limit and its
    `config`'s positions) and head truncation."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return {"max_length": kd.get("max_length") or default_max_length(limit, config),
            "truncation": kd.get("truncation", "head"), "head_tokens": kd.get("head_tokens", 128)}


# model types whose position ids start after the padding index (RoBERTa's scheme): padding_idx + 1 positions unused
POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text")


def position_limit(config) -> int | None:
    """The most tokens a model's position embeddings take (`config`: a transformers config or its dict; None when
    it names none): max_position_embeddings, less padding_idx + 1 for POSITION_OFFSET_TYPES (roberta-base: 514 -> 512)."""
    c = config.to_dict() if hasattr(config, "to_dict") else (config or {})
    if not c.get("max_position_embeddings"):
        return None
    offset = (c.get("pad_token_id") or 0) + 1 if c.get("model_type") in POSITION_OFFSET_TYPES else 0
    return c["max_position_embeddings"] - offset


def default_max_length(tokenizer_limit: int, config=None) -> int:
    """Tokens a model trained elsewhere reads (no `sentiment_kd` record): its tokenizer's limit, at most 512 and at
    most its position_limit, so that a long text never indexes past its position embeddings."""
    return min(int(tokenizer_limit or 512), 512, position_limit(config) or 512)


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
        return AutoConfig.from_pretrained(loadable(name_or_path))


def check_max_length(config, max_length: int, name: str) -> None:
    """UsageError when max_length exceeds the positions a model has (position_limit; config: its transformers config)."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise UsageError(f"max_length {max_length}: {name} takes at most {limit} tokens; lower --max_length")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


class PadCollator:
    """Batch tokenized rows: pad `input_ids` to the longest in the batch (dynamic padding), build the
    attention mask, rename `label` to `labels`, stack any float columns (e.g. cached teacher logits)
    and drop bookkeeping columns such as `length`."""

    def __init__(self, tokenizer, float_columns=("teacher_logits",)):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.float_columns = float_columns

    def __call__(self, rows: list[dict]) -> dict:
        # numpy, not tokenizer.pad (what DataCollatorWithPadding calls): 19x faster (60,100 vs 3,190 rows/s for
        # reviews of up to 512 tokens on a 2-core AMD EPYC; README), which keeps the loader ahead of a GPU
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


# ----------------------------------------------------------------------------------------------
# students: which runs are the same student, and the same recipe
# ----------------------------------------------------------------------------------------------
def student_fields(kd: dict, metrics: dict) -> dict:
    """What student_key and recipe read of a saved student, from its record (config.json's sentiment_kd) and its
    metrics.json: its STUDENTS entry, training settings, max_length, seed, optimizer steps, and whether a baseline
    was trained to its twin's steps (MATCH_STEPS; older records: it was)."""
    return {"student": kd.get("student"), "settings": kd.get("settings"), "max_length": kd.get("max_length"),
            "seed": (kd.get("settings") or {}).get("seed"), "steps": metrics.get("optimizer_steps"),
            "match_steps": (kd.get("run_config") or {}).get("match_steps", True)}


def student_key(row: dict) -> tuple:
    """What a distilled student and its baseline share: the student (model, layers), its seed, its
    optimizer steps, and the settings of its training (learning rate, batch size, max_length)."""
    spec, st = row.get("student") or {}, row.get("settings") or {}
    return (json.dumps([spec.get("model"), spec.get("layers"), st.get("learning_rate"), st.get("batch_size"),
                        row.get("max_length")]), row.get("seed"), row.get("steps"))


# What a distilled student's recipe is beyond its STUDENTS entry: the settings it trained with (its record's
# `settings`, where the config file's top-level keys and the flags of its run land), with the value of one recorded
# before the setting existed
RECIPE_SETTINGS = {"learning_rate": None, "epochs": None, "batch_size": None, "alpha": None, "temperature": None,
                   "transfer_size": 0, "hidden_weight": 0.0, "attention_weight": 0.0}


def recipe(row: dict) -> tuple[str, str]:
    """(label, key) of a student's recipe: its spec without name and seed (the key's `entry`), and the settings it trained with
    (RECIPE_SETTINGS, max_length): students of one entry trained in runs of other settings (`--alpha=0.2`, then
    `--alpha=0.8`) are two recipes, not two seeds of one; the label is the name without a `-s<seed>` suffix."""
    spec = dict(row.get("student") or {})
    name, seed = spec.pop("name", row["model"]), spec.pop("seed", None)
    label = name[:-len(f"-s{seed}")] if seed is not None and name.endswith(f"-s{seed}") else name
    st = row.get("settings") or {}
    trained = {k: st.get(k, default) for k, default in RECIPE_SETTINGS.items()} | {"max_length": row.get("max_length")}
    return label, json.dumps({"entry": spec, "trained": trained if st else None}, sort_keys=True)
