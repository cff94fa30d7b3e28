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
                         model FLOPs per step = sum over its reviews of 6 N l + 12 n_layers d l^2 + 6 H
                         (N parameters of the encoder's layers, l the review's real tokens, d the hidden
                         size, H those of the pooler and classifier, run on one token of each review:
                         forward + backward of the matmuls and of attention, PaLM's count); the peak
                         is PEAK_TFLOPS, else the dense bf16/fp16 peak of a known GPU; none on CPUs.
A series (MODEL_NAMES x LEVERS) runs in this one process, each measurement with the model loaded afresh and its own
warm-up steps, so that a lever series pays Python's, torch's and CUDA's start-up once (importing torch and transformers' Trainer
took 5.0 s a process on a 2-core Xeon: outputs/readme-figures) rather than per lever; one measurement stopped midway loses only itself, and the same
command again keeps those saved (OVERWRITE measures them again) and goes on.
Reads  IMDb (IMDB_DIR / --data_dir, else the hub) and the models (hub ids, folders or tiny:bert).
Writes FOLDER/<label>.json per measurement: settings, device, the attention kernel actually used, figures, and the
       series' first measurement of the model ("base"); and one line on stdout;
       FOLDER/levers.md: every measurement of that folder in one table per model (fastest first), each with its
       speed-up over its base, so that a series changing one lever at a time reads as before and after.
       FOLDER is OUTPUT_DIR/EXPERIMENT (outputs/bench/ by default); with --config, that experiment's bench/
       subfolder (configs/full-study.toml's [bench]: run_experiment.sh runs it after the study's evaluation).
MFU needs the device's peak: known GPUs are looked up (GPU_PEAKS); elsewhere give --peak_tflops.

    python bench.py --model_name=sentence-transformers/all-mpnet-base-v2 --batch_size=32 --max_length=512
    python bench.py --model_name=sentence-transformers/all-mpnet-base-v2 --batch_size=64 --compile=true --label=compile
    python bench.py --model_names=sentence-transformers/all-MiniLM-L6-v2 \
        --levers='[{}, {batch_size = 64}, {optimizer = "adamw_torch"}, {group_by_length = false}]'   # one series
    python bench.py --model_name=tiny:bert --steps=5 --max_length=64 --head_tokens=16   # a smoke run, CPU
"""
import contextlib
import functools
import os
import re
import sys
from pathlib import Path

import numpy as np

from configurator import UsageError, log, public_config, run_main, start_run
from data_utils import atomic_path, imdb_sources, load_imdb, read_json, write_json
from models import PadCollator, count_parameters, default_device, load_classifier, tokenize_dataset

_SOME_FAILED = 3     # exit status when measurements failed and the others were saved (1: a crash; 2: bad input)
_METHOD = 2          # how reviews are drawn and FLOPs counted (2: nested reviews, the head once a review; 1 Dec 2026):
                     # a saved measurement of another method is not kept as this one's

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
PEAK_TFLOPS: float = 0.0          # one device's peak (TFLOP/s) for MFU; 0 = a known GPU's dense bf16 peak, none on CPUs
# --- a series: one process, each lever change in turn (no start-up, import or CUDA set-up paid per measurement) -----
MODEL_NAMES: list = [""]          # measure each of these models ([""] = MODEL_NAME alone)
LEVERS: list = [{}]               # for each model, one measurement per entry: the settings above with these changed, e.g.
                                  # [{}, {batch_size = 64}, {compile = true}]; each saved as it ends ([{}] = as they are)
MAX_SECONDS: float = 0.0          # start no measurement after this many seconds but the first (0 = no limit); the
                                  # rest are listed
OVERWRITE: bool = False           # measure again what a saved measurement of the same label holds
# --- system ------------------------------------------------------------------------------------
SEED: int = 42
THREADS: int = 0                  # torch CPU threads; 0 = torch's default (all cores, even on a shared CPU: figures compare)

# dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity), first match of the device name wins
GPU_PEAKS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("GH200", 989.4), ("H200 NVL", 835.0),
             ("H200", 989.4), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0))


def model_flops(lengths, n_params: int, n_layers: int, hidden: int, head_params: int = 0) -> float:
    """Training FLOPs (forward + backward) of one pass over reviews of real lengths `lengths`:
    sum_i 6 N l_i + 12 n_layers d l_i^2 + 6 H (PaLM, Chowdhery et al. 2022, appendix B), N = n_params applied to
    every token, H = head_params to one token a review (the pooler and classifier read the first)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return float((6 * n_params * lengths + 12 * n_layers * hidden * lengths ** 2 + 6 * head_params).sum())


