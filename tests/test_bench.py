"""bench.py: the FLOP count by hand, the GPU peak table, and a short run on the tiny model."""
import json
import re

import pytest

import bench
from configurator import UsageError
from conftest import tiny_args, write_parquet
from data_utils import load_imdb
from models import load_classifier


def test_model_flops_by_hand():
    # two reviews of 3 and 5 tokens, N = 100, 2 layers of width 8:
    # 6*100*(3+5) + 12*2*8*(9+25) = 4800 + 6528
    assert bench.model_flops([3, 5], 100, 2, 8) == pytest.approx(4800 + 6528)
    # and a head of 10 parameters on one token of each: + 6*10*2
    assert bench.model_flops([3, 5], 100, 2, 8, 10) == pytest.approx(4800 + 6528 + 120)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_the_head_is_counted_once_a_review_and_the_embeddings_not_at_all(kind):
    from models import build_tiny
    model, _ = build_tiny(kind, labels=["neg", "neu", "pos"])
    d = model.config.hidden_size
    head = d * d + d + d * 3 + 3                       # BERT: pooler + classifier; RoBERTa: its head's dense + out_proj
    encoder = model.config.num_hidden_layers * (4 * d * d + 4 * d + 2 * d * model.config.intermediate_size
                                                + model.config.intermediate_size + d + 2 * 2 * d)   # + 2 layer norms
    assert bench.matmul_parameters(model) == (encoder, head)


def test_peak_lookup():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("NVIDIA H200") == 989.4 and bench.peak_tflops("cpu") is None
    assert bench.peak_tflops("NVIDIA H200 NVL") == 835.0
    assert bench.peak_tflops("NVIDIA L40") == 181.0 and bench.peak_tflops("NVIDIA L4") == 121.0
    assert bench.peak_tflops("NVIDIA A10G") is None and bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", devices=4) == 4 * 989.4     # DataParallel: every GPU's FLOPs
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3 MIG 1g.10gb") is None          # a slice: its peak is not listed


def test_a_peak_given_is_one_devices(monkeypatch):
    monkeypatch.setattr(bench, "PEAK_TFLOPS", 100.0)
    assert bench.peak_tflops("cpu") == 100.0 and bench.peak_tflops("NVIDIA H100 80GB HBM3", devices=2) == 200.0


