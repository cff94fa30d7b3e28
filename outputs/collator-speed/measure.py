"""The padding collator's speed, models.PadCollator against transformers' DataCollatorWithPadding (tokenizer.pad),
on the same rows: 1,280 IMDb train reviews tokenized by MiniLM to at most 512 tokens, in 40 batches of 32, 5 passes
each, one process. Writes collator-results.json beside this file.

    IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1 python outputs/collator-speed/measure.py
"""
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def rate(fn, batches, rows, passes=5):
    """(median, min, max) rows per second of `fn` over all batches, over `passes` passes."""
    runs = []
    for _ in range(passes):
        t = time.perf_counter()
        for b in batches:
            fn(b)
        runs.append(rows / (time.perf_counter() - t))
    return statistics.median(runs), min(runs), max(runs)


def main():
    import pandas as pd
    import torch
    import transformers
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from configurator import code_version
    from models import PadCollator
    tok = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    texts = pd.read_parquet(Path(os.environ["IMDB_DIR"]) / "train.parquet")["text"][:1280].tolist()
    enc = tok(texts, truncation=True, max_length=512)
    rows = [{"input_ids": enc["input_ids"][i], "label": i % 2} for i in range(len(texts))]
    batches = [rows[i:i + 32] for i in range(0, len(rows), 32)]
    ours, theirs = PadCollator(tok), DataCollatorWithPadding(tok)
    a, b = ours(batches[0]), theirs(batches[0])
    assert (a["input_ids"] == b["input_ids"]).all() and (a["attention_mask"] == b["attention_mask"]).all()
    result = {"rows": len(rows), "batches": len(batches), "batch_size": 32, "passes": 5, "max_length": 512,
              "rows_per_s": {}, "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                             if l.startswith("model name")), platform.processor()),
              "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "torch": torch.__version__,
              "transformers": transformers.__version__, "code": code_version(), "date": time.strftime("%Y-%m-%d")}
    for name, fn in (("PadCollator", ours), ("DataCollatorWithPadding", theirs)):
        med, lo, hi = rate(fn, batches, len(rows))
        result["rows_per_s"][name] = {"median": round(med), "min": round(lo), "max": round(hi)}
        print(f"{name}: {med:,.0f} rows/s median (min {lo:,.0f}, max {hi:,.0f}) over 5 passes")
    (Path(__file__).parent / "collator-results.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