HEAD_MODULES = {"pooler", "classifier", "pre_classifier"}   # run on the first token only (BERT, RoBERTa, MPNet, DistilBERT)


def matmul_parameters(model) -> tuple[int, int]:
    """(parameters applied to every token: outside the embedding tables, which are lookups, and the head; those of
    the head: HEAD_MODULES, applied to one token a review)."""
    head = sum(p.numel() for n, p in model.named_parameters() if HEAD_MODULES & set(n.split(".")))
    embeddings = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")
    return count_parameters(model) - embeddings - head, head


def peak_tflops(device_name: str, devices: int = 1) -> float | None:
    """PEAK_TFLOPS (one device's), else the listed peak of the GPU whose name holds a GPU_PEAKS key as whole words
    (an L40 is not an L4, nor an A10G an A10), times `devices` (a lone process training on several GPUs: its steps' FLOPs are
    every GPU's), else None; None for a MIG slice too (its share of the GPU's peak is not in its name's table)."""
    import re
    if PEAK_TFLOPS:
        return PEAK_TFLOPS * devices
    if re.search(r"\bMIG\b", device_name):
        return None
    one = next((peak for key, peak in GPU_PEAKS if re.search(rf"\b{re.escape(key)}\b", device_name)), None)
    return one * devices if one else None