def test_bench_tiny_series(tmp_path, monkeypatch, capsys):
    # one process, two measurements (length-grouped, then random batches), each saved as it ends; 160 reviews, of
    # which 8 batches of 8 measured after one of warm-up: enough for the grouped order to put long ones first
    args = tiny_args(write_parquet(tmp_path / "imdb", sizes=(160, 24, 12)), tmp_path, "--model_name=tiny:bert",
                     "--batch_size=8", "--steps=8", "--warmup_steps=1")
    levers = '--levers=[{label = "grouped"}, {label = "random", group_by_length = false}]'
    import torch
    threads = torch.get_num_threads()
    reads = []
    bench.train_reviews.cache_clear()
    monkeypatch.setattr(bench, "load_imdb", lambda *a: reads.append(a) or load_imdb(*a))
    try:
        grouped, shuffled = bench.main(args + [levers, "--peak_tflops=0.001", f"--threads={threads + 1}"])
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    assert len(reads) == 1                        # the reviews read once for the series, not per measurement
    out, err = capsys.readouterr()                # each result line once on a terminal (stdout), and in the log file
    assert out.count(" reviews/s, ") == 2 and " reviews/s, " not in err
    assert "INFO grouped on cpu (fp32): " in (tmp_path / "tiny" / "logs" / "bench.log").read_text()
    assert (grouped["torch_threads"], shuffled["torch_threads"]) == (threads + 1, threads + 1)   # --threads: a shared CPU
    for r in (grouped, shuffled):
        assert r["steps_measured"] == 8 and r["reviews_per_s"] == pytest.approx(8 * 8 / r["seconds"], rel=0.02)   # full batches; seconds rounded to ms
        assert r["tokens_per_s"] / r["reviews_per_s"] == pytest.approx(r["mean_tokens"]) and 5 < r["mean_tokens"] <= 64
        assert 0 < r["seconds"] <= r["wall_s"] + 0.05 and 0 < r["step_s_median"] <= r["seconds"]
        assert 0 <= r["padding_fraction"] < 1 and (r["other_cores_busy"] is None or r["other_cores_busy"] >= 0)
        assert r["mfu"] == pytest.approx(r["model_tflops_per_s"] / 0.001) and r["base"] == "grouped"   # the series' first
    assert grouped["padding_fraction"] < shuffled["padding_fraction"]      # length grouping pads less
    # on the same reviews: the warm-up has its own (a grouped sampler's longest batches first left shorter ones measured)
    assert grouped["mean_tokens"] == pytest.approx(shuffled["mean_tokens"], rel=1e-9)
    folder = tmp_path / "tiny" / "bench"                                     # a config's experiment: its bench/ subfolder
    assert not (tmp_path / "tiny" / "checkpoints").exists()                 # nothing saved, no empty folder left
    saved = json.loads((folder / "grouped.json").read_text())
    assert saved["flops_formula"] == "sum_i 6 N l_i + 12 n_layers d l_i^2 + 6 H" and saved["device"] == "cpu"
    assert json.loads((folder / "random.json").read_text())["config"]["group_by_length"] is False
    rows = lever_rows(folder)                                                # both measurements, side by side
    assert set(rows) == {"grouped", "random"} and "### tiny:bert" in (folder / "levers.md").read_text()
    assert rows["grouped"][9] == "True" and rows["random"][9] == "False"                   # group_by_length
    assert rows["grouped"][1] == "1.00x" and rows["random"][1] == f"{shuffled['reviews_per_s'] / grouped['reviews_per_s']:.2f}x"
    assert rows["grouped"][10:12] == ["64", "head+tail"]                                    # max_length, truncation
    assert rows["grouped"][12] == f"{grouped['reviews_per_s']:.1f}" and rows["grouped"][17].startswith(f"{100 * grouped['mfu']:.1f}")
    assert rows["grouped"][14] == f"{grouped['mean_tokens']:.0f}"                           # the reviews' mean length
    assert rows["grouped"][18] == str(threads + 1)                                          # torch threads

    # the same command again: both kept, nothing trained; one of other settings under a saved label is refused
    stamps = {f.name: f.stat().st_mtime_ns for f in folder.glob("*.json")}
    loads = []
    monkeypatch.setattr(bench, "load_classifier", lambda *a: loads.append(a) or load_classifier(*a))
    again = bench.main(args + [levers, "--peak_tflops=0.001", f"--threads={threads + 1}"])
    assert len(loads) == 1                  # loaded once to learn its attention kernel; each kept row then found by name
    monkeypatch.undo()
    torch.set_num_threads(threads)
    assert [r["reviews_per_s"] for r in again] == [grouped["reviews_per_s"], shuffled["reviews_per_s"]]
    assert {f.name: f.stat().st_mtime_ns for f in folder.glob("*.json")} == stamps
    with pytest.raises(UsageError, match=r"grouped.json holds a measurement of other settings \(batch_size 8, now 4; "
                                         r"threads \d+, now 0\); --overwrite=true replaces it"):
        bench.main(args + ['--levers=[{label = "new"}, {label = "grouped", batch_size = 4}]'])
    saved = json.loads((folder / "random.json").read_text())             # measured by an older bench.py
    (folder / "random.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "method"}))
    with pytest.raises(UsageError, match=r"random.json holds a measurement of other settings \(.*method 1, now 2\)"):
        bench.main(args + [levers, "--peak_tflops=0.001", f"--threads={threads + 1}"])
    torch.set_num_threads(threads)
    assert set(lever_rows(folder)) == {"grouped", "random", "new"}     # the table follows each measurement as it ends


def test_a_series_measures_each_setting_once_names_what_it_skips_and_stops_at_max_seconds(imdb_parquet, tmp_path, monkeypatch):
    # the same settings twice in a series (sdpa is the default) are measured once, another lever's are not, and a
    # model not at hand (the teacher not staged) is named, the others measured; none is started past MAX_SECONDS
    import models
    args = tiny_args(imdb_parquet, tmp_path, "--model_name=tiny:bert", "--batch_size=8", "--steps=3", "--warmup_steps=1")
    asked, model_config = [], models.model_config
    monkeypatch.setattr(models, "model_config", lambda name: asked.append(name) or model_config(name))
    bench.not_at_hand.cache_clear(), bench.loaded_config.cache_clear()
    once = bench.main(args + ['--levers=[{}, {attention = "sdpa"}, {pin_memory = false}]',
                              f"--model_names=tiny:bert,{tmp_path}/not-staged"])
    assert asked == ["tiny:bert", f"{tmp_path}/not-staged"]      # each model looked for once: the check, then the series
    base = "tiny-bert-bs8-len64-sdpa-head16-steps3-warm1"     # the levers that are not bench.py's defaults named too
    assert [r["label"] for r in once] == [base, base.replace("-head16", "-unpinned-head16")] and once[0]["mfu"] is None
    log = (tmp_path / "tiny" / "logs" / "bench.log").read_text()
    assert f"{base}: the same settings as an earlier measurement of this series (attention used: sdpa)" in log
    assert f"WARNING not measured: model '{tmp_path}/not-staged': no such folder" in log
    assert [r["label"] for r in bench.main(args + ["--levers=[{batch_size = 4}, {batch_size = 2}]", "--max_seconds=1e-9"])] \
        == [base.replace("bs8", "bs4")]                       # the first is always measured
    assert "MAX_SECONDS = 1e-09 reached after 1 of 2 measurements; not measured: tiny:bert {batch_size = 2}" in \
        (tmp_path / "tiny" / "logs" / "bench.log").read_text()

    # measured beside other work: said in the log, and in the table's last column
    import training
    monkeypatch.setattr(training.TrainTime, "others", lambda self, world_size=1: 1.5)
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    bench.main(args + ["--label=busy"])
    assert "busy: other processes kept 1.5 of 2 cores busy on average while it trained" in \
        (tmp_path / "tiny" / "logs" / "bench.log").read_text()
    folder = tmp_path / "tiny" / "bench"
    assert lever_rows(folder)["busy"][-1] == "1.50" and lever_rows(folder)["busy"][1] == "1.00x"   # its own base


def test_grouped_batches_are_ordered_as_a_long_training_orders_them(tmp_path):
    # a training on thousands of reviews sorts 50 batches' worth at a time; transformers' choice for the few batches
    # measured here (a quarter of them: 3 batches -> 1) would have sorted each batch alone and padded as random ones
    import numpy as np
    from datasets import Dataset

    from models import build_tiny
    from training import training_arguments
    model, _ = build_tiny("bert")
    args = training_arguments(tmp_path, epochs=1, batch_size=8, learning_rate=1e-4, eval_batch_size=8, seed=0,
                              eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    lengths = np.random.default_rng(0).integers(5, 60, 24).tolist()
    order = bench.counting_trainer(1, model=model, args=args).part_order(Dataset.from_dict({"length": lengths}), 8)
    assert sorted(order) == list(range(24)) and [lengths[i] for i in order] == sorted(lengths, reverse=True)


def test_a_larger_batch_measures_the_smaller_ones_reviews_and_more(imdb_parquet, tmp_path):
    # a batch-size lever compares the same reviews (and more), not two samples of other lengths: the reviews are a
    # prefix of one seeded order, the measured steps take the first rows and the warm-up the last
    import numpy as np
    from datasets import Dataset

    from models import build_tiny
    from training import training_arguments
    bench.train_reviews.cache_clear()
    small, large = (list(bench.train_reviews(str(imdb_parquet), "", n, 42)["text"]) for n in (20, 40))
    assert large[:20] == small and len(set(large)) == 40
    assert list(bench.train_reviews(str(imdb_parquet), "", 20, 7)["text"]) != small           # the seed draws the order
    model, _ = build_tiny("bert")
    args = training_arguments(tmp_path, epochs=1, batch_size=4, learning_rate=1e-4, eval_batch_size=4, seed=0,
                              eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                              train_sampling_strategy="random")
    data = Dataset.from_dict({"length": np.arange(5, 25).tolist()})
    order = list(bench.counting_trainer(2, model=model, args=args, train_dataset=data)._get_train_sampler())
    assert sorted(order[:8]) == list(range(12, 20)) and sorted(order[8:]) == list(range(12))


def test_a_failed_measurement_is_listed_and_the_series_goes_on(imdb_parquet, tmp_path, monkeypatch, capsys):
    # a batch too large for the GPU, or torch.compile failing on the lent GPU's torch, costs its row, not the series'
    import torch
    args = tiny_args(imdb_parquet, tmp_path, "--model_name=tiny:bert", "--steps=2", "--warmup_steps=1", "--threads=1",
                     "--levers=[{batch_size = 2}, {batch_size = 4}, {batch_size = 3}]")
    run_steps = bench.run_steps
    def failing(*a):
        if bench.BATCH_SIZE == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(more lines)")
        return run_steps(*a)
    monkeypatch.setattr(bench, "run_steps", failing)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as stop:
            bench.main(args)
        assert stop.value.code == 3           # not 1, a crash: run_experiment.sh takes only this as a warning
        assert re.search(r"^error: 1 measurement\(s\) of this series failed \(tiny:bert \{batch_size = 4\}: OutOfMemory"
                         r"Error: CUDA out of memory. Tried to allocate 2.00 GiB\); what was measured is saved in",
                         capsys.readouterr().err, re.M)
        folder = tmp_path / "tiny" / "bench"
        assert set(lever_rows(folder)) == {"tiny-bert-bs2-len64-sdpa-head16-steps2-warm1", "tiny-bert-bs3-len64-sdpa-head16-steps2-warm1"}
        assert "### Failed in the last series (not measured; tracebacks in the log)\n\n- tiny:bert {batch_size = 4}: " \
               "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n" in (folder / "levers.md").read_text()
        assert "Traceback" in (tmp_path / "tiny" / "logs" / "bench.log").read_text()
        trained = []                                              # the same command again: only the failed one runs
        monkeypatch.setattr(bench, "run_steps", lambda *a: trained.append(bench.BATCH_SIZE) or run_steps(*a))
        assert [r["label"] for r in bench.main(args)][1] == "tiny-bert-bs4-len64-sdpa-head16-steps2-warm1" and trained == [4]
        assert len(lever_rows(folder)) == 3 and "Failed" not in (folder / "levers.md").read_text()
    finally:
        torch.set_num_threads(threads)


def test_a_label_names_the_whole_model_and_every_lever_off_its_default(monkeypatch):
    # two models of the same last name, or two settings of a lever the short name leaves out, never share a label
    label = lambda **levers: [monkeypatch.setattr(bench, k, v) for k, v in levers.items()] and bench.bench_label("sdpa")  # noqa: E731
    label(**bench.DEFAULT_LEVERS)                  # a test's bench.main leaves its settings in the module
    first = label(MODEL_NAME="org1/bert-base", LABEL="", BATCH_SIZE=32, MAX_LENGTH=512)
    assert first == "org1--bert-base-bs32-len512-sdpa" and label(MODEL_NAME="org2/bert-base") == "org2--bert-base-bs32-len512-sdpa"
    assert label(MODEL_NAME="/runs/a/teacher", STEPS=60, PIN_MEMORY=False, TRUNCATION="head", HEAD_TOKENS=64,
                 WARMUP_STEPS=10, COMPILE=True, OPTIMIZER="adamw_torch", NUM_WORKERS=2, GROUP_BY_LENGTH=False) == \
        "runs--a--teacher-bs32-len512-sdpa-compile-adamw_torch-w2-random-unpinned-head-head64-steps60-warm10"
    assert label(LABEL="mine") == "mine"


def lever_rows(folder):
    """levers.md's rows by label, each a list of its cells."""
    table = (folder / "levers.md").read_text().splitlines()
    return {line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("| ").split(" | ")]
            for line in table if line.startswith("| ") and "label" not in line}


@pytest.mark.parametrize("levers, message", [
    ("[{epochs = 2}]", "levers entry 1 ({epochs = 2}): 'epochs' is not a lever; the levers are model_name, attention,"),
    ("[{}, {batch_size = 0}]", "batch_size = 0 in levers entry 2 ({batch_size = 0}): must be >= 1"),
    ('[{compile = "yes"}]', "compile = 'yes' in levers entry 1 ({compile = \"yes\"}): expected bool, got str"),
    ("[{}, {batch_size = 4}]", "label 'x' would name 2 measurements of this series (MODEL_NAMES x LEVERS)"),
    ("[5]", "--levers='[5]': expected list of dict, got 5"),
    ("[{model_name = \"not-staged\"}]", "cannot load model 'not-staged'"),     # no model of the series at hand
    ("[{max_length = 600, head_tokens = 16}]", "max_length 600: tiny:bert takes at most 512 tokens"),   # not a failed run
])
def test_a_bad_series_is_one_line_before_anything_runs(imdb_parquet, tmp_path, levers, message):
    args = tiny_args(imdb_parquet, tmp_path, "--model_name=tiny:bert", f"--levers={levers}", "--label=x" if "label" in message else "--steps=1")
    with pytest.raises(UsageError) as e:
        bench.main(args)
    assert message in str(e.value) and not (tmp_path / "tiny").exists()


def test_a_model_name_flag_beside_a_series_of_model_names_is_refused_not_ignored(imdb_parquet, tmp_path, monkeypatch):
    args = tiny_args(imdb_parquet, tmp_path, '--model_names=["tiny:roberta"]', "--model_name=tiny:bert", "--steps=1")
    with pytest.raises(UsageError, match=r"^--model_name=tiny:bert, but model_names = \['tiny:roberta'\] .* give "
                                         r"--model_names=tiny:bert to measure that model alone$"):
        bench.main(args)
    assert not (tmp_path / "tiny").exists()
    from configurator import configure
    monkeypatch.setenv("KD_ALL_STEPS", "1")          # run_experiment.sh: --model_name is the teacher's, said, not refused
    try:
        cfg = configure(vars(bench), args, "bench")
        assert [r["MODEL_NAME"] for r, _ in bench.check_series(cfg)] == ["tiny:roberta"]
    finally:
        configure(vars(bench), [], "bench")


def test_bench_defaults_are_what_the_training_scripts_use(tmp_path):
    # the "before" of every lever is the training as it runs (a lever of the default changes nothing)
    from configurator import configure
    from training import training_arguments
    default = configure(vars(bench), [], "bench")      # the defaults (a test's bench.main leaves its flags set)
    args = training_arguments(tmp_path, epochs=1, batch_size=8, learning_rate=1e-4, eval_batch_size=8, seed=0)
    assert default["OPTIMIZER"] == getattr(args.optim, "value", args.optim) == "adamw_torch_fused"
    assert default["GROUP_BY_LENGTH"] == (args.train_sampling_strategy == "group_by_length")
    assert default["NUM_WORKERS"] == args.dataloader_num_workers and default["COMPILE"] == args.torch_compile


def test_figures_count_the_measured_steps_only(monkeypatch):
    # 2 warm-up steps then 3 measured (the first step is never timed): seconds and the median over those 3
    from types import SimpleNamespace

    import torch

    from models import build_tiny
    monkeypatch.setattr(bench, "STEPS", 3)
    model = build_tiny("bert")[0]
    trainer = SimpleNamespace(batches=[(torch.tensor([4, 4]), 8)] * 5, args=SimpleNamespace(world_size=1))
    timer = SimpleNamespace(steps=[9.0, 1.0, 1.0, 4.0], first=20.0)
    clock = SimpleNamespace(elapsed=lambda: 30.0, others=lambda n: None)
    r = bench.figures(trainer, timer, clock, model, "cpu", "cpu")
    assert (r["seconds"], r["step_s_median"], r["steps_measured"]) == (6.0, 1.0, 3)
    assert r["reviews_per_s"] == pytest.approx(6 / 6.0) and r["padding_fraction"] == pytest.approx(1 - 24 / 24)
    # the measured window's own batches: lengths 4+2, 3+3, 5+1 = 18 real tokens of 8 + 6 + 10 = 24 padded
    trainer.batches = [(torch.tensor([9, 9]), 18)] * 2 + [(torch.tensor([4, 2]), 8), (torch.tensor([3, 3]), 6),
                                                          (torch.tensor([5, 1]), 10)]
    r = bench.figures(trainer, timer, clock, model, "cpu", "cpu")
    assert (r["padding_fraction"], r["mean_tokens"], r["tokens_per_s"]) == (pytest.approx(0.25), 3.0, 3.0)
    flops = bench.model_flops([4, 2, 3, 3, 5, 1], *bench.matmul_parameters(model)[:1], model.config.num_hidden_layers,
                              model.config.hidden_size, bench.matmul_parameters(model)[1])
    assert r["model_tflops_per_s"] == pytest.approx(flops / 6.0 / 1e12)
    # one process on 4 GPUs (DataParallel): the peak of all 4, so MFU is not 4 times too high
    import runs
    monkeypatch.setattr(runs, "devices_per_process", lambda: 4)
    r = bench.figures(trainer, timer, clock, model, "cuda", "NVIDIA H100 80GB HBM3")
    assert r["peak_tflops"] == pytest.approx(4 * bench.peak_tflops("NVIDIA H100 80GB HBM3", 1))
    assert r["mfu"] == pytest.approx(r["model_tflops_per_s"] / r["peak_tflops"])


def test_the_lever_table_lists_the_fastest_first_with_its_speedup(tmp_path):
    for label, rate in (("a", 10.0), ("b", 20.0)):
        (tmp_path / f"{label}.json").write_text(json.dumps({"label": label, "model": "m", "reviews_per_s": rate,
                                                            "base": "a", "config": {}}))
    (tmp_path / "c.tmp4242.json").write_text('{"label": "c", "mod')        # a write killed midway (atomic_path)
    rows = [line for line in bench.lever_table(tmp_path).splitlines() if line.startswith(("| a ", "| b "))]
    assert rows[0].startswith("| b | 2.00x") and rows[1].startswith("| a | 1.00x")
