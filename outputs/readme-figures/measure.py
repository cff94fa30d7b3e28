"""The README's figures that no experiment folder records, measured or recomputed here, each into figures-results.json beside
this file with the command, machine, commit and date of its measurement (README.md in this folder says which README
passage each one backs). One section a name; with none named, all run.

  stats        paired t-tests over seeds of the published gains, from the committed results.json files (seconds)
  sizes        MiniLM-L6's word-embedding table, from its config (seconds)
  leaks        IMDb's duplicate counts at seed 42, 2,500 validation reviews, the unsupervised split as transfer (~1 min)
  imports      a fresh process's `import torch` + transformers' Trainer, 5 times (~1 min)
  offline      a cached tokenizer loaded with HF_HUB_OFFLINE unset on a machine without the hub, and with
               configurator's check first (~2 min; only where the hub is unreachable)
  smoke        from a finished `configs/smoke.toml` run (SMOKE, its folder): its export's ONNX/torch difference,
               inference.py's command time on the ONNX export and on the torch folder of its student L2, and the
               ONNX card's plain-onnxruntime block against inference.py on 300 IMDb test reviews with torch
               blocked (~3 min)
  bench_noise  bench.py's same settings three times in one process, twice (~3 min)
  shared_cpu   the smoke teacher's first steps beside a process keeping one core busy, at 2, 1 and auto threads (~2 min)
  evaluate_again  the smoke run's evaluation run again over the same models: accuracy, macro F1, throughput,
               first and again (~1 min; last, as it rewrites the smoke run's results)

    export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1
    bash run_experiment.sh configs/smoke.toml && python export.py --model=outputs/smoke/students/L2
    python outputs/readme-figures/measure.py                    # every section
    python outputs/readme-figures/measure.py stats leaks        # some
"""
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
SMOKE = ROOT / "outputs" / "smoke"          # a finished smoke run (section smoke)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
CARD_REVIEWS = 300                           # IMDb test reviews for the card block's check (seed 0)


def seconds(cmd: list[str], env: dict | None = None, runs: int = 1) -> list[float]:
    """Wall seconds of `runs` runs of `cmd` from the checkout (each must exit 0)."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        out.append(round(time.perf_counter() - t, 2))
    return out


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def gain_test(gains: list[float]) -> dict:
    """Mean and sd (ddof 1) of paired gains (points), t = mean / (sd / sqrt(n)) and its two-sided p (evaluate_models)."""
    from evaluate_models import paired_t_p
    pts = [100 * g for g in gains]
    sd = statistics.stdev(pts)
    return {"gains_points": [round(g, 2) for g in pts], "mean": round(statistics.mean(pts), 2), "sd": round(sd, 2),
            "t": round(statistics.mean(pts) / (sd / math.sqrt(len(pts))), 2), "p": round(paired_t_p(gains), 4)}


def by_seed(folder: str, kind: str) -> dict:
    """{seed: fp32 test accuracy} of an experiment's published rows of one kind (distilled / baseline)."""
    rows = json.loads((ROOT / "outputs" / folder / "results.json").read_text())["rows"]
    return {r["seed"]: r["accuracy"] for r in rows if r["kind"] == kind and r.get("precision", "fp32") == "fp32"}


def stats() -> dict:
    """Each published seed group's paired gain, and the comparisons across folders the README makes."""
    out = {}
    for f in sorted((ROOT / "outputs").glob("*/results.json")):
        for g in json.loads(f.read_text()).get("groups") or []:
            if g.get("gain") and g["gain"]["n"] > 1:
                out[f"{f.parent.name}/{g['student']}"] = gain_test(g["gain"]["values"])
    for ours, control in (("tweets-scarce", "tweets-scarce-control"), ("tweets-4k", "tweets-4k-control")):
        d, b = by_seed(ours, "distilled"), by_seed(control, "baseline")
        out[f"{ours} distilled - {control} baseline"] = gain_test([d[s] - b[s] for s in sorted(d)])
    d, b = by_seed("tweets", "distilled") | by_seed("tweets-seeds", "distilled"), \
        by_seed("tweets", "baseline") | by_seed("tweets-seeds", "baseline")
    out["tweets seed 42 + tweets-seeds 1-3"] = gain_test([d[s] - b[s] for s in sorted(d)])
    return out


