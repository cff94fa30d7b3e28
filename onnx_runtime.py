"""Run an exported model (export.py: `<model>/onnx/`) with ONNX Runtime, without torch or transformers.

Nothing here runs on its own; inference.py uses it for an ONNX folder given as --model, and
evaluate_models.py for its onnx rows. Imports only numpy, `tokenizers` and `onnxruntime` (and those
lazily), so that a one-review command answers without the seconds that importing torch costs.

An ONNX folder (written by export.py) holds model.onnx (fp32), model_quantized.onnx (ONNX Runtime
dynamic int8), config.json (with the `sentiment_kd` truncation settings the model was trained with)
and the tokenizer files; the layout is the one optimum's ORTModelForSequenceClassification loads.
Tokenization is data_utils.encode's, re-done on the `tokenizers` backend: the same tokenizer.json,
special tokens around the text, head/tail truncation (data_utils.truncate_ids) to max_length.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_utils import read_json
from models import truncate_ids

FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"     # optimum's name for a quantized model


def is_onnx_folder(folder: Path) -> bool:
    """An ONNX export of a classifier: model.onnx, config.json and tokenizer.json side by side."""
    folder = Path(folder)
    return all((folder / f).is_file() for f in (FP32_FILE, "config.json", "tokenizer.json"))


class OnnxTokenizer:
    """The model's tokenizer.json (`tokenizers`, no transformers), encoding as data_utils.encode does."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        bare = self.tok.encode("x", add_special_tokens=False).ids
        full = self.tok.encode("x", add_special_tokens=True).ids
        i = next(i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare)
        self.prefix, self.suffix = full[:i], full[i + len(bare):]
        config = read_json(Path(folder) / "config.json")
        tok_config = read_json(Path(folder) / "tokenizer_config.json") if (Path(folder) / "tokenizer_config.json").is_file() else {}
        pad = tok_config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_id = self.tok.token_to_id(pad) if pad else None
        if self.pad_id is None:
            self.pad_id = config.get("pad_token_id") or 0
        kd = config.get("sentiment_kd", {})
        self.max_length = kd.get("max_length", min(tok_config.get("model_max_length", 512), 512))
        self.truncation, self.head_tokens = kd.get("truncation", "head"), kd.get("head_tokens", 128)

    def encode(self, texts: list[str]) -> list[list[int]]:
        budget = self.max_length - len(self.prefix) - len(self.suffix)
        raw = self.tok.encode_batch(list(texts), add_special_tokens=False)
        return [self.prefix + truncate_ids(e.ids, budget, self.truncation, self.head_tokens) + self.suffix for e in raw]

    def pad(self, rows: list[list[int]]) -> dict:
        """{input_ids, attention_mask} int64 arrays, right-padded to the longest row."""
        n = max(len(r) for r in rows)
        ids = np.full((len(rows), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), n), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}


def session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session for one .onnx file (threads: intra-op threads, 0 = ORT's default)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_logits(sess, batch: dict) -> np.ndarray:
    """Logits of one padded batch; feeds only the inputs the graph declares (token_type_ids: zeros)."""
    names = [i.name for i in sess.get_inputs()]
    feed = {k: batch[k] if k in batch else np.zeros_like(batch["input_ids"]) for k in names}
    return sess.run(["logits"], feed)[0]


def onnx_logits(folder: Path, texts: list[str], batch_size: int = 32, file: str = FP32_FILE,
                threads: int = 0) -> np.ndarray:
    """Logits (N, 2) float32 for texts, in input order (batches sorted by length, as logits_in_order)."""
    tok, sess = OnnxTokenizer(folder), session(Path(folder) / file, threads)
    ids = tok.encode(texts)
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), 2), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        out[idx] = run_logits(sess, tok.pad([ids[j] for j in idx]))
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
