"""ONNX: export a saved model to `<model>/onnx/` (export_model: torch.onnx, ONNX Runtime int8), and run an
export with ONNX Runtime without torch or transformers (onnx_logits).

Nothing here runs on its own; export.py exports, inference.py runs an ONNX folder given as --model, and
evaluate_models.py times its onnx rows (exporting where needed). The running side imports only numpy,
`tokenizers` and `onnxruntime` (those lazily), so that a one-review command answers without the seconds
that importing torch costs; the export side imports torch inside its functions.

An ONNX folder (written by export.py) holds model.onnx (fp32), model_quantized.onnx (ONNX Runtime
dynamic int8), config.json (with the `sentiment_kd` truncation settings the model was trained with)
and the tokenizer files; the layout is the one optimum's ORTModelForSequenceClassification loads.
Tokenization is models.encode's, re-done on the `tokenizers` backend: the same tokenizer.json,
special tokens around the text, head/tail truncation (models.truncate_ids) to max_length.
"""
from __future__ import annotations

import contextlib
import functools
import shutil
import warnings
from pathlib import Path

import numpy as np

from configurator import UsageError, log, run_root
from data_utils import file_stamps, read_json, replace_dir, write_json
from models import default_max_length, label_names, truncate_ids

FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"     # optimum's name for a quantized model


def is_onnx_folder(folder: Path) -> bool:
    """An ONNX export of a classifier: model.onnx, config.json and tokenizer.json side by side."""
    folder = Path(folder)
    return all((folder / f).is_file() for f in (FP32_FILE, "config.json", "tokenizer.json"))


class OnnxTokenizer:
    """The model's tokenizer.json (`tokenizers`, no transformers), encoding as models.encode does."""

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
        self.max_length = kd.get("max_length") or default_max_length(tok_config.get("model_max_length", 512), config)
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


@functools.lru_cache(maxsize=4)
def runner(folder: Path, file: str, stamps: tuple, threads: int = 0) -> tuple[OnnxTokenizer, object]:
    """(tokenizer, session) of an export's .onnx file, kept for the next call (predict() in a loop pays the
    session's start-up once); stamps, the folder's files' modification times (file_stamps), make a re-export read afresh."""
    return OnnxTokenizer(folder), session(folder / file, threads)


def run_logits(sess, batch: dict) -> np.ndarray:
    """Logits of one padded batch; feeds only the inputs the graph declares (token_type_ids: zeros)."""
    names = [i.name for i in sess.get_inputs()]
    feed = {k: batch[k] if k in batch else np.zeros_like(batch["input_ids"]) for k in names}
    return sess.run(["logits"], feed)[0]


def onnx_logits(folder: Path, texts: list[str], batch_size: int = 32, file: str = FP32_FILE,
                threads: int = 0) -> np.ndarray:
    """Logits (N, C) float32 for texts (C: the model's labels), in input order (batches sorted by length, as
    logits_in_order)."""
    folder = Path(folder).absolute()
    tok, sess = runner(folder, file, file_stamps(folder), threads)
    ids = tok.encode(texts)
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), len(label_names(read_json(Path(folder) / "config.json")))), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        out[idx] = run_logits(sess, tok.pad([ids[j] for j in idx]))
    return out


# ----------------------------------------------------------------------------------------------
# export (export.py, and evaluate_models.py where an export is missing): torch and onnx, imported lazily
# ----------------------------------------------------------------------------------------------
def onnx_dir(folder: Path) -> Path:
    return Path(folder) / "onnx"


def is_exported(folder: Path, quantized: bool = True) -> bool:
    out = onnx_dir(folder)
    return (out / FP32_FILE).is_file() and (not quantized or (out / INT8_FILE).is_file())


def export_fp32(model, tokenizer, path: Path) -> None:
    """model.onnx with dynamic batch and sequence axes; inputs input_ids, attention_mask; output logits."""
    import torch
    sample = tokenizer(["a short review", "a somewhat longer review of a film"], padding=True, return_tensors="pt")
    inputs = {"input_ids": sample["input_ids"], "attention_mask": sample["attention_mask"]}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")        # torch.export's deprecation notes about its own internals
        program = torch.onnx.export(model.eval(), (), kwargs=inputs, input_names=list(inputs), output_names=["logits"],
                                    dynamic_shapes={k: {0: batch, 1: seq} for k in inputs}, dynamo=True,
                                    verbose=False)
    program.save(str(path))