def sizes() -> dict:
    from transformers import AutoConfig
    c = AutoConfig.from_pretrained(MINILM)
    return {"minilm_word_embeddings": {"vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
                                       "parameters": c.vocab_size * c.hidden_size}}


def leaks() -> dict:
    from data_utils import DataSpec, load_splits
    splits = load_splits(DataSpec(data="imdb", val_size=2500, seed=42), transfer=True)
    return {"imdb_seed42_val2500": splits.report | {"train": len(splits.train), "validation": len(splits.validation),
                                                     "transfer_kept": len(splits.transfer)}}


def imports() -> dict:
    return {"import_torch_and_trainer_s": summary(seconds(
        [sys.executable, "-c", "import torch; from transformers import Trainer"], runs=5))}


def offline() -> dict:
    """A cached tokenizer's load without HF_HUB_OFFLINE (huggingface_hub retries the hub) and with the check first."""
    from configurator import offline_if_hub_unreachable
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    probe = [sys.executable, "-c", "import os; os.environ.pop('HF_HUB_OFFLINE', None); why = None\n"
             "if os.environ.get('CHECK'):\n    from configurator import offline_if_hub_unreachable as o; why = o()\n"
             f"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({MINILM!r})"]
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)              # the flags unset, as a user who never heard of them has them
    try:
        why = offline_if_hub_unreachable()
    finally:
        os.environ.clear()
        os.environ.update(before)
    if not why:
        return {"offline_tokenizer": {"skipped": "the hub is reachable here"}}
    return {"offline_tokenizer": {"hub_unreachable": why, "flag_unset_s": seconds(probe, env)[0],
                                  "with_check_s": seconds(probe, env | {"CHECK": "1"})[0]}}


def smoke() -> dict:
    from data_utils import read_json
    student, onnx = SMOKE / "students" / "L2", SMOKE / "students" / "L2" / "onnx"
    if not (onnx / "model.onnx").is_file():
        raise SystemExit(f"error: no {onnx}/model.onnx: run the smoke experiment and "
                         f"`python export.py --model={student.relative_to(ROOT)}` first")
    ask = [sys.executable, "inference.py", "--model"]
    return {"smoke_export_max_abs_diff": {str(f.parent.parent.relative_to(ROOT)): read_json(f)["max_abs_logit_diff"]
                                          for f in sorted(SMOKE.glob("**/onnx/export.json"))},
            "inference_cli_s": {"onnx": summary(seconds(ask + [str(onnx), "I loved it"], runs=7)),
                                "torch": summary(seconds(ask + [str(student), "I loved it"], runs=5)),
                                "model": str(student.relative_to(ROOT))},
            "card_block": card_block(onnx)}