def counting_trainer(warmup_steps: int, **kwargs):
    """A Trainer that records, for every training step, the real token count of each row and the padded size
    of the batch (as `trainer.batches`: [(row lengths as a tensor on the batch's device, padded tokens)]), and that
    trains its first `warmup_steps` batches on reviews of their own (WarmupFirst)."""
    from training import MeanLossTrainer

    class Counting(MeanLossTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs["attention_mask"]   # on the GPU already: its row sums are read after training, not per step
            self.batches.append((mask.sum(1), mask.numel()))
            return super().training_step(model, inputs, num_items_in_batch)

        def _get_train_sampler(self, train_dataset=None):
            data = self.train_dataset if train_dataset is None else train_dataset
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            # the warm-up on the last rows, the measured steps on the first: the rows are a prefix of one seeded
            # order of the reviews (train_reviews), so a larger batch measures the smaller one's reviews and more
            warm = len(data) - warmup_steps * batch
            parts = [np.arange(warm, len(data)), np.arange(warm)]
            return WarmupFirst([(p, self.part_order(data.select(p), batch)) for p in parts if len(p)])

        def part_order(self, data, batch: int):
            """Random batches as the Trainer draws them; grouped ones in mega-batches of up to 50 batches, as a
            training on thousands of reviews gets them (transformers' own choice for a set this small, a quarter of
            its batches, would pad more than the training does)."""
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(data)
            import torch
            from transformers.trainer_pt_utils import get_length_grouped_indices
            return get_length_grouped_indices(data["length"], batch, mega_batch_mult=max(1, min(len(data) // batch, 50)),
                                              generator=torch.Generator().manual_seed(self.args.seed))
    trainer = Counting(**kwargs)
    trainer.batches = []
    return trainer


class WarmupFirst:
    """A sampler that yields the indices of each part in turn, each part in its own order: parts = [(dataset
    indices, the order of those rows as positions in them)]. The warm-up reviews first, then the measured ones,
    each set ordered as a training orders its reviews: over the whole set, a length-grouped order hands out its
    longest batch first and the rest of that mega-batch longest first, so warm-up steps taken from it left the
    measured steps shorter reviews than random batches: 4.8% shorter on average at 5 of 35 steps of 32, 64 or 128
    (simulated with transformers' order on the MiniLM token lengths of 6,000 IMDb train reviews, 200 draws each),
    so grouped rows' reviews/s came out too high; now both measure the same reviews."""

    def __init__(self, parts: list):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(indices) for indices, _ in self.parts)

    def __iter__(self):
        for indices, sampler in self.parts:
            yield from (int(indices[i]) for i in sampler)


# the settings a LEVERS entry may change, and those that make two measurements the same (with the device)
LEVER_NAMES = ("MODEL_NAME", "ATTENTION", "BATCH_SIZE", "STEPS", "WARMUP_STEPS", "GROUP_BY_LENGTH", "COMPILE",
               "OPTIMIZER", "NUM_WORKERS", "PIN_MEMORY", "MAX_LENGTH", "TRUNCATION", "HEAD_TOKENS", "LABEL")
MEASURED = tuple(n for n in LEVER_NAMES if n != "LABEL") + ("SEED", "THREADS", "DATASET_NAME")
DEFAULT_LEVERS = {n: globals()[n] for n in LEVER_NAMES}     # as defined above (read at import, before any override)


def lever_settings(entry: dict, i: int, cfg: dict) -> dict:
    """Entry i of LEVERS as {NAME: value}, typed as the constants are and in their ranges; UsageError naming the
    entry otherwise."""
    from configurator import check_setting_values, coerce, did_you_mean, toml_inline
    where = f"levers entry {i + 1} ({toml_inline(entry)})"
    unknown = [k for k in entry if k.upper() not in LEVER_NAMES]
    if unknown:
        raise UsageError(f"{where}: {unknown[0]!r} is not a lever{did_you_mean(unknown[0], LEVER_NAMES, '')}; the levers "
                         f"are {', '.join(n.lower() for n in LEVER_NAMES)}")
    values = {k.upper(): coerce(k.upper(), v, cfg[k.upper()], where) for k, v in entry.items()}
    check_setting_values({k: v for k, v in cfg.items() if k in LEVER_NAMES} | values,
                         lambda n, v: f"{n.lower()} = {v!r}" + (f" in {where}" if n in values else ""))
    return values


def series(cfg: dict) -> list[tuple[dict, str]]:
    """The measurements, in order: each model of MODEL_NAMES (or MODEL_NAME) with each entry of LEVERS applied, as
    [(the full lever settings {NAME: value for NAME in LEVER_NAMES}, "model {entry}" for messages)]."""
    from configurator import toml_inline
    base = {n: cfg[n] for n in LEVER_NAMES}
    changes = [(lever_settings(entry, i, cfg), toml_inline(entry)) for i, entry in enumerate(LEVERS or [{}])]
    return [(base | {"MODEL_NAME": m} | change, f"{m} {text}") for m in [m for m in MODEL_NAMES if m] or [MODEL_NAME]
            for change, text in changes]


def at_hand(runs: list) -> tuple[list, list[str]]:
    """(the measurements of `runs` whose model's config loads, one line for each model that does not): a series
    measures the models at hand (say, the teacher not staged on a lent GPU) and names the others."""
    missing = {name: why for name in dict.fromkeys(r["MODEL_NAME"] for r, _ in runs) if (why := not_at_hand(name))}
    return [(r, text) for r, text in runs if r["MODEL_NAME"] not in missing], list(missing.values())


@functools.cache
def not_at_hand(name: str) -> str | None:
    """Why model `name`'s config does not load (its one-line UsageError), or None; asked once per process (the
    check before the series and the series itself)."""
    try:
        loaded_config(name)
    except UsageError as e:
        return str(e)
    return None


@functools.cache
def loaded_config(name: str):
    """Model `name`'s transformers config (models.model_config), loaded once per process."""
    from models import model_config
    return model_config(name)


def check_config(cfg: dict) -> None:
    """Before anything is written: the data is there, the series is valid (check_series), and some model of the
    series loads (the first one that does not is the error when none does), each at a max_length its positions hold."""
    from models import check_max_length
    imdb_sources(("train",), DATA_DIR)
    measurable, missing = at_hand(check_series(cfg))
    if not measurable:
        raise UsageError(missing[0])
    for r, _ in measurable:
        check_max_length(loaded_config(r["MODEL_NAME"]), r["MAX_LENGTH"], r["MODEL_NAME"])


def check_series(cfg: dict) -> list[tuple[dict, str]]:
    """The series (series()): every LEVERS entry valid, and a LABEL naming one measurement only; UsageError
    otherwise. run_experiment.sh checks a config's [bench] table with it before the experiment's first step, so that
    a typo there is not found hours later."""
    names = [m for m in MODEL_NAMES if m]
    if names and cfg.get("_sources", {}).get("MODEL_NAME") == "flag" and MODEL_NAME not in names:   # not measured
        if not os.environ.get("KD_ALL_STEPS"):
            raise UsageError(f"--model_name={MODEL_NAME}, but model_names = {names} (the models this series measures) "
                             f"is set too; give --model_names={MODEL_NAME} to measure that model alone")
        log.info("bench measures model_names (%s), not --model_name=%s (the teacher's)", ", ".join(names), MODEL_NAME)
    runs = series(cfg)
    labels = [r["LABEL"] for r, _ in runs if r["LABEL"]]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice:
        raise UsageError(f"label {twice!r} would name {labels.count(twice)} measurements of this series (MODEL_NAMES x LEVERS); "
                         f"leave it out (each is then named by its levers) or give each LEVERS entry its own")
    return runs


def bench_folder(cfg: dict) -> Path:
    """Where measurements go: OUTPUT_DIR/EXPERIMENT; with --config, that experiment's bench/ subfolder, apart from the
    files of its models (results.json, chosen.json, ...)."""
    root = Path(OUTPUT_DIR) / EXPERIMENT
    return root / "bench" if cfg.get("_config_file") else root


def bench_label(attention: str) -> str:
    """LABEL, else a name made of the model (its whole id or path, / as --) and its levers: batch, length and the
    attention kernel used always, each other lever where it is not the default (DEFAULT_LEVERS), so that a series'
    measurements are saved side by side and two of different settings never share a name."""
    suffix = {"COMPILE": "compile", "OPTIMIZER": "{}", "NUM_WORKERS": "w{}", "GROUP_BY_LENGTH": "random",
              "PIN_MEMORY": "unpinned", "TRUNCATION": "{}", "HEAD_TOKENS": "head{}", "STEPS": "steps{}", "WARMUP_STEPS": "warm{}"}
    model = MODEL_NAME.strip("/").replace("/", "--").replace(":", "-")
    return LABEL or "-".join([f"{model}-bs{BATCH_SIZE}-len{MAX_LENGTH}-{attention}"] +
                             [text.format(globals()[n]) for n, text in suffix.items() if globals()[n] != DEFAULT_LEVERS[n]])


@functools.cache
def train_reviews(data_dir: str, dataset_name: str, n: int, seed: int):
    """The first n IMDb train reviews of one seeded order, read once per process: a series asks for the same ones at
    most levers (each read of the 25,000 took about 1 s on a 2-core CPU), and a larger n holds a smaller n's reviews
    (a prefix), so that a batch-size lever measures the same reviews and more, not another sample's lengths (the
    stratified sample this replaced drew each size anew). Labels need no stratifying: speed does not read them."""
    train = load_imdb(("train",), data_dir, dataset_name)["train"]
    return train.select(np.random.default_rng(seed).permutation(len(train))[:n])


def bench_data(tok):
    """Enough IMDb train reviews for every step (train_reviews), tokenized as the training scripts do (cached by content)."""
    from runs import devices_per_process      # a lone process on several GPUs: each step takes a batch on each
    train = train_reviews(DATA_DIR, DATASET_NAME, (WARMUP_STEPS + STEPS) * BATCH_SIZE * devices_per_process(), SEED)
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
    trainer = counting_trainer(WARMUP_STEPS, model=model, args=args, train_dataset=data, data_collator=PadCollator(tok),
                               processing_class=tok, callbacks=[timer])
    clock = TrainTime()
    trainer.train()
    with contextlib.suppress(OSError):     # the Trainer makes its output folder; bench saves nothing there (empty: gone)
        Path(args.output_dir).rmdir()
    return trainer, timer, clock


def figures(trainer, timer, clock, model, device: str, device_name: str) -> dict:
    """Throughput, padding and MFU over the last STEPS steps (the first step is never in timer.steps)."""
    import torch

    from training import pick_precision
    measured, step_s = trainer.batches[-STEPS:], timer.steps[-STEPS:]
    seconds = float(np.sum(step_s))
    lengths = [l for ls, _ in measured for l in ls.tolist()]
    real, padded = sum(lengths), sum(n for _, n in measured)
    n_params, head_params = matmul_parameters(model)
    flops = model_flops(lengths, n_params, model.config.num_hidden_layers, model.config.hidden_size, head_params)
    from runs import devices_per_process
    peak = peak_tflops(device_name, devices_per_process() if device == "cuda" else 1)
    return {"model": MODEL_NAME, "device": device, "device_name": device_name,
            "precision": next(iter(pick_precision()), "fp32"), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "steps_measured": len(step_s), "seconds": round(seconds, 3), "wall_s": round(clock.elapsed(), 1),
            "first_step_s": timer.first, "step_s_median": float(np.median(step_s)), "other_cores_busy": clock.others(trainer.args.world_size),
            "reviews_per_s": len(lengths) / seconds, "tokens_per_s": real / seconds, "padding_fraction": 1 - real / padded,
            "mean_tokens": real / len(lengths), "per_token_parameters": n_params, "head_parameters": head_params,
            "model_tflops_per_s": flops / seconds / 1e12, "peak_tflops": peak,
            "mfu": flops / seconds / 1e12 / peak if peak else None, "flops_formula": "sum_i 6 N l_i + 12 n_layers d l_i^2 + 6 H"}


LEVER_COLUMNS = (("label", "{}"), ("vs base", "{:.2f}x"), ("device_name", "{}"), ("precision", "{}"), ("batch_size", "{}"), ("attention", "{}"),
                 ("compile", "{}"), ("optimizer", "{}"), ("num_workers", "{}"), ("group_by_length", "{}"),
                 ("max_length", "{}"), ("truncation", "{}"), ("reviews_per_s", "{:.1f}"), ("tokens_per_s", "{:,.0f}"),
                 ("mean_tokens", "{:.0f}"), ("padding_fraction", "{:.1%}"),
                 ("step_s_median", "{:.4f}"), ("mfu", "{:.1%}"), ("torch_threads", "{}"),
                 ("other_cores_busy", "{:.2f}"))


def lever_table(folder: Path, failed: list[str] = ()) -> str:
    """Markdown: every measurement saved in `folder` (<label>.json), one row each, grouped by model and sorted by
    throughput, so that each lever's before and after stand side by side; "vs base": reviews/s over those of the
    first measurement of its series (its "base"), where that is in the folder too; then the measurements of the
    last series that failed (`failed`: one line each). A write killed midway (its <label>.tmp<pid>.json) is no
    measurement."""
    files = [f for f in sorted(folder.glob("*.json")) if not re.search(r"\.tmp\d+$", f.stem)]
    runs = {r["label"]: r for r in map(read_json, files) if "reviews_per_s" in r}
    speedup = {label: r["reviews_per_s"] / runs[r["base"]]["reviews_per_s"] for label, r in runs.items() if r.get("base") in runs}
    runs = sorted((r | {k: r["config"].get(k) for k in ("batch_size", "compile", "optimizer", "num_workers", "group_by_length",
                                                             "max_length", "truncation")}
                   | {"vs base": speedup.get(r["label"])} for r in runs.values()), key=lambda r: (r["model"], -r["reviews_per_s"]))
    lines = []
    for model in dict.fromkeys(r["model"] for r in runs):
        lines += [f"\n### {model}\n", "| " + " | ".join(k for k, _ in LEVER_COLUMNS) + " |", "|" + "---|" * len(LEVER_COLUMNS)]
        lines += ["| " + " | ".join("" if r.get(k) is None else f.format(r[k]) for k, f in LEVER_COLUMNS) + " |"
                  for r in runs if r["model"] == model]
    if failed:
        lines += ["\n### Failed in the last series (not measured; tracebacks in the log)\n"] + [f"- {line}" for line in failed]
    count = f"{len(runs)} measurement{'s' * (len(runs) != 1)}"
    return f"# Training speed, lever by lever (bench.py; {count} in {folder})\n" + "\n".join(lines) + "\n"


def kept_measurement(path: Path, settings: dict, device_name: str) -> bool:
    """Whether `path` holds a measurement of these settings on this device and torch build (kept, unless OVERWRITE: a
    series that was stopped goes on where it stopped); UsageError when it holds one of other settings, another device
    or another torch, so that no measurement is replaced silently."""
    import torch
    if OVERWRITE or not path.is_file():
        return False
    old = read_json(path)
    was = {n: old.get("config", {}).get(n.lower()) for n in MEASURED} | {"device": old.get("device_name"), "torch": old.get("torch"),
                                                                         "method": old.get("method", 1)}
    now = {n: settings.get(n, globals()[n]) for n in MEASURED} | {"device": device_name, "torch": torch.__version__,
                                                                  "method": _METHOD}
    changed = [f"{n.lower()} {was[n]!r}, now {now[n]!r}" for n in now if was[n] != now[n]]
    if changed:
        raise UsageError(f"{path} holds a measurement of other settings ({'; '.join(changed)}); --overwrite=true "
                         f"replaces it, or give this one another --label")
    return True


def load_model():
    """(model with the ATTENTION asked for, tokenizer); a model without an SDPA path stays eager (as recorded)."""
    model, tok = load_classifier(MODEL_NAME, SEED)
    model.set_attn_implementation(ATTENTION)
    return model, tok


def measure(cfg: dict, settings: dict, where: tuple, seen: set, kernels: dict, base: str | None) -> dict | None:
    """One measurement of the series: `settings` (LEVER_NAMES) applied to this module's constants, the model loaded
    afresh, trained, its figures saved as <label>.json with `base` (the label of its model's first measurement in
    the series, which levers.md compares it with; None: this is the first). where: (device, device name, folder).
    Returns the figures, or those kept from an earlier run; None when the same settings, with the same attention
    kernel used, were measured earlier in this series (seen: their keys). kernels: (model, attention asked) -> the
    kernel used, learnt by loading the model once, so that a kept measurement is found without loading it."""
    globals().update(settings)
    device, device_name, folder = where
    model = tok = None
    if (MODEL_NAME, ATTENTION) not in kernels:
        model, tok = load_model()
        kernels[(MODEL_NAME, ATTENTION)] = model.config._attn_implementation
    attention = kernels[(MODEL_NAME, ATTENTION)]
    label, key = bench_label(attention), (LABEL, attention) + tuple(globals()[n] for n in MEASURED if n != "ATTENTION")
    if key in seen:
        log.info("%s: the same settings as an earlier measurement of this series (attention used: %s), not repeated",
                 label, attention)
        return None
    seen.add(key)
    if kept_measurement(folder / f"{label}.json", settings, device_name):
        log.info("%s: measured already in %s, kept (--overwrite=true measures it again)", label, folder / f"{label}.json")
        return read_json(folder / f"{label}.json")
    model, tok = (model, tok) if model is not None else load_model()
    trainer, timer, clock = run_steps(model, tok, bench_data(tok), device)
    result = {"label": label, "attention": attention, "base": base or label, "method": _METHOD} | \
        figures(trainer, timer, clock, model, device, device_name) | {"config": public_config(cfg | settings)}
    from training import warn_if_cpu_shared
    warn_if_cpu_shared(folder / label, result["other_cores_busy"])      # a shared CPU's figures are not the machine's
    write_json(folder / f"{label}.json", result)
    return result


def measure_or_fail(cfg: dict, settings: dict, where: tuple, state: tuple, base: str | None) -> dict | None:
    """measure(), but a measurement that fails (out of GPU memory at a large batch, torch.compile failing on this
    torch) is logged with its traceback and added to `failed` as one line, and the series goes on: one lever must not
    cost the others. state: (seen, kernels, failed, "model {entry}" of this measurement). A full disk still ends it."""
    from configurator import disk_full
    seen, kernels, failed, text = state
    try:
        return measure(cfg, settings, where, seen, kernels, base)
    except Exception as e:
        if isinstance(e, UsageError) or disk_full(e):    # bad input, or nothing more can be saved
            raise
        failed.append(f"{text}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}")
        log.warning("failed, the series goes on: %s", failed[-1], exc_info=True)
        return None


def release(compiled: bool) -> None:
    """Free what the last measurement held (its Trainer and model, compiled graphs, cached GPU memory) so that it
    does not slow or crowd the next."""
    import gc

    import torch
    gc.collect()
    if compiled:
        torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def report(result: dict) -> None:
    """One line per measurement, in the log file and on stdout (once on a terminal: not also the console log)."""
    import logging
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (no peak for this device)"
    line = (f"{result['label']} on {result['device_name']} ({result['precision']}): {result['reviews_per_s']:.1f} reviews/s, "
            f"{result['tokens_per_s']:,.0f} tokens/s, padding {100 * result['padding_fraction']:.1f}%, "
            f"{result['model_tflops_per_s']:.2f} TFLOP/s, MFU {mfu}")
    logging.getLogger("kd.file").info("%s", line)
    print(line, flush=True)


def main(argv=None) -> list[dict]:
    cfg = start_run(globals(), argv, "bench", "bench.log", check=check_config)
    import time

    import torch
    from transformers import set_seed
    device = default_device()
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    folder, (runs, missing), start = bench_folder(cfg), at_hand(series(cfg)), time.monotonic()
    for line in missing:
        log.warning("not measured: %s", line)

    # 1. each measurement in turn (MODEL_NAMES x LEVERS), none started after MAX_SECONDS; 2. each saved as it ends,
    # with levers.md: every measurement of the folder side by side, each beside the first of its model in this series
    results, failed, bases, seen, kernels = [], [], {}, set(), {}
    for i, (settings, text) in enumerate(runs):
        if MAX_SECONDS and i and time.monotonic() - start > MAX_SECONDS:
            log.warning("MAX_SECONDS = %g reached after %d of %d measurements; not measured: %s", MAX_SECONDS, i, len(runs),
                        "; ".join(text for _, text in runs[i:]))
            break
        set_seed(SEED)
        result = measure_or_fail(cfg, settings, (device, device_name, folder), (seen, kernels, failed, text),
                                 bases.get(settings["MODEL_NAME"]))
        release(settings["COMPILE"])
        if result is not None:
            bases.setdefault(settings["MODEL_NAME"], result["label"])
            results.append(result)
            report(result)
        with atomic_path(folder / "levers.md") as tmp:
            tmp.write_text(lever_table(folder, failed))
    if failed:     # what was measured is saved: the same command keeps it and tries the rest again
        print(f"error: {len(failed)} measurement(s) of this series failed ({'; '.join(failed)}); what was measured is "
              f"saved in {folder}, and the same command keeps it and tries the rest again (tracebacks: the log)",
              file=sys.stderr)
        raise SystemExit(_SOME_FAILED)
    return results


if __name__ == "__main__":
    run_main(main)
