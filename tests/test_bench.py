"""bench.py: the FLOP count by hand, the GPU peak table, and a short run on the tiny model."""
import json

import pytest

import bench
from conftest import tiny_args


def test_model_flops_by_hand():
    # two reviews of 3 and 5 tokens, N = 100, 2 layers of width 8:
    # 6*100*(3+5) + 12*2*8*(9+25) = 4800 + 6528
    assert bench.model_flops([3, 5], 100, 2, 8) == pytest.approx(4800 + 6528)


def test_peak_lookup():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("NVIDIA H200") == 989.4 and bench.peak_tflops("cpu") is None
    assert bench.peak_tflops("NVIDIA H200 NVL") == 835.0
    assert bench.peak_tflops("NVIDIA L40") == 181.0 and bench.peak_tflops("NVIDIA L4") == 121.0
    assert bench.peak_tflops("NVIDIA A10G") is None and bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0


def test_bench_tiny_run(imdb_parquet, tmp_path, monkeypatch):
    args = tiny_args(imdb_parquet, tmp_path, "--model_name=tiny:bert", "--batch_size=8", "--steps=3", "--warmup_steps=1")
    import torch
    threads = torch.get_num_threads()
    try:
        grouped = bench.main(args + ["--peak_tflops=0.001", "--label=grouped", f"--threads={threads + 1}"])
    finally:
        torch.set_num_threads(threads)
    shuffled = bench.main(args + ["--group_by_length=false", "--label=random"])
    assert (grouped["torch_threads"], shuffled["torch_threads"]) == (threads + 1, threads)   # --threads: a shared CPU
    for r in (grouped, shuffled):
        assert r["steps_measured"] == 3 and r["reviews_per_s"] == pytest.approx(3 * 8 / r["seconds"], rel=0.02)   # full batches; seconds rounded to ms
        assert r["tokens_per_s"] / r["reviews_per_s"] == pytest.approx(r["mean_tokens"]) and 5 < r["mean_tokens"] <= 64
        assert 0 < r["seconds"] <= r["wall_s"] + 0.05 and 0 < r["step_s_median"] <= r["seconds"]
        assert 0 <= r["padding_fraction"] < 1 and (r["other_cores_busy"] is None or r["other_cores_busy"] >= 0)
    assert grouped["padding_fraction"] < shuffled["padding_fraction"]      # length grouping pads less
    assert grouped["mfu"] == pytest.approx(grouped["model_tflops_per_s"] / 0.001) and shuffled["mfu"] is None
    saved = json.loads((tmp_path / "tiny" / "grouped.json").read_text())    # tiny.toml names the experiment
    assert saved["flops_formula"] == "sum_i 6 N l_i + 12 n_layers d l_i^2" and saved["device"] == "cpu"
    table = (tmp_path / "tiny" / "levers.md").read_text().splitlines()    # both measurements, side by side
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table if line.startswith("| ") and "label" not in line}
    assert set(rows) == {"grouped", "random"} and "### tiny:bert" in table
    assert rows["grouped"][8] == "True" and rows["random"][8] == "False"                   # group_by_length
    assert rows["grouped"][9] == f"{grouped['reviews_per_s']:.1f}" and rows["grouped"][13].startswith(f"{100 * grouped['mfu']:.1f}")
    assert rows["grouped"][14] == str(threads + 1) and rows["random"][14] == str(threads)          # torch threads
    # measured beside other work: said in the log, and in the table's last column
    import training
    monkeypatch.setattr(training.TrainTime, "others", lambda self, world_size=1: 1.5)
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    bench.main(args + ["--label=busy"])
    assert "busy: other processes kept 1.5 of 2 cores busy on average while it trained" in \
        (tmp_path / "tiny" / "logs" / "bench.log").read_text()
    assert "| busy |" in (tmp_path / "tiny" / "levers.md").read_text() and " | 1.50 |" in (tmp_path / "tiny" / "levers.md").read_text()


def test_bench_defaults_are_what_the_training_scripts_use(tmp_path):
    # the "before" of every lever is the training as it runs (a lever of the default changes nothing)
    from configurator import configure
    from training import training_arguments
    default = configure(vars(bench), [], "bench")      # the defaults (a test's bench.main leaves its flags set)
    args = training_arguments(tmp_path, epochs=1, batch_size=8, learning_rate=1e-4, eval_batch_size=8, seed=0)
    assert default["OPTIMIZER"] == getattr(args.optim, "value", args.optim) == "adamw_torch_fused"
    assert default["GROUP_BY_LENGTH"] == (args.train_sampling_strategy == "group_by_length")
    assert default["NUM_WORKERS"] == args.dataloader_num_workers and default["COMPILE"] == args.torch_compile