def quantize_int8(src: Path, dst: Path, exclude: list[str], per_channel: bool = True, reduce_range: bool = True) -> None:
    """ONNX Runtime dynamic quantization: MatMul/Gather weights to int8 (a scale per output channel with `per_channel`,
    7 bits with `reduce_range`: no overflow in the 16-bit sums of CPUs without VNNI), activations uint8 at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = dst.with_name("prepared.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    ops = None
    if exclude:
        import onnx
        ops = sorted({n.op_type for n in onnx.load(str(prepared)).graph.node} & {"MatMul", "Gather", "Attention",
                                                                                    "EmbedLayerNormalization"} - set(exclude))
        if not ops:    # quantize_dynamic reads an empty list as "every operator type": the opposite of the request
            prepared.unlink()
            raise UsageError(f"--quantize_exclude={','.join(exclude)} leaves no operator of {src} to quantize; "
                             f"exclude fewer, or set --quantize=false for no int8 model")
    quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                     per_channel=per_channel, reduce_range=reduce_range)
    prepared.unlink()


@contextlib.contextmanager
def quiet_exporters():
    """The exporter's and the quantizer's INFO lines (hundreds per model: onnxscript's rewrites, ONNX Runtime's
    per-tensor quantization parameters, some through the root logger) held back to warnings while they run."""
    import logging
    floor = {n: logging.WARNING for n in ("", "onnxscript", "onnx_ir", "torch.onnx", "onnxruntime")} | \
        {"torch.onnx._internal.exporter._registration": logging.ERROR}   # "torchvision is not installed", 4 per model
    loggers = [logging.getLogger(n) for n in floor]
    levels = [lg.level for lg in loggers]
    for lg, least in zip(loggers, floor.values()):
        lg.setLevel(max(lg.level, least))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


PARITY_TEXTS = ("A wonderful film, the best I have seen in years.", "Awful. A boring waste of time.",
                "It starts slowly. " + "The middle wanders between scenes that go nowhere. " * 80 + "But the end is great.")
PARITY_ATOL = 1e-3                # logits; fp32 ONNX Runtime and torch agreed to 1e-8 (tiny test models) to 4.8e-7
                                  # (smoke's MiniLM teacher, the README's Deployment) here


def check_parity(model, tok, export: Path, folder: Path) -> float:
    """The largest |ONNX logit - torch logit| over PARITY_TEXTS (one past the trained length, so the head+tail cut
    is checked too), each side tokenizing on its own as inference does; a UsageError above PARITY_ATOL (a graph
    or tokenizer that does not match the model would otherwise be published and served)."""
    from models import batched_logits, truncation_settings
    kd = read_json(export / "config.json").get("sentiment_kd", {})
    ref = batched_logits(model, tok, list(PARITY_TEXTS), truncation_settings(kd, tok, model.config), 4, "cpu")
    diff = float(np.abs(onnx_logits(export, list(PARITY_TEXTS)) - ref).max())
    if not diff <= PARITY_ATOL:
        raise UsageError(f"{folder}: its ONNX export gives logits {diff:.3g} away from the torch model's (more than "
                         f"{PARITY_ATOL}) on the parity texts; nothing was written (please report it with the model's config.json)")
    return round(diff, 8)


INT8_SETTINGS = ("quantize_exclude", "per_channel", "reduce_range")   # export.json: how its int8 file was made
OLD_INT8 = {"per_channel": False, "reduce_range": False}              # exports before these were recorded: per tensor


def export_model(folder: Path, overwrite: bool = False, quantize: bool = True, exclude: list[str] = (),
                 per_channel: bool = True, reduce_range: bool = True) -> Path:
    """Export one finished model folder to <folder>/onnx/ (atomically: written to onnx.partial first); a finished
    export is kept unless `overwrite`, and one whose int8 file was made otherwise (INT8_SETTINGS) is refused."""
    from models import load_classifier
    folder, out = Path(folder), onnx_dir(folder)
    settings = {"quantize": quantize, "quantize_exclude": sorted(e for e in exclude if e), "per_channel": per_channel,
                "reduce_range": reduce_range}
    if is_exported(folder, quantize) and not overwrite:
        old = OLD_INT8 | (read_json(out / "export.json") if (out / "export.json").is_file() else
                          {"quantize": True, "quantize_exclude": []})   # older exports recorded nothing: none excluded
        changed = [k for k in INT8_SETTINGS if quantize and old["quantize"] and old[k] != settings[k]]
        if changed:
            said = lambda v: ",".join(v) or "none" if isinstance(v, list) else str(v).lower()   # noqa: E731
            raise UsageError(f"{out} was exported with {changed[0]} = {said(old[changed[0]])}, now "
                             f"{said(settings[changed[0]])}; --overwrite=true exports it again")
        log.info("kept %s (exported already; --overwrite=true exports again)", out)
        stale, root = out.with_name("onnx.partial"), run_root()      # an --overwrite export stopped midway
        if stale.exists() and root is not None and root.resolve() in folder.resolve().parents:   # our lock: no writer
            shutil.rmtree(stale, ignore_errors=True)
            log.info("removed %s, left by an export that was stopped", stale)
        elif stale.exists():       # another experiment's model (its teacher): an export of it may be running
            log.warning("%s: left by an export that was stopped, or one running now; remove it once none runs", stale)
        return out
    model, tok = load_classifier(str(folder))
    tmp = out.with_name("onnx.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with quiet_exporters():
        export_fp32(model, tok, tmp / FP32_FILE)
        if quantize:
            quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE, [e for e in exclude if e], per_channel, reduce_range)
    model.config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        settings["max_abs_logit_diff"] = check_parity(model.eval(), tok, tmp, folder)
    except UsageError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json(tmp / "export.json", settings)          # how it was made: a later export with others is refused
    replace_dir(tmp, out)
    sizes = {f.name: round(f.stat().st_size / 1e6, 1) for f in out.glob("*.onnx")}
    log.info("exported %s: %s MB; its fp32 logits within %.1e of the torch model's (of %s allowed)", out, sizes,
             settings["max_abs_logit_diff"], PARITY_ATOL)
    return out


class OrtClassifier:
    """An ONNX Runtime session behind the interface evaluate_models.measure times: `model(**batch).logits`
    (torch tensors in and out, converted without copies), `.config`, `.to()`, `.eval()`, and `size_mb`."""

    def __init__(self, path: Path, config, threads: int = 0):
        self.sess, self.config, self.size_mb = session(path, threads), config, Path(path).stat().st_size / 1e6

    def to(self, device):
        if str(device) != "cpu":
            raise UsageError("ONNX rows run on the CPU only")
        return self

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask, **_):
        import types

        import torch
        logits = run_logits(self.sess, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
