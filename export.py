"""Export an experiment's finished models to ONNX: fp32 and ONNX Runtime dynamic int8, next to each model.

Reads  outputs/<EXPERIMENT>/teacher/ and outputs/<EXPERIMENT>/students/*/ (finished model folders), or
       one folder with --model (then the log and the lock are those of the experiment it belongs to).
Writes <model>/onnx/: model.onnx (fp32), model_quantized.onnx (int8 weights, activations quantized on
       the fly by ONNX Runtime), config.json, the tokenizer files and the model card (README.md: the model's,
       with this folder's usage): the layout of optimum's
       ORTModelForSequenceClassification (loading it with optimum is not tested here), which inference.py
       takes as --model.

    python export.py --config configs/quick.toml                  # every finished model of `quick`
    python export.py --model=outputs/quick/students/L3            # one model
    python export.py --config configs/quick.toml --models=L3,L1   # some models of `quick`, by name
    python inference.py --model outputs/quick/students/L3/onnx "I loved it"

Why torch.onnx.export and not optimum: optimum-onnx (0.1.0, the newest on the package index) requires
transformers < 4.58 and this project uses transformers 5, so the maintained exporter of torch itself is
used (torch.export-based, `dynamo=True`; the TorchScript one is deprecated), and int8 quantization is
onnxruntime.quantization.quantize_dynamic, which is what optimum's ORTQuantizer runs underneath.
A finished export (both files) is kept unless OVERWRITE; one whose int8 file was made with other QUANTIZE_* settings
(its export.json) is refused.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from configurator import UsageError, log, run_main, start_run
from data_utils import read_json
from model_card import card_after_export
from models import experiment_of, finished_models, is_finished, saved_models
from onnx_runtime import export_model, is_onnx_folder

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT: str = "paper"         # exports OUTPUT_DIR/EXPERIMENT/{teacher,students/*}
OUTPUT_DIR: str = "outputs"
MODEL: str = ""                   # one model folder instead of a whole experiment
MODELS: list = [""]               # only these models of the experiment (teacher, student names); [""] = all
OVERWRITE: bool = False           # export again even where <model>/onnx/ is complete
# --- quantization ------------------------------------------------------------------------------
QUANTIZE: bool = True             # also write the int8 model (ONNX Runtime dynamic quantization)
QUANTIZE_EXCLUDE: list = [""]     # ONNX operator types left in fp32 (e.g. Gather: the embedding table); [""] = none
QUANTIZE_PER_CHANNEL: bool = True # int8 weights with a scale per output channel (false: one per tensor)
QUANTIZE_REDUCE_RANGE: bool = True  # int8 weights in 7 bits (no overflow on CPUs without VNNI; README, Deployment)


def check(cfg: dict | None = None) -> list[Path]:
    global OUTPUT_DIR, EXPERIMENT
    import onnx
    unknown = [e for e in QUANTIZE_EXCLUDE if e and not onnx.defs.has(e)]
    if unknown:
        raise UsageError(f"--quantize_exclude: {unknown[0]!r} is no ONNX operator type; use names such as Gather, MatMul "
                         f"(case matters)")
    if QUANTIZE and {"MatMul", "Gather"} <= set(QUANTIZE_EXCLUDE):    # all an exported encoder has to quantize
        raise UsageError(f"--quantize_exclude={','.join(QUANTIZE_EXCLUDE)} leaves no operator to quantize; exclude fewer, "
                         f"or set --quantize=false for no int8 model")
    if MODEL and any(MODELS):
        raise UsageError(f"--model={MODEL} and --models={','.join(MODELS)}: give one folder with --model, or names of "
                         f"the experiment's models with --models")
    if MODEL:
        root = experiment_of(Path(MODEL).resolve())
        if is_onnx_folder(Path(MODEL)) and is_finished(Path(MODEL).parent):
            raise UsageError(f"--model {MODEL} is already an ONNX export, of {Path(MODEL).parent}; --model="
                             f"{Path(MODEL).parent} --overwrite=true exports that model again")
        if not is_finished(Path(MODEL)):
            what = "not a finished model folder (config.json, weights, tokenizer, metrics.json)" if Path(MODEL).is_dir() \
                else "no such folder"
            near = nearest_experiment(Path(MODEL))
            have = ", ".join(str(shown(m, MODEL)) for m in finished_models(near)) or "none"
            raise UsageError(f"--model {MODEL}: {what}; finished models in {shown(near, MODEL)}: {have}")
        OUTPUT_DIR, EXPERIMENT = str(root.parent), root.name      # start_run logs and locks there
        if cfg is not None:
            cfg.update(OUTPUT_DIR=OUTPUT_DIR, EXPERIMENT=EXPERIMENT)   # and logs them as the run's settings
        return [Path(MODEL)]
    models = finished_models(Path(OUTPUT_DIR) / EXPERIMENT)
    if not models:
        there = sorted({experiment_of(p).name for p in saved_models(OUTPUT_DIR)})
        raise UsageError(f"no finished model under {OUTPUT_DIR}/{EXPERIMENT}/; train first (run_experiment.sh)" +
                         (f", or name one of the experiments with finished models ({', '.join(there)}) with "
                          f"--config=configs/<it>.toml or --experiment=<it>, or one model with --model=PATH" if there else ""))
    return picked(models)


def nearest_experiment(path: Path) -> Path:
    """The experiment folder holding finished models that `path` lies in or under (its own experiment, for a
    folder such as <exp>/teacher_logits), else the default one (OUTPUT_DIR/EXPERIMENT)."""
    for p in [path.resolve(), *path.resolve().parents][:4]:
        if finished_models(experiment_of(p)):
            return experiment_of(p)
    return Path(OUTPUT_DIR) / EXPERIMENT


def shown(path: Path, typed: str) -> Path:
    """`path` written as the user wrote `typed`: relative to the current folder, or absolute."""
    return Path(path).resolve() if Path(typed).is_absolute() else Path(os.path.relpath(Path(path).resolve()))


def picked(models: list[Path]) -> list[Path]:
    """The finished `models` that MODELS names (all for [""]); a UsageError for a name that is none of them."""
    names = [n for n in MODELS if n]
    unknown = [n for n in names if n not in {m.name for m in models}]
    if unknown:
        raise UsageError(f"--models: no finished model {unknown[0]!r} in {Path(OUTPUT_DIR) / EXPERIMENT}; finished: "
                         f"{', '.join(m.name for m in models)}")
    return [m for m in models if not names or m.name in names]


def main(argv=None) -> list[Path]:
    start_run(globals(), argv, "export", "export.log", check=check)
    exports, replaced = [], []
    for folder in check():
        record = folder / "onnx" / "export.json"
        before = record.stat().st_mtime_ns if record.is_file() else None
        exports.append(export_model(folder, OVERWRITE, QUANTIZE, QUANTIZE_EXCLUDE, QUANTIZE_PER_CHANNEL, QUANTIZE_REDUCE_RANGE))
        # the model's card names its export; <folder>/onnx/README.md: that card with this folder's usage (a kept
        # export's too); a new export's old ONNX figures dropped from both
        fresh = record.is_file() and record.stat().st_mtime_ns != before
        card_after_export(folder, fresh=fresh)
        if fresh and before is not None:
            replaced.append(folder)
    warn_if_measured_before(replaced)
    return exports


def warn_if_measured_before(folders: list[Path]) -> None:
    """A warning when the experiment's results (results.md / results.json) hold ONNX rows of models exported again
    just now: those rows measured the files these replaced (the cards dropped theirs), until an evaluation measures
    the new ones."""
    if not folders:
        return
    results = experiment_of(folders[0].resolve()) / "results.json"
    found = read_json(results) if results.is_file() else {}
    names = {f.name for f in folders}
    stale = sorted({r["model"] for r in found.get("rows", []) if r.get("model") in names
                    and str(r.get("precision", "")).startswith("onnx")})
    if stale:
        cf = found.get("config", {}).get("config_file")
        how = f"--config {shlex.quote(cf)}" if cf else \
            f"--output_dir={shlex.quote(str(results.parent.parent))} --experiment={shlex.quote(results.parent.name)}"
        log.warning("%s: its ONNX rows of %s measured the files exported before; evaluate the experiment again to "
                    "measure these: python evaluate_models.py %s --onnx=true (with the other flags it was evaluated "
                    "with)", results, ", ".join(stale), how)


if __name__ == "__main__":
    run_main(main)
