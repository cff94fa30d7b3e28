"""Training-throughput benchmark: how fast the Trainer trains a model here, and how much of the device
it uses. For choosing batch size, attention kernel, torch.compile, fused AdamW, data-loader settings and
length grouping by measurement, one lever at a time, on the machine the training will run on.

Trains MODEL_NAME for WARMUP_STEPS + STEPS optimizer steps on IMDb train reviews (tokenized as the
training scripts do) with the project's own TrainingArguments (training.training_arguments, with the
levers below replacing theirs; no evaluation, no checkpoints), and reports over the STEPS after the
warm-up:
  reviews/s, tokens/s    real (non-padding) tokens per second
  padding fraction       padding tokens / all tokens of the padded batches
  MFU                    model FLOPs per second / the device's peak, with
                         model FLOPs per step = sum over its reviews of 6 N l + 12 n_layers d l^2
                         (N parameters outside the embeddings, l the review's real tokens, d the hidden
                         size: forward + backward of the matmuls and of attention, PaLM's count); the peak
                         is PEAK_TFLOPS, else the dense bf16/fp16 peak of a known GPU; none on CPUs.
Reads  IMDb (IMDB_DIR / --data_dir, else the hub) and the model (hub id, folder or tiny:bert).
Writes OUTPUT_DIR/EXPERIMENT/<LABEL>.json (outputs/bench/ by default; with --config, that experiment's
       folder): settings, device, the attention kernel actually used, figures; and one line on stdout;
       OUTPUT_DIR/EXPERIMENT/levers.md: every measurement of that folder in one table per model (fastest
       first), so a series of runs that each change one lever reads as before and after.
MFU needs the device's peak: known GPUs are looked up (GPU_PEAKS); elsewhere give --peak_tflops.

    python bench.py --model_name=sentence-transformers/all-mpnet-base-v2 --batch_size=32 --max_length=512
    python bench.py --model_name=sentence-transformers/all-mpnet-base-v2 --batch_size=64 --compile=true --label=compile
    python bench.py --model_name=sentence-transformers/all-mpnet-base-v2 --optimizer=adamw_torch   # unfused AdamW
    python bench.py --model_name=tiny:bert --steps=5 --max_length=64 --head_tokens=16   # a smoke run, CPU
"""
from pathlib import Path

import numpy as np

from configurator import log, public_config, run_main, start_run
from data_utils import atomic_path, imdb_sources, load_imdb, read_json, stratified_indices, write_json
from models import PadCollator, count_parameters, default_device, load_classifier, tokenize_dataset

# --- I/O ---------------------------------------------------------------------------------------
EXPERIMENT: str = "bench"         # logs to OUTPUT_DIR/EXPERIMENT/logs/, results to OUTPUT_DIR/EXPERIMENT/<LABEL>.json
OUTPUT_DIR: str = "outputs"
CACHE_DIR: str = "outputs/cache"  # tokenized reviews (keyed by content)
DATA_DIR: str = ""                # local IMDb copy; "" = $IMDB_DIR, else the hub
DATASET_NAME: str = "stanfordnlp/imdb"
LABEL: str = ""                   # name of this measurement; "" = model and settings
# --- data --------------------------------------------------------------------------------------
MAX_LENGTH: int = 512             # tokens per review, special tokens included
TRUNCATION: str = "head+tail"     # head | tail | head+tail
HEAD_TOKENS: int = 128            # head+tail: tokens kept from the start
# --- model -------------------------------------------------------------------------------------
MODEL_NAME: str = "sentence-transformers/all-mpnet-base-v2"  # hub id, folder, or tiny:bert / tiny:roberta
ATTENTION: str = "sdpa"           # sdpa | eager (the attention kernel)
# --- training levers ---------------------------------------------------------------------------
BATCH_SIZE: int = 32              # per device
STEPS: int = 30                   # optimizer steps measured
WARMUP_STEPS: int = 5             # optimizer steps run first and not measured
GROUP_BY_LENGTH: bool = True      # length-grouped batches (less padding) as the training scripts use
COMPILE: bool = False             # torch.compile the model
OPTIMIZER: str = "adamw_torch_fused"  # adamw_torch_fused (as the training scripts) | adamw_torch (unfused: the lever's before)
NUM_WORKERS: int = 0              # data-loader worker processes
PIN_MEMORY: bool = True           # pinned host memory for batches (GPUs only)
PEAK_TFLOPS: float = 0.0          # the device's peak for MFU; 0 = a known GPU's dense bf16 peak, none on CPUs
# --- system ------------------------------------------------------------------------------------
SEED: int = 42
THREADS: int = 0                  # torch CPU threads; 0 = torch's default (all cores; fewer on a shared CPU)

# dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity), first match of the device name wins
GPU_PEAKS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("GH200", 989.4), ("H200 NVL", 835.0),
             ("H200", 989.4), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0))


def model_flops(lengths, n_params: int, n_layers: int, hidden: int) -> float:
    """Training FLOPs (forward + backward) of one pass over reviews of real lengths `lengths`:
    sum_i 6 N l_i + 12 n_layers d l_i^2 (PaLM, Chowdhery et al. 2022, appendix B)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return float((6 * n_params * lengths + 12 * n_layers * hidden * lengths ** 2).sum())


def non_embedding_parameters(model) -> int:
    """Parameters outside the embedding tables (lookups, not matmuls)."""
    return count_parameters(model) - sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")


def peak_tflops(device_name: str) -> float | None:
    """PEAK_TFLOPS, else the listed peak of the GPU whose name holds a GPU_PEAKS key as whole words (an L40 is
    not an L4, nor an A10G an A10), else None."""
    import re
    if PEAK_TFLOPS:
        return PEAK_TFLOPS
    return next((peak for key, peak in GPU_PEAKS if re.search(rf"\b{re.escape(key)}\b", device_name)), None)


def counting_trainer(**kwargs):
    """A Trainer that records, for every training step, the real token count of each row and the padded size
    of the batch (as `trainer.batches`: [(row lengths as a tensor on the batch's device, padded tokens)])."""
    from training import MeanLossTrainer

    class Counting(MeanLossTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs["attention_mask"]   # on the GPU already: its row sums are read after training, not per step
            self.batches.append((mask.sum(1), mask.numel()))
            return super().training_step(model, inputs, num_items_in_batch)
    trainer = Counting(**kwargs)
    trainer.batches = []
    return trainer


def bench_label(attention: str) -> str:
    """LABEL, else a name made of the model and the levers (batch, length, attention, compile, optimizer, workers,
    sampler), so that runs changing one lever each are saved side by side."""
    return LABEL or f"{MODEL_NAME.split('/')[-1].replace(':', '-')}-bs{BATCH_SIZE}-len{MAX_LENGTH}-{attention}" + \
        ("-compile" if COMPILE else "") + ("" if OPTIMIZER == "adamw_torch_fused" else f"-{OPTIMIZER}") + \
        (f"-w{NUM_WORKERS}" if NUM_WORKERS else "") + ("" if GROUP_BY_LENGTH else "-random")


def bench_data(tok):
    """Enough stratified IMDb train reviews for every step, tokenized as the training scripts do."""
    train = load_imdb(("train",), DATA_DIR, DATASET_NAME)["train"]
    train = train.select(stratified_indices(train["label"], (WARMUP_STEPS + STEPS) * BATCH_SIZE, SEED))
    return tokenize_dataset(train, tok, MAX_LENGTH, TRUNCATION, HEAD_TOKENS, CACHE_DIR, "bench")


def run_steps(model, tok, data, device: str):
    """Train WARMUP_STEPS + STEPS steps; (trainer with its batches, StepTimer, TrainTime around the whole call)."""
    from training import StepTimer, TrainTime, training_arguments
    args = training_arguments(Path(OUTPUT_DIR) / EXPERIMENT / "checkpoints", epochs=1, batch_size=BATCH_SIZE,
                              learning_rate=2e-5, eval_batch_size=BATCH_SIZE, seed=SEED, logging_steps=10 ** 6,
                              num_workers=NUM_WORKERS, max_steps=WARMUP_STEPS + STEPS, eval_strategy="no",
                              save_strategy="no", load_best_model_at_end=False, torch_compile=COMPILE, optim=OPTIMIZER,
                              dataloader_pin_memory=PIN_MEMORY and device == "cuda",
                              train_sampling_strategy="group_by_length" if GROUP_BY_LENGTH else "random",
                              disable_tqdm=True)
    timer = StepTimer()
    trainer = counting_trainer(model=model, args=args, train_dataset=data, data_collator=PadCollator(tok),
                               processing_class=tok, callbacks=[timer])
    clock = TrainTime()
    trainer.train()
    return trainer, timer, clock


def figures(trainer, timer, clock, model, device: str, device_name: str) -> dict:
    """Throughput, padding and MFU over the last STEPS steps (the first step is never in timer.steps)."""
    import torch

    from training import pick_precision
    measured, step_s = trainer.batches[-STEPS:], timer.steps[-STEPS:]
    seconds = float(np.sum(step_s))
    lengths = [l for ls, _ in measured for l in ls.tolist()]
    real, padded = sum(lengths), sum(n for _, n in measured)
    n_params = non_embedding_parameters(model)
    flops = model_flops(lengths, n_params, model.config.num_hidden_layers, model.config.hidden_size)
    peak = peak_tflops(device_name)
    return {"model": MODEL_NAME, "device": device, "device_name": device_name,
            "precision": next(iter(pick_precision()), "fp32"), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "steps_measured": len(step_s), "seconds": round(seconds, 3), "wall_s": round(clock.elapsed(), 1),
            "first_step_s": timer.first, "step_s_median": float(np.median(step_s)), "other_cores_busy": clock.others(trainer.args.world_size),
            "reviews_per_s": len(lengths) / seconds, "tokens_per_s": real / seconds, "padding_fraction": 1 - real / padded,
            "mean_tokens": real / len(lengths), "non_embedding_parameters": n_params,
            "model_tflops_per_s": flops / seconds / 1e12, "peak_tflops": peak,
            "mfu": flops / seconds / 1e12 / peak if peak else None, "flops_formula": "sum_i 6 N l_i + 12 n_layers d l_i^2"}


LEVER_COLUMNS = (("label", "{}"), ("device_name", "{}"), ("precision", "{}"), ("batch_size", "{}"), ("attention", "{}"),
                 ("compile", "{}"), ("optimizer", "{}"), ("num_workers", "{}"), ("group_by_length", "{}"),
                 ("reviews_per_s", "{:.1f}"), ("tokens_per_s", "{:,.0f}"), ("padding_fraction", "{:.1%}"),
                 ("step_s_median", "{:.4f}"), ("mfu", "{:.1%}"), ("torch_threads", "{}"),
                 ("other_cores_busy", "{:.2f}"))


def lever_table(folder: Path) -> str:
    """Markdown: every measurement saved in `folder` (<label>.json), one row each, grouped by model and sorted by
    throughput, so that each lever's before and after stand side by side."""
    runs = [read_json(p) for p in sorted(folder.glob("*.json"))]
    runs = sorted((r | {k: r["config"].get(k) for k in ("batch_size", "compile", "optimizer", "num_workers", "group_by_length")}
                   for r in runs if "reviews_per_s" in r), key=lambda r: (r["model"], -r["reviews_per_s"]))
    lines = []
    for model in dict.fromkeys(r["model"] for r in runs):
        lines += [f"\n### {model}\n", "| " + " | ".join(k for k, _ in LEVER_COLUMNS) + " |", "|" + "---|" * len(LEVER_COLUMNS)]
        lines += ["| " + " | ".join("" if r.get(k) is None else f.format(r[k]) for k, f in LEVER_COLUMNS) + " |"
                  for r in runs if r["model"] == model]
    return f"# Training speed, lever by lever (bench.py; {len(runs)} measurements in {folder})\n" + "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    cfg = start_run(globals(), argv, "bench", "bench.log", check=lambda _: imdb_sources(("train",), DATA_DIR))
    import torch
    from transformers import set_seed
    set_seed(SEED)
    device = default_device()
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"

    # 1. the model (with the ATTENTION asked for) and its tokenized reviews
    model, tok = load_classifier(MODEL_NAME, SEED)
    model.set_attn_implementation(ATTENTION)     # a model without SDPA support stays eager (recorded below)
    attention = model.config._attn_implementation
    data = bench_data(tok)

    # 2. train WARMUP_STEPS + STEPS steps, recording the real and padded tokens of every batch
    trainer, timer, clock = run_steps(model, tok, data, device)

    # 3. figures over the measured steps, saved
    label = bench_label(attention)
    result = {"label": label, "attention": attention} | figures(trainer, timer, clock, model, device, device_name) | \
        {"config": public_config(cfg)}
    folder = Path(OUTPUT_DIR) / EXPERIMENT
    from training import warn_if_cpu_shared
    warn_if_cpu_shared(folder / label, result["other_cores_busy"])      # a shared CPU's figures are not the machine's
    write_json(folder / f"{label}.json", result)
    with atomic_path(folder / "levers.md") as tmp:    # every measurement of the folder side by side
        tmp.write_text(lever_table(folder))
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (no peak for this device)"
    line = (f"{label} on {device_name} ({result['precision']}): {result['reviews_per_s']:.1f} reviews/s, "
            f"{result['tokens_per_s']:,.0f} tokens/s, padding {100 * result['padding_fraction']:.1f}%, "
            f"{result['model_tflops_per_s']:.2f} TFLOP/s, MFU {mfu}")
    log.info("%s", line)
    print(line)
    return result


if __name__ == "__main__":
    run_main(main)
