"""run_experiment.sh: the three steps in order, each given only the flags it defines."""
import functools
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args):
    return subprocess.run(["bash", str(ROOT / "run_experiment.sh"), "configs/tiny.toml", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


STEP_STUB = ("OUTPUT_DIR, EXPERIMENT, SOFT_LABELS = 'out', 'stub', ''\nTEACHER_DIR = \"\"\n"    # a step whose run does nothing
             "def check_before_teacher(cfg): pass\ndef check_length_before_teacher(cfg, teacher_cfg): pass\n"
             "def check_models_before_teacher(cfg): pass\n")


def stub_checkout(folder: Path, config: str = "", **steps: str) -> None:
    """run_experiment.sh copied into `folder` beside stub steps that write to out/stub: a configurator that configures
    nothing (its STEPS the real one's), stub.toml holding `config`, and each step's script from `steps` (its source), else STEP_STUB; bench.py
    only when given (distill_student.py's SOFT_LABELS, read by run_experiment.sh, decides whether a teacher is trained)."""
    import shutil
    shutil.copy(ROOT / "run_experiment.sh", folder)
    from configurator import STEPS
    (folder / "configurator.py").write_text(f"STEPS = {STEPS!r}\ndef configure(namespace, argv, script=None): return {{}}\n"
                                            "def run_main(main): main()\ndef offline_if_hub_unreachable(): return None\n"
                                            "def use_shared_copies(): pass\n")
    (folder / "stub.toml").write_text(config)
    for step in ("fine_tuning_teacher", "distill_student", "evaluate_models", *(["bench"] if "bench" in steps else [])):
        (folder / f"{step}.py").write_text(steps.get(step, STEP_STUB))


def unwinding_step(seconds: float) -> str:
    """A step's source that marks out/stub/started, then waits; SIGTERM makes it unwind for `seconds`, mark
    out/stub/unwound and exit 143."""
    return ("import signal, sys, time\nfrom pathlib import Path\n"
            f"def stop(*_):\n    time.sleep({seconds})\n    Path('out/stub/unwound').touch()\n    sys.exit(143)\n"
            "if __name__ == '__main__':\n    signal.signal(signal.SIGTERM, stop)\n    Path('out/stub/started').touch()\n"
            "    time.sleep(60)\n")


def test_run_experiment_runs_each_step_and_says_which_models_it_kept(imdb_parquet, tmp_path):
    # one pipeline twice (each run pays four process start-ups, so the checks share them):
    # 1. every step, in order; --overwrite (in another spelling) and --cache_dir are not evaluate_models.py
    #    constants, --quantize is only its own; 2. run again: every model kept. (That --overwrite retrains each
    #    step's models is tested on each script: test_teacher, test_distill.)
    def pipeline_run(*flags):
        return run_script(f"--data_dir={imdb_parquet}", f"--output_dir={tmp_path}", f"--cache_dir={tmp_path}/cache",
                          "--quantize=false", "--students=[{name = \"one\", layers = [0]}]", "--epochs=1", *flags)
    root = tmp_path / "tiny"
    p = pipeline_run("--overwrite=yes")
    assert p.returncode == 0, p.stderr[-2000:]
    timings = (root / "timings.md").read_text().splitlines()
    assert [[c.strip() for c in line.split("|")[1:4:2]] for line in timings[2:]] == \
        [["fine_tuning_teacher", "1 of 1"], ["distill_student", "2 of 2"], ["evaluate_models", ""], ["total", ""]]
    rows = json.loads((root / "results.json").read_text())["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [("teacher", "fp32"), ("one", "fp32"), ("one-baseline", "fp32")]
    assert not list(root.glob("timings.md.new*")) and not list(root.glob(".step-start*"))
    assert not (root / ".overwrite-run.json").exists()      # the --overwrite run ended with its last step

    stamp = lambda: {n: (root / n / "metrics.json").stat().st_mtime_ns   # noqa: E731
                     for n in ("teacher", "students/one", "students/one-baseline")}
    first = stamp()
    kept = pipeline_run()
    assert kept.returncode == 0 and stamp() == first
    assert [line.split("|")[3].strip() for line in (root / "timings.md").read_text().splitlines()[2:4]] == \
        ["0 of 1", "0 of 2"]                                        # kept: the wall times are not training times
    assert "finished teacher" in kept.stderr and "kept; --overwrite=true retrains it" in kept.stderr
    for name in ("one", "one-baseline"):
        assert f"student {name}: finished run in {root / 'students' / name}, kept (--overwrite=true retrains it)" \
            in kept.stderr, kept.stderr[-2000:]
    history = (root / "timings-history.md").read_text()      # run 1's table, replaced by run 2's
    assert history.count("| total |") == 1 and history.strip() == "\n".join(timings)


def test_run_experiment_unknown_flag_fails_with_the_valid_names(imdb_parquet, tmp_path):
    p = run_script(f"--data_dir={imdb_parquet}", f"--output_dir={tmp_path}", "--epochz=1")
    assert p.returncode != 0
    assert "unknown constant '--epochz'" in p.stderr and "valid names" in p.stderr
    assert not (tmp_path / "tiny" / "teacher").exists()


def test_a_config_is_found_from_the_callers_folder(tmp_path):
    # the steps run in the checkout, but the config file is named from where the command is typed
    (tmp_path / "mine.toml").write_text('experiment = "mine"\n[fine_tuning_teacher]\nepochz = 1\n')
    p = subprocess.run(["bash", str(ROOT / "run_experiment.sh"), "mine.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "mine.toml [fine_tuning_teacher]: unknown constant 'epochz'" in p.stderr, p.stderr[-2000:]


def test_a_stopped_experiment_exits_only_after_its_running_step_has_unwound(tmp_path):
    # `timeout` signals the whole process group; whatever runs next (the README's fallback evaluation) must find
    # the experiment's lock released, so run_experiment.sh waits for the step's unwinding before it exits
    import os
    import signal
    import time
    stub_checkout(tmp_path, fine_tuning_teacher=unwinding_step(1.5))       # an unwinding that takes a while
    p = subprocess.Popen(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if (tmp_path / "out/stub/started").exists():
                break
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 143 and (tmp_path / "out/stub/unwound").exists()
    # the stopped step's time is kept (on a lent GPU, time spent), its row saying it did not finish; no total
    rows = [[c.strip() for c in line.split("|")[1:5]] for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]]
    assert len(rows) == 1 and rows[0][0] == "fine_tuning_teacher" and int(rows[0][1]) >= 1 and rows[0][2] == ""
    assert rows[0][3].startswith("not finished: exit 143 at 20") and not list((tmp_path / "out/stub").glob("timings.md.new*"))


def test_a_kill_of_run_experiment_alone_stops_its_running_step(tmp_path):
    # a user's `bash run_experiment.sh ... &` then `kill $!`: the teacher trained on to its end, a minute later, and the
    # run ended without a word; now the step is told, unwinds, and its row says it did not finish
    import os
    import signal
    import time
    stub_checkout(tmp_path, fine_tuning_teacher=unwinding_step(0))
    p = subprocess.Popen(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if (tmp_path / "out/stub/started").exists():
                break
            time.sleep(0.1)
        t0 = time.time()
        os.kill(p.pid, signal.SIGTERM)                       # the script alone, not its process group
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 143 and time.time() - t0 < 10 and (tmp_path / "out/stub/unwound").exists(), err
    assert "stopping fine_tuning_teacher (pid " in err and "== distill_student" not in out
    rows = [[c.strip() for c in line.split("|")[1:5]] for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]]
    assert len(rows) == 1 and rows[0][0] == "fine_tuning_teacher" and rows[0][3].startswith("not finished: exit 143 at ")


def test_a_step_takes_ctrl_c_unless_run_experiment_itself_was_started_ignoring_it(tmp_path):
    # each step runs in the background (so a kill of the script is heard): it undoes the SIGINT-ignoring that gives a
    # background command (KD_STEP_OF_RUN), but not where the script itself ignores SIGINT (started with & by another)
    import signal
    stub_checkout(tmp_path, fine_tuning_teacher=(
        "import os, sys\nfrom pathlib import Path\nif __name__ == '__main__':\n"
        "    Path('out/stub').mkdir(parents=True, exist_ok=True)\n"
        "    Path('out/stub/marked').write_text(repr(os.environ.get('KD_STEP_OF_RUN')))\n    sys.exit(2)\n"))
    for ignored, want in ((False, "'1'"), (True, "''")):
        subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, timeout=60,
                       preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
        assert (tmp_path / "out/stub/marked").read_text() == want


def test_a_refused_step_leaves_the_timings_alone_and_a_sigterm_in_a_step_that_ends_well_stops_after_it(tmp_path):
    # exit 2 (a bad input, the lock held by another run, settings that differ from a published record) did nothing:
    # the published timings.md is not replaced by a row of it; a SIGTERM while a step runs, the step ending well,
    # keeps that step's row and runs no further step
    stub_checkout(tmp_path, distill_student=STEP_STUB + "import sys\nif __name__ == '__main__':\n    sys.exit(2)\n")
    (tmp_path / "out/stub").mkdir(parents=True)
    published = "| step | wall time (s) | models trained | finished |\n|---|---|---|---|\n| total | 9 | | x |\n"
    (tmp_path / "out/stub/timings.md").write_text(published)
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and (tmp_path / "out/stub/timings.md").read_text() != published   # the teacher step ran
    (tmp_path / "out/stub/timings.md").write_text(published)
    (tmp_path / "out/stub/timings-history.md").unlink()
    stub_checkout(tmp_path, fine_tuning_teacher=STEP_STUB + "import sys\nif __name__ == '__main__':\n    sys.exit(2)\n")
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and (tmp_path / "out/stub/timings.md").read_text() == published
    assert not (tmp_path / "out/stub/timings-history.md").exists()
    shutil.rmtree(tmp_path / "out/stub")                     # refused at once in a new experiment: no folder left
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and not (tmp_path / "out/stub").exists()
    stub_checkout(tmp_path, fine_tuning_teacher=STEP_STUB + (
        "import os, signal\nif __name__ == '__main__':\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    os.killpg(os.getpgrp(), signal.SIGTERM)\n"))                 # the whole group, as `timeout` does
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, start_new_session=True)
    assert p.returncode == 143 and "== distill_student" not in p.stdout
    assert [line.split("|")[1].strip() for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]] == \
        ["fine_tuning_teacher"]


def test_a_failed_bench_leaves_the_experiment_finished(tmp_path):
    # bench.py runs last; a measurement that failed there (exit 3) is no failure of the experiment's results: the
    # run ends 0 (lent_gpu.sh would otherwise start it again, evaluation and all), its row says so
    stub_checkout(tmp_path, "[bench]\n", distill_student=STEP_STUB.replace("''", "'soft'"),   # no teacher step
                  bench="import sys\ndef check_series(cfg): return []\n"
                        "if __name__ == '__main__':\n    sys.exit(3)\n")
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "warning: bench.py: some measurements failed (listed in its levers.md and log); the experiment's results " \
           "are complete" in p.stderr
    rows = [[c.strip() for c in line.split("|")[1:4:2]] for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]]
    assert rows == [["distill_student", ""], ["evaluate_models", ""], ["bench", "failed (exit 3)"], ["total", ""]]
    for code in (1, 130):       # a crash, or stopped: the run's own exit
        (tmp_path / "bench.py").write_text("import sys\ndef check_series(cfg): return []\n"
                                           f"if __name__ == '__main__':\n    sys.exit({code})\n")
        assert subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True,
                              timeout=60).returncode == code


def test_a_bad_bench_table_is_refused_before_the_first_step(tmp_path):
    # a typo in [bench] would otherwise be found only after the whole experiment, when bench.py starts
    (tmp_path / "mine.toml").write_text('experiment = "mine"\n[bench]\nlevers = [{}, {batch_sise = 64}]\n')
    p = subprocess.run(["bash", str(ROOT / "run_experiment.sh"), str(tmp_path / "mine.toml"), f"--output_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "levers entry 2 ({batch_sise = 64}): 'batch_sise' is not a lever; did you mean batch_size?" in p.stderr, p.stderr
    assert not (tmp_path / "mine").exists() and "== fine_tuning_teacher" not in p.stdout
    p = subprocess.run(["bash", str(ROOT / "run_experiment.sh"), str(tmp_path / "none.toml")], capture_output=True,
                       text=True, timeout=120)                  # read before its tables are looked at: one line
    assert p.returncode == 2 and p.stderr.startswith(f"error: --config {tmp_path / 'none.toml'}: no such file"), p.stderr


def test_students_longer_than_the_teacher_to_train_are_refused_before_it_trains(imdb_parquet, tmp_path):
    # max_length edited for the teacher only: distill_student.py would refuse its students after the teacher's hours
    (tmp_path / "mine.toml").write_text((ROOT / "configs/tiny.toml").read_text() .replace(
        '[fine_tuning_teacher]\n', '[fine_tuning_teacher]\nmax_length = 32\n'))
    p = subprocess.run(["bash", str(ROOT / "run_experiment.sh"), str(tmp_path / "mine.toml"), f"--output_dir={tmp_path}",
                        f"--data_dir={imdb_parquet}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        f"error: max_length = 64 in {tmp_path}/mine.toml, but the teacher to train (max_length = 32 in [fine_tuning_teacher] "
        f"of {tmp_path}/mine.toml) "
        f"reads 32 tokens: students cut, roberta would read 64, training and predicting slower on text the teacher never "
        f"read; set it to 32 (--max_length=32; a config file's top-level max_length sets every script's), or give a "
        f"student a max_length of its own in STUDENTS to mean it"), p.stderr
    assert not (tmp_path / "tiny").exists() and "== fine_tuning_teacher" not in p.stdout


def test_transfer_texts_are_checked_before_the_teacher_trains(imdb_parquet, tmp_path, caplog):
    # a wrong transfer file (or a column it lacks, or too few texts) or a student's model that is none would otherwise
    # be found when the students start, after the teacher's hours; one set with no student reading it (transfer_size
    # 0) would be ignored without a word
    (tmp_path / "more.csv").write_text("id,body\n1,a text\n2,another\n3,a third\n")
    def run(*flags):
        return subprocess.run(["bash", str(ROOT / "run_experiment.sh"), "configs/tiny.toml", f"--output_dir={tmp_path}",
                               f"--data_dir={imdb_parquet}", *flags], cwd=ROOT, capture_output=True, text=True, timeout=120)
    p = run(f"--transfer_data={tmp_path}/more.tsv")         # tiny.toml's students read 4 transfer texts each
    assert p.returncode == 2 and f"error: --transfer_data={tmp_path}/more.tsv: no such file or folder" in p.stderr, p.stderr
    assert not (tmp_path / "tiny").exists() and "== fine_tuning_teacher" not in p.stdout
    p = run(f"--transfer_data={tmp_path}/more.csv")
    assert p.returncode == 2 and "more.csv: no column 'text' (found id, body); set --transfer_text_column to the column " \
        "that holds the texts" in p.stderr, p.stderr
    p = run(f"--transfer_data={tmp_path}/more.csv", "--transfer_text_column=body")
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == f"error: student 'cut': transfer_size = 4, but " \
        f"--transfer_data={tmp_path}/more.csv holds 3 texts; set it to at most 3 (or fewer: texts also in train, " \
        f"validation or test are dropped too)", p.stderr
    # repeats are dropped before training (check_transfer_size): the number this names is one that then passes it
    # (as prepared for training: IMDb's <br /> is a space, so "a<br />third" repeats "a third")
    (tmp_path / "more.csv").write_text("id,body\n1,a text\n2,another\n3,a third\n4,another\n5,a fourth\n6,a<br />third\n")
    p = run(f"--transfer_data={tmp_path}/more.csv", "--transfer_text_column=body", "--transfer_size=5")
    assert p.returncode == 2 and f"--transfer_data={tmp_path}/more.csv holds 6 texts, 4 of them distinct (repeats are " \
        f"dropped); set it to at most 4 (or fewer" in p.stderr, p.stderr
    assert not (tmp_path / "tiny").exists() and "== fine_tuning_teacher" not in p.stdout
    (tmp_path / "more.txt").write_text("one\ntwo\nthree\nfour\n")
    p = run(f"--transfer_data={tmp_path}/more.txt", "--transfer_text_column=body")     # a text file has no columns
    assert p.returncode == 2 and f"error: --transfer_text_column=body names a column of a transfer_data table, but " \
        f"transfer_data = '{tmp_path}/more.txt' is not one; leave transfer_text_column out" in p.stderr, p.stderr
    p = run(f'--students=[{{name = "x", model = "{tmp_path}"}}]')      # a student's model: not a model's folder
    assert p.returncode == 2 and f"error: model '{tmp_path}' is a folder without config.json" in p.stderr, p.stderr
    assert not (tmp_path / "tiny").exists() and "== fine_tuning_teacher" not in p.stdout
    import distill_student
    from configurator import configure
    try:
        distill_student.check_before_teacher(configure(vars(distill_student), [      # 4 lines for 4 texts: no error
            "--config", str(ROOT / "configs/tiny.toml"), f"--transfer_data={tmp_path}/more.txt"]))
        cfg = configure(vars(distill_student), ["--config", str(ROOT / "configs/tiny.toml"), "--transfer_size=0",
                                                f"--transfer_data={tmp_path}/more.csv", '--students=[{name = "cut", layers = [1]}]'])
        with caplog.at_level("WARNING", logger="kd"):
            distill_student.check_before_teacher(cfg)
            distill_student.check_before_teacher(configure(vars(distill_student), [   # --only: another may read it
                "--config", str(ROOT / "configs/tiny.toml"), f"--transfer_data={tmp_path}/more.csv", "--only=roberta",
                '--students=[{name = "cut", layers = [1], transfer_size = 2}, {name = "roberta", layers = [1]}]',
                "--transfer_size=0", "--transfer_text_column=body"]))
    finally:
        configure(vars(distill_student), [], "distill_student")
    assert [r.getMessage() for r in caplog.records] == [
        f"transfer_data = {tmp_path}/more.csv, but no student has transfer_size > 0, so none reads it: they learn from "
        f"the labels alone; set transfer_size = N (under [distill_student], or per student) to add N of its texts"]


def test_a_second_run_refused_by_the_lock_leaves_the_first_runs_timings_alone(tmp_path):
    # a user starts the same experiment twice: the second is refused by the first step's lock, and its exit must not
    # remove the files the first run is still writing its timings to
    import time
    stub_checkout(tmp_path, fine_tuning_teacher=(
        "import sys, time\nfrom pathlib import Path\nlock, go = Path('out/stub/.lock'), Path('out/stub/go')\n"
        "if __name__ == '__main__':\n"
        "    if lock.exists():\n        sys.exit('error: out/stub is in use')\n"
        "    lock.touch()\n    while not go.exists():\n        time.sleep(0.05)\n"
        "    Path('out/stub/teacher').mkdir()\n    Path('out/stub/teacher/metrics.json').write_text('{}')\n"
        "    lock.unlink()\n"))
    first = subprocess.Popen(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if (tmp_path / "out/stub/.lock").exists():
                break
            time.sleep(0.05)
        second = subprocess.run(["bash", "run_experiment.sh", "stub.toml"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1 and "in use" in second.stderr
        (tmp_path / "out/stub/go").touch()
        assert first.wait(timeout=60) == 0
    finally:
        first.kill()
    timings = (tmp_path / "out/stub/timings.md").read_text().splitlines()
    assert timings[0].startswith("| step |") and [line.split("|")[1].strip() for line in timings[2:]] == \
        ["fine_tuning_teacher", "distill_student", "evaluate_models", "total"]
    assert timings[2].split("|")[3].strip() == "1 of 1"          # the teacher it trained, counted from its own mark


def test_students_of_published_soft_labels_skip_the_teacher_step_and_a_bench_table_runs_last(tmp_path):
    # configs/full-study.toml: no teacher model, so nothing to fine-tune; the students, then their evaluation, then
    # the training-speed series of its [bench] table
    stub_checkout(tmp_path, **{step: (   # each step records its run; SOFT_LABELS from the flag
        "import sys\nfrom pathlib import Path\nOUTPUT_DIR, EXPERIMENT = 'out', 'stub'\n"
        "SOFT_LABELS = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--soft_labels=')), '')\n"
        "TEACHER_DIR = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--teacher_dir=')), '')\n"
        "def check_series(cfg): pass\ndef check_before_teacher(cfg): pass\n"
        "def check_length_before_teacher(cfg, teacher_cfg): pass\ndef check_models_before_teacher(cfg): pass\n"
        f"if __name__ == '__main__':\n    Path('out/stub/steps').open('a').write('{step} ' + ' '.join(sys.argv[1:]) + '\\n')\n")
        for step in ("fine_tuning_teacher", "distill_student", "evaluate_models", "bench")})
    def steps(*flags):
        p = subprocess.run(["bash", "run_experiment.sh", "stub.toml", *flags], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return [line.split()[0] for line in (tmp_path / "out/stub/steps").read_text().splitlines()], p.stdout
    assert steps()[0] == ["fine_tuning_teacher", "distill_student", "evaluate_models"]
    (tmp_path / "out/stub/steps").unlink()
    done, said = steps("--soft_labels=outputs/full/soft_labels")
    assert done == ["distill_student", "evaluate_models"] and said.startswith(
        "checked before the first step: the settings, the students and their models, their transfer texts and token lengths\n"
        "(no teacher to train: the students learn from the soft labels in outputs/full/soft_labels)\n")
    (tmp_path / "out/stub/steps").unlink()
    done, said = steps("--teacher_dir=outputs/other/teacher")       # another experiment's teacher: none to train here
    assert done == ["distill_student", "evaluate_models"] and \
        "(no teacher to train: the students learn from the teacher in outputs/other/teacher)" in said
    assert [line.split("|")[1].strip() for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]] == \
        ["distill_student", "evaluate_models", "total"]
    (tmp_path / "out/stub/steps").unlink()
    (tmp_path / "stub.toml").write_text('experiment = "stub"\n[bench]\nlevers = [{}, {batch_size = 64}]\n')
    done, said = steps("--soft_labels=outputs/full/soft_labels")
    assert done == ["distill_student", "evaluate_models", "bench"]
    assert [line.split("|")[1].strip() for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]] == \
        ["distill_student", "evaluate_models", "bench", "total"]
    (tmp_path / "out/stub/steps").unlink()
    assert steps()[0] == ["fine_tuning_teacher", "distill_student", "evaluate_models", "bench"]    # a teacher, then bench
    # a step that fails (or is stopped) keeps the rows of those before it; a killed run's own files are removed
    (tmp_path / "out/stub/timings.md.new.999999999").write_text("left by a run that was killed")
    (tmp_path / "out/stub/timings.md.tmp.999999999").write_text("its copy on the way to timings.md")
    (tmp_path / "evaluate_models.py").write_text("import sys\nsys.exit('error: no model at hand')\n")
    p = subprocess.run(["bash", "run_experiment.sh", "stub.toml", "--soft_labels=x"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and "no model at hand" in p.stderr
    assert [[c.strip() for c in line.split("|")[1:4:2]] for line in (tmp_path / "out/stub/timings.md").read_text().splitlines()[2:]] == \
        [["distill_student", ""], ["evaluate_models", ""]]
    assert (tmp_path / "out/stub/timings.md").read_text().splitlines()[-1].split("|")[4].strip().startswith(
        "not finished: exit 1 at ")
    assert "| total |" in (tmp_path / "out/stub/timings-history.md").read_text().split("\n\n")[-1]   # the last whole run's
    assert sorted(f.name for f in (tmp_path / "out/stub").iterdir() if f.name.startswith(("timings", ".step"))) == \
        ["timings-history.md", "timings.md"]


def lent_gpu_stub(tmp_path):
    """A checkout holding lent_gpu.sh and stub steps: run_experiment.sh says it is in $STUB_STEP, writes a weight file
    and an --overwrite command's mark (run state, neither packed), works $STUB_TICKS tenths of a second (a stop:
    touches `unwound`; with $STUB_STUCK it does not exit for 60 s) and writes results.md; evaluate_models.py records
    its arguments and the commit it was given."""
    import shutil
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "lent_gpu.sh", repo)
    (repo / "run_experiment.sh").write_text(
        'out=${2#--output_dir=}; mkdir -p "$out/exp"; echo "$1 $3" >> "$out/exp/started"; echo "$KD_CODE_VERSION" > "$out/exp/code"\n'
        'trap \'touch "$out/exp/unwound"; if [ -n "$STUB_STUCK" ]; then sleep 60; fi; exit 143\' TERM\n'
        'if [ -n "$STUB_STEP" ]; then echo "== $STUB_STEP --config $1"; fi\n'
        'touch "$out/exp/model.safetensors" "$out/exp/.overwrite-run.json"; for i in $(seq "$STUB_TICKS"); do sleep 0.1; done\n'
        'echo finished > "$out/exp/results.md"\n')
    (repo / "evaluate_models.py").write_text(
        "import sys, pathlib\nout = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--output_dir='))\n"
        "pathlib.Path(out, 'exp', 'evaluated').write_text(' '.join(sys.argv[1:]))\n"
        "import os; pathlib.Path(out, 'exp', 'evaluated-code').write_text(os.environ['KD_CODE_VERSION'])\n")


def lent_gpu_call(tmp_path, name, runs, ticks, **env):
    """One call of the stub checkout's lent_gpu.sh, as the device tool makes it: (process, the ./exp/ files its
    runs.tgz holds, or None without one); whatever the call leaves running is killed, as the tool does."""
    import contextlib
    import os
    import signal
    import tarfile
    (tmp_path / name).mkdir()
    p = subprocess.Popen(["bash", str(tmp_path / "repo" / "lent_gpu.sh"), "configs/x.toml", "--seed=1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env=os.environ | {"OUT": str(tmp_path / name), "RUNS": str(tmp_path / runs),
                                           "STUB_TICKS": str(ticks), "IMDB_DIR": "x"} | env)
    p.stdout, p.stderr = p.communicate(timeout=120)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    if not (tmp_path / name / "runs.tgz").exists():
        return p, None
    with tarfile.open(tmp_path / name / "runs.tgz") as tar:
        return p, sorted(n for n in tar.getnames() if n.startswith("./exp/"))


def test_lent_gpu_runs_an_experiment_across_calls_then_stops_it_and_evaluates_what_finished(tmp_path):
    # lent_gpu.sh with stub steps: a run outlives the call that started it, a later call waits for it, the last call
    # the budget leaves room for stops it and evaluates; a stopped run is started again, a finished one is not
    lent_gpu_stub(tmp_path)
    call = functools.partial(lent_gpu_call, tmp_path)
    runs = tmp_path / "runs"
    p, packed = call("a", "runs", 300, BUDGET_S="10000", CALL_S="16", CODE_COMMIT="0123abcd")   # returns at once: 30 s of work go on
    assert p.returncode == 3 and "still running" in p.stdout and "./exp/started" in packed, p.stderr
    assert json.loads((runs / "exp/code").read_text())["commit"] == "0123abcd"    # the copy has no git: the records name it
    assert (tmp_path / "runs.run/code/lent_gpu.sh").is_file()                  # it runs from a copy
    p, packed = call("b", "runs", 300, BUDGET_S="80", EVAL_S="20")            # no room for another call: stop, evaluate
    assert p.returncode == 0 and "stopping the run" in p.stdout and "evaluated the finished models" in p.stdout
    assert packed == ["./exp/code", "./exp/evaluated", "./exp/evaluated-code", "./exp/started", "./exp/unwound"]   # no weights
    assert json.loads((runs / "exp/evaluated-code").read_text())["commit"] == "0123abcd"   # a later call's steps name it too
    assert "--config configs/x.toml --output_dir=" in (runs / "exp/evaluated").read_text()
    assert (runs / "exp/evaluated").read_text().endswith("--fp32_models=teacher --latency_samples=20")
    p, packed = call("c", "runs", 5, BUDGET_S="10000")                        # stopped: started again, finishes
    assert p.returncode == 0 and "./exp/results.md" in packed and (tmp_path / "c/run.log").is_file()
    p, _ = call("d", "runs", 5, BUDGET_S="10000")                             # finished: not started again
    assert p.returncode == 0 and "started" not in p.stdout
    assert (runs / "exp/started").read_text().splitlines() == [f"{tmp_path / 'runs.run/code/configs/x.toml'} --seed=1"] * 2
    shutil.rmtree(runs)         # finished, then its results removed (its run state in runs.run kept): run again
    p, packed = call("d2", "runs", 5, BUDGET_S="10000")
    assert p.returncode == 0 and "started" in p.stdout and "./exp/results.md" in packed, p.stderr


def test_lent_gpus_last_call_lets_an_evaluation_finish_stops_a_bench_and_refuses_bad_input(tmp_path):
    # the last call finds the run in a later step: its own evaluation is waited for, not repeated; a bench series
    # is stopped (killed when it does not unwind in time), the run's results standing; bad input is one line
    import time
    lent_gpu_stub(tmp_path)
    call = functools.partial(lent_gpu_call, tmp_path)
    p, _ = call("e1", "runs2", 50, BUDGET_S="10000", CALL_S="16", STUB_STEP="evaluate_models")
    assert p.returncode == 3
    time.sleep(0.5)
    p, packed = call("e2", "runs2", 50, BUDGET_S="80", EVAL_S="20", STUB_STEP="evaluate_models")
    assert p.returncode == 0 and "stopping" not in p.stdout and "./exp/results.md" in packed
    # the last call finds the run in its bench step, after the evaluation: bench is stopped (killed when it does not
    # unwind in time, as a long CPU step delays it), the run's results stand
    p, packed = call("h", "runs5", 300, BUDGET_S="45", STUB_STEP="bench", STUB_STUCK="1")
    assert p.returncode == 0 and "stopping bench.py" in p.stdout and "evaluat" not in p.stdout, p.stdout
    assert "./exp/unwound" in packed and "./exp/evaluated" not in packed and "still running" not in p.stdout
    p, packed = call("f", "runs3", 5, BUDGET_S="LEFT")                        # a budget that is not a number
    assert p.returncode == 2 and "BUDGET_S=LEFT: give whole seconds" in p.stderr and packed is None
    if not Path("/tmp/offline/imdb").exists():                                # no data: no run without it
        p, packed = call("g", "runs4", 5, BUDGET_S="10000", IMDB_DIR="")
        assert p.returncode == 2 and "nothing staged in /tmp/offline" in p.stderr and not (tmp_path / "runs4").exists()