def card_block(onnx: Path) -> dict:
    """The ONNX card's plain-onnxruntime block, run with torch blocked, against inference.py's ONNX path."""
    import numpy as np
    import pandas as pd
    texts = pd.read_parquet(Path(os.environ["IMDB_DIR"]) / "test.parquet")["text"]
    texts = texts.iloc[np.random.default_rng(0).choice(len(texts), CARD_REVIEWS, replace=False)].tolist()
    card = (onnx / "README.md").read_text()
    code = card.split("Without this repository (onnxruntime and tokenizers only):\n\n```python\n", 1)[1].split("\n```", 1)[0]
    run = ("import json, sys; sys.modules['torch'] = None; space = {}\n"       # `import torch` fails in the block
           "exec(open(sys.argv[1]).read(), space)\n"
           "print(json.dumps([space['classify'](t) for t in json.load(open(sys.argv[2]))]))")
    (HERE / ".block.py").write_text(code)
    (HERE / ".texts.json").write_text(json.dumps(texts))
    try:
        theirs = json.loads(subprocess.run([sys.executable, "-c", run, str(HERE / ".block.py"), str(HERE / ".texts.json")],
                                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    finally:
        (HERE / ".block.py").unlink()
        (HERE / ".texts.json").unlink()
    import inference
    ours = inference.predict(texts, model=str(onnx))
    return {"reviews": len(texts), "same_label": sum(a[0] == b["label"] for a, b in zip(theirs, ours)),
            "max_score_diff": max(abs(a[1] - b["score"]) for a, b in zip(theirs, ours))}


def bench_noise() -> dict:
    """MiniLM-L6, batch 8, 128 tokens, 10 steps after 3 of warm-up, entries "a", "b", "c": reviews/s, two processes."""
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("first", "second"):
            subprocess.run([sys.executable, "bench.py", f"--model_names={MINILM}", "--batch_size=8", "--max_length=128", "--head_tokens=32",
                            "--steps=10", "--warmup_steps=3", '--levers=[{label = "a"}, {label = "b"}, {label = "c"}]',
                            f"--output_dir={tmp}", f"--experiment={run}"], cwd=ROOT, check=True, capture_output=True)
            out[run] = [round(json.loads((Path(tmp) / run / f"{x}.json").read_text())["reviews_per_s"], 2) for x in "abc"]
    return {"bench_same_settings_reviews_per_s": out}


def shared_cpu() -> dict:
    """The smoke teacher's first 0.25 epoch (13 steps of 16 reviews, 128 tokens) beside a process spinning on one
    core, at 1 and 2 torch threads and with THREADS = 0 (threads_for_shared_cpu): median step seconds."""
    import tempfile
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for threads in (2, 1, 0):
                subprocess.run([sys.executable, "fine_tuning_teacher.py", "--config", "configs/smoke.toml",
                                "--epochs=0.25", f"--threads={threads}", f"--output_dir={tmp}", f"--experiment=t{threads}"],
                               cwd=ROOT, check=True, capture_output=True)
                m = json.loads((Path(tmp) / f"t{threads}" / "teacher" / "metrics.json").read_text())
                out[f"threads={threads}"] = {"step_s_median": m["step_s_median"], "train_time_s": m["train_time_s"],
                                             "other_cores_busy": m["other_cores_busy"], "val_accuracy": m["val_accuracy"],
                                             "torch_threads": m["process_at_start"]["torch_threads"]}
    finally:
        spin.kill()
    return {"teacher_beside_one_busy_core": out}


def evaluate_again() -> dict:
    """The smoke run's models evaluated a second time, as a rerun of run_experiment.sh does (README, *Measured again*):
    each row's accuracy, macro F1 and throughput (reviews/s), first and again. Rewrites outputs/smoke's results."""
    from data_utils import read_json
    first = read_json(SMOKE / "results.json")["rows"]
    subprocess.run([sys.executable, "evaluate_models.py", "--config", "configs/smoke.toml"], cwd=ROOT, check=True,
                   capture_output=True)
    again = {(r["model"], r["precision"]): r for r in read_json(SMOKE / "results.json")["rows"]}
    return {f"{a['model']} {a['precision']}": {k: [round(a[k], 4), round(b[k], 4)] for k in ("accuracy", "f1", "throughput")}
            for a in first if (b := again.get((a["model"], a["precision"])))}


SECTIONS = {"stats": stats, "sizes": sizes, "leaks": leaks, "imports": imports, "offline": offline, "smoke": smoke,
            "bench_noise": bench_noise, "shared_cpu": shared_cpu, "evaluate_again": evaluate_again}


def machine() -> dict:
    from configurator import code_version
    from evaluate_models import hardware
    hw = hardware("cpu")
    return {"cpu": hw["cpu"], "cpu_count": hw["cpu_count"], "cpu_features": hw["cpu_features"], "torch": hw["torch"],
            "load_average_1min": round(os.getloadavg()[0], 2), "code": code_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def main(names: list[str]) -> None:
    from data_utils import write_json
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"error: no section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}")
    path = HERE / "figures-results.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    failed = []
    for name in names or SECTIONS:
        t = time.perf_counter()
        try:
            found = SECTIONS[name]()
        except (Exception, SystemExit) as e:       # the others still run; this one keeps its earlier figures
            failed.append(name)
            print(f"{name}: failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        figures[name] = {"figures": found} | machine() | {"section_s": round(time.perf_counter() - t, 1)}
        write_json(path, figures)          # atomic, after each section
        print(f"{name}: {json.dumps(found)[:300]}", flush=True)
    if failed:
        raise SystemExit(f"error: sections failed: {', '.join(failed)}")


if __name__ == "__main__":
    main(sys.argv[1:])
