"""Export an experiment's finished models to ONNX: fp32 and ONNX Runtime dynamic int8, next to each model.

Reads  outputs/<EXPERIMENT>/teacher/ and outputs/<EXPERIMENT>/students/*/ (finished model folders), or
       one folder with --model.
Writes <model>/onnx/: model.onnx (fp32), model_quantized.onnx (int8 weights, activations quantized on
       the fly by ONNX Runtime), config.json and the tokenizer files: the layout of optimum's
       ORTModelForSequenceClassification (loading it with optimum is not tested here), which inference.py
       takes as --model.

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

from pathlib import Path

from configurator import UsageError, run_main, start_run
from models import is_finished
from onnx_runtime import export_model

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT = "paper"              # exports OUTPUT_DIR/EXPERIMENT/{teacher,students/*}
OUTPUT_DIR = "outputs"
MODEL = ""                        # one model folder instead of a whole experiment
OVERWRITE = False                 # export again even where <model>/onnx/ is complete
# --- quantization ------------------------------------------------------------------------------
QUANTIZE = True                   # also write the int8 model (ONNX Runtime dynamic quantization)
QUANTIZE_EXCLUDE = [""]           # ONNX operator types left in fp32 (e.g. Gather: the embedding table); [""] = none


def finished_models(root: Path) -> list[Path]:
    """The experiment's finished teacher and students (not a `.partial` save)."""
    found = [root / "teacher"] + sorted((root / "students").glob("*"))
    return [p for p in found if is_finished(p) and not p.name.endswith(".partial")]


def check(cfg: dict | None = None) -> list[Path]:
    if MODEL:
        if not is_finished(Path(MODEL)):
            what = "not a finished model folder (config.json, weights, tokenizer, metrics.json)" if Path(MODEL).is_dir() \
                else "no such folder"
            have = ", ".join(map(str, finished_models(Path(OUTPUT_DIR) / EXPERIMENT))) or f"none in {OUTPUT_DIR}/{EXPERIMENT}/"
            raise UsageError(f"--model {MODEL}: {what}; finished models of --experiment={EXPERIMENT}: {have}")
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
