"""Export an experiment's finished models to ONNX: fp32 and ONNX Runtime dynamic int8, next to each model.

Reads  outputs/<EXPERIMENT>/teacher/ and outputs/<EXPERIMENT>/students/*/ (finished model folders), or
       one folder with --model.
Writes <model>/onnx/: model.onnx (fp32), model_quantized.onnx (int8 weights, activations quantized on
       the fly by ONNX Runtime), config.json and the tokenizer files: the layout that optimum's
       ORTModelForSequenceClassification loads and that inference.py takes as --model.

    python export.py --config configs/quick.toml                  # every finished model of `quick`
    python export.py --model=outputs/quick/students/L3            # one model
    python inference.py --model outputs/quick/students/L3/onnx "I loved it"

Why torch.onnx.export and not optimum: optimum-onnx (0.1.0, the newest on the package index) requires
transformers < 4.58 and this project uses transformers 5, so the maintained exporter of torch itself is
used (torch.export-based, `dynamo=True`; the TorchScript one is deprecated), and int8 quantization is
onnxruntime.quantization.quantize_dynamic, which is what optimum's ORTQuantizer runs underneath.
A finished export (both files) is kept unless OVERWRITE.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import onnx_runtime
from configurator import UsageError, log, run_main, start_run
from data_utils import replace_dir
from models import is_finished

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT = "paper"              # exports OUTPUT_DIR/EXPERIMENT/{teacher,students/*}
OUTPUT_DIR = "outputs"
MODEL = ""                        # one model folder instead of a whole experiment
OVERWRITE = False                 # export again even where <model>/onnx/ is complete
# --- quantization ------------------------------------------------------------------------------
QUANTIZE = True                   # also write the int8 model (ONNX Runtime dynamic quantization)
QUANTIZE_EXCLUDE = [""]           # ONNX operator types left in fp32 (e.g. Gather: the embedding table); [""] = none


def onnx_dir(folder: Path) -> Path:
    return Path(folder) / "onnx"


def is_exported(folder: Path, quantized: bool = True) -> bool:
    out = onnx_dir(folder)
    return (out / onnx_runtime.FP32_FILE).is_file() and (not quantized or (out / onnx_runtime.INT8_FILE).is_file())


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


def quantize_int8(src: Path, dst: Path, exclude: list[str]) -> None:
    """ONNX Runtime dynamic quantization: MatMul/Gather weights to int8 (per tensor), activations uint8 at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = dst.with_name("prepared.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    ops = None
    if exclude:
        import onnx
        ops = sorted({n.op_type for n in onnx.load(str(prepared)).graph.node} & {"MatMul", "Gather", "Attention",
                                                                                    "EmbedLayerNormalization"} - set(exclude))
    quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=ops)
    prepared.unlink()


def export_model(folder: Path, overwrite: bool = False, quantize: bool = True, exclude: list[str] = ()) -> Path:
    """Export one finished model folder to <folder>/onnx/ (atomically: written to onnx.partial first)."""
    from models import load_classifier
    folder, out = Path(folder), onnx_dir(folder)
    if is_exported(folder, quantize) and not overwrite:
        log.info("kept %s (exported already; --overwrite=true exports again)", out)
        return out
    model, tok = load_classifier(str(folder))
    tmp = out.with_name("onnx.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_fp32(model, tok, tmp / onnx_runtime.FP32_FILE)
    if quantize:
        quantize_int8(tmp / onnx_runtime.FP32_FILE, tmp / onnx_runtime.INT8_FILE, [e for e in exclude if e])
    model.config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if (folder / "README.md").is_file():
        shutil.copy(folder / "README.md", tmp / "README.md")    # the model card (model_card.py) travels with it
    replace_dir(tmp, out)
    sizes = {f.name: round(f.stat().st_size / 1e6, 1) for f in out.glob("*.onnx")}
    log.info("exported %s: %s MB", out, sizes)
    return out


class OrtClassifier:
    """An ONNX Runtime session behind the interface evaluate_models.measure times: `model(**batch).logits`
    (torch tensors in and out, converted without copies), `.config`, `.to()`, `.eval()`, and `size_mb`."""

    def __init__(self, path: Path, config, threads: int = 0):
        from onnx_runtime import session
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

        from onnx_runtime import run_logits
        logits = run_logits(self.sess, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def finished_models(root: Path) -> list[Path]:
    """The experiment's finished teacher and students (not a `.partial` save)."""
    found = [root / "teacher"] + sorted((root / "students").glob("*"))
    return [p for p in found if is_finished(p) and not p.name.endswith(".partial")]


def check(cfg: dict | None = None) -> list[Path]:
    if MODEL:
        if not is_finished(Path(MODEL)):
            raise UsageError(f"--model {MODEL}: not a finished model folder (config.json, weights, tokenizer, metrics.json)")
        return [Path(MODEL)]
    models = finished_models(Path(OUTPUT_DIR) / EXPERIMENT)
    if not models:
        raise UsageError(f"no finished model under {OUTPUT_DIR}/{EXPERIMENT}/; train first (run_experiment.sh)")
    return models


def main(argv=None) -> list[Path]:
    start_run(globals(), argv, "export", "export.log", check=check)
    return [export_model(folder, OVERWRITE, QUANTIZE, QUANTIZE_EXCLUDE) for folder in check()]


if __name__ == "__main__":
    run_main(main)
