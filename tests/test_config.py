"""The override system: types, precedence (flag > file > default), unknown names, clear errors."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from configurator import UsageError, configure


def namespace():
    return {"__file__": "not_a_file.py", "EPOCHS": 2.0, "BATCH_SIZE": 16, "OVERWRITE": False,
            "MODEL_NAME": "roberta-large", "LAYERS": [0, 2, 4], "NAMES": ["a"], "lower": 1}


def test_types_are_checked_and_converted():
    ns = namespace()
    cfg = configure(ns, ["--epochs=3", "--batch_size", "8", "--overwrite=true", "--model_name=x",
                         "--layers=[1, 3]", "--names=b,c"], "fine_tuning_teacher")
    assert (ns["EPOCHS"], ns["BATCH_SIZE"], ns["OVERWRITE"], ns["MODEL_NAME"]) == (3.0, 8, True, "x")
    assert ns["LAYERS"] == [1, 3] and ns["NAMES"] == ["b", "c"] and cfg["EPOCHS"] == 3.0
    assert isinstance(ns["EPOCHS"], float)
    for bad in ("--batch_size=1.5", "--overwrite=maybe", "--epochs=fast", "--layers=[\"a\"]"):
        with pytest.raises(UsageError, match=f"--{bad[2:].split('=')[0]}=.*expected"):
            configure(namespace(), [bad], "fine_tuning_teacher")


def test_a_value_left_at_the_top_of_the_file_is_named_so_and_head_tokens_gets_a_value_to_try():
    # MAX_LENGTH lowered on the command line (or edited at the top of the file), HEAD_TOKENS left as it was
    ns = {"__file__": "x.py", "MAX_LENGTH": 512, "HEAD_TOKENS": 128, "TRUNCATION": "head+tail"}
    with pytest.raises(UsageError) as e:
        configure(ns, ["--max_length=128"], "fine_tuning_teacher")
    assert str(e.value) == ("HEAD_TOKENS = 128 (at the top of fine_tuning_teacher.py): must be below --max_length=128 "
                            "minus the special tokens (head+tail keeps that many tokens from the start, the rest from "
                            "the end); a quarter of it, 32, is what configs/ use: --head_tokens=32 (head_tokens = 32 "
                            "in a config file)")      # the fix as a flag: the README says to leave the scripts as they are
    # a BERT-style tokenizer wraps a text in 2 special tokens: a head of max_length - 2 leaves no tail
    with pytest.raises(UsageError, match=r"^--head_tokens=126: must be below --max_length=128 minus the special"):
        configure(ns, ["--max_length=128", "--head_tokens=126"], "fine_tuning_teacher")
    assert configure(ns, ["--max_length=128", "--head_tokens=125"], "fine_tuning_teacher")["HEAD_TOKENS"] == 125
    assert configure(ns, ["--max_length=128", "--truncation=head"], "fine_tuning_teacher")["HEAD_TOKENS"] == 128


def test_a_value_from_a_scripts_table_is_named_with_its_table(tmp_path):
    # a top-level key and a [script] table of one file: the message says which one set the value
    (tmp_path / "x.toml").write_text("max_length = 128\n[fine_tuning_teacher]\nhead_tokens = 200\n")
    ns = {"__file__": "x.py", "MAX_LENGTH": 512, "HEAD_TOKENS": 128, "TRUNCATION": "head+tail"}
    with pytest.raises(UsageError, match=rf"^head_tokens = 200 in \[fine_tuning_teacher\] of {tmp_path}/x.toml: must be "
                                         rf"below max_length = 128 in {tmp_path}/x.toml minus"):
        configure(ns, ["--config", str(tmp_path / "x.toml")], "fine_tuning_teacher")
    cfg = configure(ns, ["--config", str(tmp_path / "x.toml"), "--head_tokens=32"], "fine_tuning_teacher")
    assert cfg["_tables"] == []                                         # the flag beat the table


def test_an_empty_list_is_the_none_default_and_values_print_as_typed():
    from configurator import coerce, flag, flag_text, parse_list
    # `--label_names=` and `label_names = []` mean the default [""] ("none"): a run kept with it is not "changed"
    assert coerce("LABEL_NAMES", "", [""]) == [""] and coerce("LABEL_NAMES", [], [""], "x.toml") == [""]
    assert coerce("LAYERS", "[]", [0, 2]) == []                          # a list without that default stays empty
    for value in (("a", "very negative"), [1, 3], [], True, 0.5, "imdb"):
        assert flag_text(value) == {tuple: "a,very negative", list: "[1, 3]" if value else "", bool: "true"}.get(
            type(value), str(value))
    for value in (["a", "b"], [1, 3], ["bad", "good, really"], [" x", "[y]"], ["", "z"], []):   # read back as given
        assert parse_list(flag_text(value)) == value
    assert flag("label_names", ["bad", "good, really"]) == """'--label_names=["bad", "good, really"]'"""   # shell-quoted
    assert flag("epochs", 3) == "--epochs=3"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UsageError, match=r"unknown constant '--epoch' \(no script has it\); did you mean --epochs\?; "
                                         r"valid names for fine_tuning_teacher.py: batch_size, epochs"):
        configure(namespace(), ["--epoch=3"], "fine_tuning_teacher")
    with pytest.raises(UsageError, match=r"unknown constant '--zzz' \(no script has it\); valid names"):   # nothing close
        configure(namespace(), ["--zzz=3"], "fine_tuning_teacher")
    with pytest.raises(UsageError, match=r"'--fp32_modls' \(no script has it\); did you mean --fp32_models\?; valid names "
                                         r"for fine_tuning_teacher.py: batch_size"):       # another script's name
        configure(namespace(), ["--fp32_modls=a"], "fine_tuning_teacher")


def test_an_unknown_name_under_run_experiment_names_every_steps_help(monkeypatch):
    # one command line for every step: a list of one step's names would hide the others'
    monkeypatch.setenv("KD_ALL_STEPS", "1")
    with pytest.raises(UsageError, match=r"'--epoch' \(no script has it\); did you mean --epochs\?; each step's valid "
                                         r"names: python <step>.py --help \(fine_tuning_teacher, distill_student, "
                                         r"evaluate_models, bench\)$"):
        configure(namespace(), ["--epoch=3"], "fine_tuning_teacher")


def test_precedence_flag_over_file_over_default(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text('epochs = 5\nbatch_size = 4\n[fine_tuning_teacher]\nmodel_name = "m"\n'
                 '[distill_student]\nstudents = []\n')
    ns = namespace()
    cfg = configure(ns, ["--config", str(f), "--batch_size=2"], "fine_tuning_teacher")
    assert (ns["EPOCHS"], ns["BATCH_SIZE"], ns["MODEL_NAME"], ns["OVERWRITE"]) == (5.0, 2, "m", False)
    assert cfg["_config_file"] == str(f)


def test_file_errors(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[fine_tuning_teacher]\nepochz = 1\n")
    with pytest.raises(UsageError, match=r"unknown constant 'epochz'"):
        configure(namespace(), ["--config", str(f)], "fine_tuning_teacher")
    f.write_text("nonsense_key = 1\n")
    with pytest.raises(UsageError, match=r"unknown key 'nonsense_key' \(not a constant of any script, nor a table named "
                                         r"after one of [a-z_, ]+\)$"):          # nothing close: no suggestion
        configure(namespace(), ["--config", str(f)], "fine_tuning_teacher")
    f.write_text('lable_column = "category"\n')      # a typo of a shared key: the name it is close to
    with pytest.raises(UsageError, match=r"unknown key 'lable_column' .*; did you mean label_column\?$"):
        configure(namespace(), ["--config", str(f)], "fine_tuning_teacher")
    f.write_text('batch_size = "big"\n')
    with pytest.raises(UsageError, match=r"expected int, got str$"):
        configure(namespace(), ["--config", str(f)], "fine_tuning_teacher")
    import fine_tuning_teacher as ft
    f.write_text('label_names = "bad, good"\n')    # the flag's form (--label_names=bad,good) in a file: the file's said
    with pytest.raises(UsageError, match=r"^label_names = 'bad, good' in \S+bad.toml: expected list, got str; a list is "
                                         r'written in brackets: label_names = \["bad", "good"\]$'):
        configure(vars(ft), ["--config", str(f)], "fine_tuning_teacher")
    f.write_text('label_names = "don\'t, [x]"\n')     # not a plain list of words: no form to offer
    with pytest.raises(UsageError, match=r"expected list, got str$"):
        configure(vars(ft), ["--config", str(f)], "fine_tuning_teacher")
    import distill_student as ds                        # JSON on the command line: TOML's parser error alone, before
    with pytest.raises(UsageError, match=r'^--students=\'\[\{"name": "x", "layers": \[0\]\}\]\': expected list \(.*\); it is '
                                         r'read as TOML, not JSON: write a table as \{name = "x", layers = \[0\]\}$'):
        configure(vars(ds), ['--students=[{"name": "x", "layers": [0]}]'], "distill_student")
    with pytest.raises(UsageError, match=r"^--students='\[\{name = \}\]': expected list \([^;]*\)$"):   # TOML, just wrong
        configure(vars(ds), ["--students=[{name = }]"], "distill_student")
    configure(vars(ft), [], "fine_tuning_teacher")
    with pytest.raises(UsageError, match=r"no such file; experiments are in configs/: bert.toml"):
        configure(namespace(), ["--config", str(tmp_path / "missing.toml")], "fine_tuning_teacher")
    with pytest.raises(UsageError, match=r"^--config configs/qiuck.toml: no such file; did you mean configs/quick.toml\?; "):
        configure(namespace(), ["--config", "configs/qiuck.toml"], "fine_tuning_teacher")


def test_second_call_starts_from_the_defaults():
    ns = namespace()
    configure(ns, ["--epochs=9"], "fine_tuning_teacher")
    configure(ns, [], "fine_tuning_teacher")
    assert ns["EPOCHS"] == 2.0


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_are_valid(config):
    """Every script reads every shipped experiment: known names, right types, values in range, valid students."""
    import importlib
    for script in ("fine_tuning_teacher", "distill_student", "evaluate_models", "bench"):
        module = importlib.import_module(script)
        try:
            cfg = configure(vars(module), ["--config", str(config)], script)
            assert module.EXPERIMENT == config.stem
            if script == "distill_student":
                module.check_students(module.STUDENTS, cfg)
            if script == "bench":                   # its series: each LEVERS entry a known lever in range, labels unique
                module.check_series(cfg)
        finally:
            configure(vars(module), [], script)


def test_full_experiment_has_three_kinds_of_students_with_baselines():
    import distill_student as ds
    try:
        cfg = configure(vars(ds), ["--config", str(ROOT / "configs" / "full.toml")], "distill_student")
        kinds = {s["name"]: ("model" in s, "layers" in s) for s in ds.STUDENTS}
        assert kinds == {"minilm-L6": (True, False), "mpnet-L6": (False, True), "minilm-L3": (True, True)}
        settings = [ds.student_settings(s, cfg) for s in ds.STUDENTS]
        assert all(st["baseline"] and st["transfer_size"] == 20000 for st in settings) and ds.MAX_LENGTH == 512
        # shrunk by flags for a CPU smoke run: the command line beats every per-student value
        cfg = configure(vars(ds), ["--config", str(ROOT / "configs" / "full.toml"), "--learning_rate=1e-3"], "distill_student")
        assert {ds.student_settings(s, cfg)["learning_rate"] for s in ds.STUDENTS} == {1e-3}
    finally:
        configure(vars(ds), [], "distill_student")


def run_script(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "fine_tuning_teacher.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_cli_errors_are_one_line(tmp_path):
    import os
    r = run_script("--epoch=1")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: unknown constant '--epoch'") and "epochs" in r.stderr
    env = dict(os.environ, IMDB_DIR=str(tmp_path / "missing"))
    r = run_script(f"--output_dir={tmp_path}", env=env)
    assert r.returncode == 2 and "no such folder" in r.stderr.splitlines()[-1]
    assert r.stderr.strip().splitlines()[-1].startswith("error: IMDB_DIR=")


def test_flags_of_other_scripts_are_ignored_and_unknown_ones_refused():
    # run_experiment.sh gives every step the same flags: each takes its own and ignores the other steps'
    import evaluate_models as ev
    argv = ["--overwrite=true", "--quantize_kinds", "distilled", "--Cache-Dir=/c", "--seed=1", "--json"]
    try:
        cfg = configure(vars(ds_module()), argv, "distill_student")
        assert (cfg["OVERWRITE"], cfg["CACHE_DIR"], cfg["SEED"]) == (True, "/c", 1)
        assert cfg["_ignored"] == ["JSON", "QUANTIZE_KINDS"] and cfg["_sources"]["SEED"] == "flag"
        cfg = configure(vars(ev), argv, "evaluate_models")
        assert cfg["QUANTIZE_KINDS"] == ["distilled"] and "CACHE_DIR" in cfg["_ignored"]
        with pytest.raises(UsageError, match=r"unknown constant '--epochz' \(no script has it\); did you mean --epochs\?; valid names for distill_student.py"):
            configure(vars(ds_module()), ["--epochz=1"], "distill_student")
    finally:
        configure(vars(ds_module()), [], "distill_student")
        configure(vars(ev), [], "evaluate_models")


def test_a_scripts_internal_constant_a_missing_config_file_and_infinity_are_refused():
    from configurator import script_constants
    assert "GPU_PEAKS" not in script_constants("bench") and "PEAK_TFLOPS" in script_constants("bench")
    try:
        # not a setting of any script (bench.py's table of GPUs): it was taken as another step's flag, ignored
        with pytest.raises(UsageError, match=r"^unknown constant '--gpu_peaks' \(no script has it\)"):
            configure(vars(ds_module()), ["--gpu_peaks=1"], "distill_student")
        for argv in (["--config"], ["--config="], ["--config", "--epochs=1"]):     # it read the defaults, silently
            with pytest.raises(UsageError, match=r"^--config needs a file: --config configs/NAME.toml"):
                configure(vars(ds_module()), argv, "distill_student")
        for bad in ("--learning_rate=inf", "--epochs=1e309", "--alpha=nan"):       # inf passed "above 0"
            with pytest.raises(UsageError, match=rf"^--{bad[2:].split('=')[0]}=\S+: must be a finite number$"):
                configure(vars(ds_module()), [bad], "distill_student")
    finally:
        configure(vars(ds_module()), [], "distill_student")


def ds_module():
    import distill_student
    return distill_student


def test_scripts_import_no_setting_names():
    """A script's settings are its UPPER_CASE globals of a plain type: an imported one would pass for its own."""
    import importlib

    from configurator import CONFIG_TYPES, SCRIPTS, script_constants
    for script in SCRIPTS:
        module = importlib.import_module(script)
        names = {k for k, v in vars(module).items() if k.isupper() and not k.startswith("_") and isinstance(v, CONFIG_TYPES)}
        assert names and names <= script_constants(script), (script, names - script_constants(script))


def test_a_constant_edited_in_a_script_keeps_the_type_its_annotation_declares(tmp_path):
    # users edit the constants block; the annotation, not the edited value, says what the setting is
    import fine_tuning_teacher as ft

    def edited(**values):
        return dict(vars(ft)) | values        # a fresh namespace: configure remembers each one's constants

    for name, value, kind in [("OVERWRITE", "false", "bool"), ("EPOCHS", "2", "float"), ("MAX_LENGTH", 64.0, "int"),
                              ("LABEL_NAMES", "neg,pos", "list")]:
        with pytest.raises(UsageError, match=rf"^{name} = {re.escape(repr(value))} in fine_tuning_teacher.py: "
                                             rf"expected {kind} .*annotation `{name}: {kind}`"):
            configure(edited(**{name: value}), [], "fine_tuning_teacher")
    ns = edited(EPOCHS=1)                      # an int where a float is declared: the float, so a file's 1.0 still fits
    (tmp_path / "x.toml").write_text("epochs = 1.5\n")
    assert configure(ns, [], "fine_tuning_teacher")["EPOCHS"] == 1.0 and isinstance(ns["EPOCHS"], float)
    assert configure(ns, ["--config", str(tmp_path / "x.toml")], "fine_tuning_teacher")["EPOCHS"] == 1.5
    assert configure(ns, ["--epochs=0.5"], "fine_tuning_teacher")["EPOCHS"] == 0.5
    # Python 3.14 (PEP 649): a module's globals hold __annotate__, not __annotations__, until someone asks for them
    lazy = {k: v for k, v in vars(ft).items() if k != "__annotations__"} | {"EPOCHS": 1, "MAX_LENGTH": 256.0}
    lazy["__annotate__"] = lambda fmt: dict(vars(ft)["__annotations__"]) if fmt == 1 else NotImplemented
    with pytest.raises(UsageError, match=r"^MAX_LENGTH = 256.0 in fine_tuning_teacher.py: expected int"):
        configure(lazy, [], "fine_tuning_teacher")
    assert configure(lazy | {"MAX_LENGTH": 256}, [], "fine_tuning_teacher")["EPOCHS"] == 1.0


def test_help_shows_values_as_a_flag_reads_them_back():
    import distill_student as ds
    r = subprocess.run([sys.executable, str(ROOT / "distill_student.py"), "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    line = next(l for l in r.stdout.splitlines() if l.startswith("  --students="))
    value = shlex.split(line.split("=", 1)[1].split("    #")[0])[0]
    assert configure(dict(vars(ds)), [f"--students={value}"], "distill_student")["STUDENTS"] == ds.STUDENTS
    assert "  --batch_size=32    # per device" in r.stdout    # the comment of an annotated constant
    assert "constants (override with --name=value):" in r.stdout
    # beside --config and flags: the values they set, not the defaults (a user checking what a run would use)
    r = subprocess.run([sys.executable, str(ROOT / "distill_student.py"), "--config", "configs/quick.toml", "--alpha=0.3",
                        "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "constants (override with --name=value; the values --config configs/quick.toml and the " \
        "flags set):" in r.stdout, r.stderr
    assert "  --alpha=0.3    # " in r.stdout and "  --experiment=\"quick\"    # " in r.stdout


def test_boolean_flag_takes_a_following_true_or_false():
    ns = namespace()
    cfg = configure(ns, ["--overwrite", "false", "text"], "fine_tuning_teacher")
    assert ns["OVERWRITE"] is False and cfg["_args"] == ["text"]
    configure(ns, ["--overwrite", "yes"], "fine_tuning_teacher")
    assert ns["OVERWRITE"] is True
    configure(ns, ["--overwrite", "text"], "fine_tuning_teacher")         # not a boolean word: a positional
    assert ns["OVERWRITE"] is True


def test_after_a_double_dash_everything_is_an_argument():
    ns = namespace()
    cfg = configure(ns, ["--overwrite", "--", "--epochs=3 is a text", "--help", "-h"], "fine_tuning_teacher")
    assert ns["OVERWRITE"] is True and ns["EPOCHS"] == 2.0 and cfg["_args"] == ["--epochs=3 is a text", "--help", "-h"]


def test_help_lists_each_setting_with_its_comment_and_no_private_names():
    r = subprocess.run([sys.executable, str(ROOT / "evaluate_models.py"), "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "--seed=42    # picks the test subset and the latency requests" in r.stdout
    assert "--fp32_models=[\"\"]    # models that also get an fp32 row when they get a bf16 one ([\"\"] = all; the " \
           "teacher always does); the others are compared by their bf16 rows" in r.stdout       # a comment on two lines
    assert "--_columns" not in r.stdout
    import evaluate_models as ev
    try:
        assert "_COLUMNS" not in configure(vars(ev), [], "evaluate_models")
        with pytest.raises(UsageError, match="unknown constant '--_columns'"):
            configure(vars(ev), ["--_columns=[]"], "evaluate_models")
    finally:
        configure(vars(ev), [], "evaluate_models")


def test_the_readmes_own_data_config_is_valid(tmp_path):
    """The experiment file the README tells users to write: every script reads it (names, types, ranges)."""
    import importlib
    readme = (ROOT / "README.md").read_text()
    text = readme.split("cat > configs/mine.toml <<'TOML'\n", 1)[1].split("\nTOML\n", 1)[0]
    f = tmp_path / "mine.toml"
    f.write_text(text)
    for script in ("fine_tuning_teacher", "distill_student", "evaluate_models"):
        module = importlib.import_module(script)
        try:
            cfg = configure(vars(module), ["--config", str(f)], script)
            assert module.EXPERIMENT == "mine"
            if script == "evaluate_models":           # the files a user ships are measured beside torch's
                assert module.ONNX is True
            if script != "evaluate_models":        # evaluation reads the teacher's data settings
                assert (cfg["DATA"], module.TEXT_COLUMN, module.LABEL_COLUMN) == \
                    (str(Path.cwd() / "data/reviews.csv"), "review", "sentiment")    # read from where it was typed
            if script in ("fine_tuning_teacher", "distill_student"):    # students learn at their own rate
                assert module.LEARNING_RATE == {"fine_tuning_teacher": 1e-4, "distill_student": 3e-4}[script]
        finally:
            configure(vars(module), [], script)
    # its integer-labels line, uncommented
    import distill_student
    import fine_tuning_teacher
    f.write_text(text.replace("# label_names = ", "label_names = "))
    try:
        configure(vars(fine_tuning_teacher), ["--config", str(f)], "fine_tuning_teacher")
        assert fine_tuning_teacher.LABEL_NAMES == ["negative", "positive"]
    finally:
        configure(vars(fine_tuning_teacher), [], "fine_tuning_teacher")
    # its few-labels variant: the [distill_student] table it gives in place of the first file's
    table = readme.split("In `configs/mine.toml`, replace `[distill_student]`:\n\n```toml\n", 1)[1].split("\n```", 1)[0]
    f.write_text(text.split("[distill_student]", 1)[0] + table + "\n")
    try:
        cfg = configure(vars(distill_student), ["--config", str(f)], "distill_student")
        assert (distill_student.TRANSFER_SIZE, cfg["TRANSFER_DATA"], distill_student.EPOCHS) == \
            (16000, str(Path.cwd() / "data/unlabeled.txt"), 2.0)
        assert [(s["name"], s["layers"], s["seed"]) for s in distill_student.STUDENTS] == [
            ("L1-s1", [0], 1), ("L1-s2", [0], 2), ("L1-s3", [0], 3)]
    finally:
        configure(vars(distill_student), [], "distill_student")


def test_stopped_before_a_run_started_is_one_line():
    # SIGTERM during the checks (a `timeout` that ends early): nothing to resume, and no second line
    code = ("import signal, configurator\n"
            "def main():\n"
            "    raise KeyboardInterrupt(signal.SIGTERM)     # what configurator._interrupt raises on SIGTERM\n"
            "configurator.run_main(main)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 143 and p.stderr == "error: stopped by SIGTERM\n"


def test_a_stop_of_the_whole_process_group_with_loader_workers_is_one_line():
    # `timeout` signals the process group: the data-loader workers die too, and torch raises "DataLoader worker
    # ... is killed by signal" over the unwinding; that is still the stop, not a crash with a traceback
    code = ("import sys, time, torch, configurator\n"
            "class Slow(torch.utils.data.Dataset):\n"
            "    def __len__(self): return 10000\n"
            "    def __getitem__(self, i): time.sleep(0.02); return i\n"
            "def main():\n"
            "    for i, _ in enumerate(torch.utils.data.DataLoader(Slow(), num_workers=2, batch_size=1)):\n"
            "        if i == 5: print('ready', flush=True)\n"
            "configurator.run_main(main)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        assert p.stdout.readline() == "ready\n"
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and err == "error: stopped by SIGTERM\n"


def test_a_stop_swallowed_by_a_finalizer_is_raised_again():
    # a KeyboardInterrupt raised inside a __del__ is only printed and the run goes on: it is raised again
    code = ("import os, signal, time, configurator\n"
            "def main():\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        time.sleep(5)\n"
            "    except KeyboardInterrupt:\n"
            "        pass                      # swallowed, as in a finalizer\n"
            "    time.sleep(60)\n"
            "configurator.run_main(main)\n")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 143 and p.stderr == "error: stopped by SIGTERM\n" and time.time() - t0 < 30



def test_threads_sets_torch_cpu_threads_and_is_not_a_training_setting(tmp_path):
    import torch

    from configurator import start_run
    from runs import resume_settings
    before = torch.get_num_threads()
    want = 3 if before != 3 else 2                        # not the count the tests run with (conftest: 1)
    ns = {"__file__": "fine_tuning_teacher.py", "OUTPUT_DIR": str(tmp_path), "EXPERIMENT": "x", "THREADS": 0, "EPOCHS": 2.0}
    try:
        cfg = start_run(ns, [f"--threads={want}"], "fine_tuning_teacher", "t.log")
        assert torch.get_num_threads() == want and cfg["THREADS"] == want
        assert resume_settings(cfg) == {"epochs": 2.0, "devices": 1}   # resumed or kept with other threads: the same run
    finally:
        torch.set_num_threads(before)


def test_a_setting_added_later_leaves_the_runs_recorded_before_it_as_they_were():
    # a published record or finished model made before TRANSFER_TEXT_COLUMN existed was made as its default makes a
    # run: kept (not refused as "other settings"); a value set otherwise is another run
    from runs import differences, resume_settings
    recorded = {"epochs": 2.0, "devices": 1}
    assert resume_settings({"EPOCHS": 2.0, "TRANSFER_TEXT_COLUMN": ""}) == recorded
    assert differences(recorded, resume_settings({"EPOCHS": 2.0, "TRANSFER_TEXT_COLUMN": "body"})) == \
        [("transfer_text_column", "", "body")]
    assert differences(recorded | {"transfer_text_column": "body"}, recorded) == [("transfer_text_column", "body", "")]


def test_a_baseline_is_not_told_apart_by_settings_it_never_uses():
    # a labels-only baseline learns from no teacher: a sweep of temperatures (or of intermediate losses) keeps the
    # baseline its entries share; its alpha, steps and seed, or a distilled run's temperature, still count
    from runs import differences
    base = {"epochs": 2.0, "student": {"distilled": False, "alpha": 1.0, "temperature": 2.0, "hidden_weight": 0.0,
                                       "attention_weight": 0.0, "seed": 1}}
    other = {"temperature": 4.0, "hidden_weight": 1.0, "attention_weight": 1.0}
    assert differences(base, base | {"student": base["student"] | other}) == []
    assert differences(base, base | {"student": base["student"] | other | {"seed": 2}}) == [("student.seed", 1, 2)]
    twin = base | {"student": base["student"] | {"distilled": True}}
    assert differences(twin, twin | {"student": twin["student"] | {"temperature": 4.0}}) == [("student.temperature", 2.0, 4.0)]


def test_a_studys_choice_and_a_baselines_steps_do_not_make_a_finished_distilled_run_another():
    # a study's second phase (--best_seeds=3 after the sweep, or 3 -> 5) chooses among finished runs and adds runs of
    # other names; match_steps sets only the baselines' steps: neither may refuse a finished distilled student. Records
    # written before best_seeds was listed carry it; a baseline's match_steps still counts
    from runs import differences, resume_settings
    sweep = resume_settings({"EPOCHS": 2.0, "BEST_SEEDS": 0, "CHOOSE_BY": "accuracy", "MATCH_STEPS": True},
                            student={"distilled": True, "seed": 1})
    assert "best_seeds" not in sweep and "choose_by" not in sweep
    study = resume_settings({"EPOCHS": 2.0, "BEST_SEEDS": 3, "CHOOSE_BY": "gain", "MATCH_STEPS": False},
                            student={"distilled": True, "seed": 1})
    assert differences(sweep | {"best_seeds": 0}, study) == []
    assert differences(sweep, study | {"epochs": 3.0}) == [("epochs", 2.0, 3.0)]
    baseline = {"student": {"distilled": False, "seed": 1}}
    assert differences(sweep | baseline, study | baseline) == [("match_steps", True, False)]


def test_a_stop_says_whether_the_training_will_resume(tmp_path, monkeypatch, capsys):
    import configurator

    def stop():
        raise KeyboardInterrupt
    monkeypatch.setattr(configurator, "_RUN_ROOT", [tmp_path])
    monkeypatch.setattr(configurator, "_RUN_SCRIPT", ["distill_student"])
    for saved in (False, True):
        if saved:
            (tmp_path / "checkpoints" / "students" / "L3" / "checkpoint-40").mkdir(parents=True)
        with pytest.raises(SystemExit) as e:
            configurator.run_main(stop)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 128 + 2 and err.startswith("error: stopped by SIGINT: finished models are kept")
        assert ("resumes from its last checkpoint" in err) is saved and ("it had saved no checkpoint" in err) is not saved
    monkeypatch.setattr(configurator, "_RUN_SCRIPT", ["evaluate_models"])     # a script that trains nothing
    with pytest.raises(SystemExit):
        configurator.run_main(stop)
    assert capsys.readouterr().err.strip() == "error: stopped by SIGINT: finished models and the last results are kept; " \
        "the same command runs it again"


def test_local_data_paths_are_read_from_where_they_were_typed(tmp_path, monkeypatch):
    # made absolute when resolved: the run reads them from any folder (records keep them portable: test_own_data)
    import distill_student
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.csv").write_text("text,label\nok,1\n")
    cfg = configure(vars(distill_student), ["--data=mine.csv", "--transfer_data=~/unlabeled.jsonl"], "distill_student")
    assert cfg["DATA"] == str(tmp_path / "mine.csv") and cfg["TRANSFER_DATA"] == str(Path.home() / "unlabeled.jsonl")
    for data, transfer in (("imdb", "validation"), ("someone/tweets", "")):      # keywords and hub ids stay
        cfg = configure(vars(distill_student), [f"--data={data}", f"--transfer_data={transfer}"], "distill_student")
        assert (cfg["DATA"], cfg["TRANSFER_DATA"], cfg["DATA_DIR"]) == (data, transfer, "")


def test_records_name_a_config_file_in_the_checkout_as_a_clone_would(tmp_path, monkeypatch):
    # run_experiment.sh passes the file absolute: /work/run-l1/configs/tweets-l1.toml was recorded in published runs
    import distill_student
    from configurator import public_config
    monkeypatch.chdir(tmp_path)
    for given in (str(ROOT / "configs" / "quick.toml"), os.path.relpath(ROOT / "configs" / "quick.toml")):
        cfg = configure(vars(distill_student), ["--config", given], "distill_student")
        assert public_config(cfg)["config_file"] == "configs/quick.toml", given
    (tmp_path / "mine.toml").write_text('experiment = "mine"\n')     # far from the checkout: absolute, as data paths
    assert public_config(configure(vars(distill_student), ["--config", "mine.toml"], "distill_student"))["config_file"] \
        == str(tmp_path / "mine.toml")
    configure(vars(distill_student), [], "distill_student")


def test_records_name_the_commit_and_the_scripts_edited_since(tmp_path, monkeypatch):
    # a constant edited in a script is part of how a model was made: the record says which files differ from the commit
    from configurator import code_version, library_versions
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "train.py").write_text("EPOCHS: float = 2.0\n")
    (tmp_path / "notes.md").write_text("a\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(tmp_path) == {"commit": head, "modified": []}
    (tmp_path / "train.py").write_text("EPOCHS: float = 1.0\n")
    (tmp_path / "notes.md").write_text("b\n")                           # not code: not listed
    assert code_version(tmp_path) == {"commit": head, "modified": ["train.py"]}
    assert code_version(tmp_path / "no-such-folder") is None
    # a copy without git (lent_gpu.sh's, a device machine's) takes what the copying script found
    monkeypatch.setenv("KD_CODE_VERSION", '{"commit": "abc", "modified": null}')
    assert code_version(tmp_path / "no-such-folder") == {"commit": "abc", "modified": None}
    assert code_version(tmp_path)["commit"] == head                       # git, where there is one, comes first
    monkeypatch.setenv("KD_CODE_VERSION", '{"commit": "a"b"}')             # not JSON: no commit named, no traceback
    assert code_version(tmp_path / "no-such-folder") is None
    assert set(library_versions()) >= {"python", "torch", "transformers", "code"}


def test_what_the_checks_log_before_the_runs_log_exists_reaches_it_or_stderr(capsys):
    # a script's checks read the data before start_run sets up its log: their records are held for it, and when a
    # check fails, its warnings are printed before the error (INFO ones go with the run that did not start)
    from configurator import held_records, log
    with held_records() as early:
        log.info("--data=d: train: train.csv")
        log.warning("2 files read as its train split")
    assert [(r.levelname, r.getMessage()) for r in early] == [("INFO", "--data=d: train: train.csv"),
                                                              ("WARNING", "2 files read as its train split")]
    assert capsys.readouterr().err == ""                    # held, not printed as well
    with pytest.raises(UsageError, match="bad data"), held_records():
        log.info("--data=d: train: a.csv")
        log.warning("a warning before the error")
        raise UsageError("bad data")
    err = capsys.readouterr().err
    assert "a warning before the error" in err and "a.csv" not in err


def test_a_runs_log_has_what_its_checks_logged_once_in_order_before_its_config(tmp_path):
    from configurator import log, start_run

    def check(cfg):
        seen = {"files": ["train.csv"]}
        log.info("--data=d: train: %s", seen["files"])
        seen["files"].append("later.csv")             # logged as it read then
        log.warning("2 files read as its train split")
    ns = {"__file__": "fine_tuning_teacher.py", "OUTPUT_DIR": str(tmp_path), "EXPERIMENT": "x", "EPOCHS": 2.0,
          "LABEL_NAMES": [""]}
    start_run(ns, [], "fine_tuning_teacher", "t.log", check=check)
    lines = (tmp_path / "x" / "logs" / "t.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == ["INFO --data=d: train: ['train.csv']",
                                                           "WARNING 2 files read as its train split"]
    assert lines[2].split(" ", 1)[1].startswith("INFO config: ") and len(lines) == 3
    assert "'epochs': 2.0, 'label_names': []," in lines[2]          # a list left unset reads as one


def test_no_progress_bars_when_stderr_is_a_file(tmp_path):
    # nohup / `> log 2>&1`: tqdm's bars would fill the file; on a terminal (or with TQDM_DISABLE= set empty) they stay
    # (a script's process, as its sys.argv[0] says; a notebook importing inference keeps its bars)
    def disabled(program: str, prelude: str = "", **extra) -> str:
        code = f"{prelude}import sys; sys.argv[0] = {program!r}; import configurator, tqdm; print(tqdm.tqdm(range(3)).disable)"
        env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | extra
        with open(tmp_path / "err", "w") as err:
            return subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                  cwd=ROOT).stdout.strip()
    assert disabled("distill_student.py") == "True" and disabled("/x/evaluate_models.py") == "True"
    assert disabled("distill_student.py", TQDM_DISABLE="") == "False"
    assert disabled("ipykernel_launcher.py") == "False"
    kernel = "import sys, types; sys.modules['ipykernel'] = types.ModuleType('ipykernel'); "   # %run in a notebook
    assert disabled("distill_student.py", prelude=kernel) == "False"


def test_a_stop_held_while_a_set_of_files_is_written_takes_effect_after_it_unless_ignored():
    import os
    import signal

    from configurator import stops_held
    done = []
    with pytest.raises(KeyboardInterrupt):
        with stops_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the block")
    assert done == ["the rest of the block"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)       # `cmd &` without job control: Ctrl-C is not for it
    try:
        with stops_held():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_overwrite_command_is_told_again_by_what_it_asks_not_how_it_was_typed(tmp_path, monkeypatch):
    from runs import same_command
    monkeypatch.chdir(ROOT)
    typed = ["--config", "configs/tiny.toml", "--overwrite=true", "--epochs=1", "--seed", "3"]
    assert same_command(typed, ["--seed=3", "--OVERWRITE", "--epochs", "1", f"--config={ROOT / 'configs' / 'tiny.toml'}"])
    assert same_command(typed, typed[:2] + ["--overwrite=yes", "--epochs=2", "--epochs=1", "--seed=3"])   # the last counts
    assert not same_command(typed, typed[:-1] + ["4"])                          # another value
    assert not same_command(typed, typed + ["--logging_steps=3"])               # a flag more
    assert not same_command(typed, ["--config", "configs/quick.toml", *typed[2:]])   # another config file
    assert not same_command(typed, typed[:2] + ["--overwrite=false", *typed[3:]])
    assert same_command(["--overwrite=1"], ["--overwrite=on"])                   # a boolean's spellings
    assert not same_command(["--transfer_data="], ["--transfer_data=yes"])     # not a boolean: as typed


def test_an_unreachable_hub_turns_offline_mode_on(monkeypatch):
    # without HF_HUB_OFFLINE, huggingface_hub retried each cached file's lookup: 95 s for one tokenizer, no network
    import socket
    import datasets.config
    import huggingface_hub.constants as hub
    import configurator
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", *configurator.PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)               # restored as they were when the test ends
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    calls, looked_up = [], []

    def no_dns(host, port, type=0):
        looked_up.append((host, port))
        raise socket.gaierror(-2, "Name or service not known")

    def resolves(host, port, type=0):
        looked_up.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: calls.append((address, timeout)) or socket.socket())
    assert configurator.offline_if_hub_unreachable() == "huggingface.co: Name or service not known"
    assert looked_up == [("huggingface.co", 443)] and calls == []
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hub.is_offline_mode() and datasets.config.HF_HUB_OFFLINE is True
    assert configurator.offline_if_hub_unreachable() is None and len(looked_up) == 1   # set now: not checked again
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")                                         # the user's word, either way
    assert configurator.offline_if_hub_unreachable() is None and len(looked_up) == 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")                            # a direct connection proves nothing
    assert configurator.offline_if_hub_unreachable() is None and len(looked_up) == 1
    monkeypatch.delenv("HTTPS_PROXY")

    def reset():
        os.environ.pop("HF_HUB_OFFLINE", None)
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    reset()
    monkeypatch.setattr(socket, "getaddrinfo", resolves)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080")                     # a mirror, reachable
    assert configurator.offline_if_hub_unreachable() is None and calls[-1] == (("mirror.local", 8080), 3.0)
    assert "HF_HUB_OFFLINE" not in os.environ and not hub.is_offline_mode()
    monkeypatch.delenv("HF_ENDPOINT")

    def refused(address, timeout):
        raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(socket, "create_connection", refused)
    assert configurator.offline_if_hub_unreachable() == "huggingface.co: Connection refused"
    reset()
    # a dead first address (a broken IPv6 route), then a live one: slower than timeout_s in all, and reachable
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: time.sleep(2 * timeout) or socket.socket())
    assert configurator.offline_if_hub_unreachable(timeout_s=0.3) is None and "HF_HUB_OFFLINE" not in os.environ
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(5) or [])   # a name lookup that hangs on
    started = time.monotonic()
    assert configurator.offline_if_hub_unreachable(timeout_s=0.5) == "huggingface.co: no answer to the name lookup within 0.5 s"
    assert time.monotonic() - started < 2 and os.environ["HF_HUB_OFFLINE"] == "1"


def _stop_script(tmp_path, body: str) -> Path:
    """A script whose main() runs `body` under configurator.run_main, writing 'started' first."""
    script = tmp_path / "stopped.py"
    script.write_text(f"import os, signal, sys, time\nfrom pathlib import Path\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "import configurator\n\ndef main():\n    Path('started').touch()\n"
                      + "".join(f"    {line}\n" for line in body.splitlines())
                      + "\nconfigurator.run_main(main)\n")
    return script


def _wait_for(path: Path, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        if path.exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


def test_a_second_sigterm_while_unwinding_does_not_cut_the_unwinding_short(tmp_path):
    # run_experiment.sh passes a SIGTERM on to its step, which also gets the process group's: one stop told twice
    # (and an unwinding of 3 s is not raised into again by the stop's own insisting, for a stop swallowed somewhere)
    script = _stop_script(tmp_path, "try:\n    time.sleep(60)\nfinally:\n    os.kill(os.getpid(), signal.SIGTERM)\n"
                                    "    time.sleep(3)\n    Path('cleaned up').touch()")
    p = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "started")
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=30)[1]
    finally:
        p.kill()
    assert p.returncode == 143 and (tmp_path / "cleaned up").exists(), err
    assert err.strip() == "error: stopped by SIGTERM"


def test_a_step_of_run_experiment_takes_ctrl_c_though_started_in_the_background(tmp_path):
    # bash starts a background command with SIGINT ignored; run_experiment.sh runs each step so (to hear a kill meant
    # for it while the step runs), and marks it: the terminal's Ctrl-C still stops it
    script = _stop_script(tmp_path, "time.sleep(60)")
    for marked in (True, False):
        (tmp_path / "started").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "KD_STEP_OF_RUN"} | ({"KD_STEP_OF_RUN": "1"} if marked else {})
        p = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            _wait_for(tmp_path / "started")
            p.send_signal(signal.SIGINT)
            try:
                err = p.communicate(timeout=5)[1]
            except subprocess.TimeoutExpired:
                err = None                                   # ignored, as for any `cmd &` of a script without job control
        finally:
            p.kill()
            p.wait()
        if marked:
            assert p.returncode == 130 and err.strip() == "error: stopped by SIGINT", err
        else:
            assert err is None


def test_a_script_run_on_its_own_finds_the_offline_copies_beside_the_checkout(tmp_path):
    # run_experiment.sh found ../shared, the same script run alone (the README's retrain command) did not: a hub error
    checkout, shared = tmp_path / "repo", tmp_path / "shared"
    checkout.mkdir()
    shutil.copy(ROOT / "configurator.py", checkout)
    probe = ("import os, sys; sys.argv[0] = {!r}; import configurator; "
             "print(*(os.environ.get(k) for k in ('IMDB_DIR', 'HF_HUB_CACHE', 'HF_HUB_OFFLINE')))")
    env = {k: v for k, v in os.environ.items() if k not in ("IMDB_DIR", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}

    def seen(script, **extra):
        return subprocess.run([sys.executable, "-c", probe.format(script)], cwd=checkout, env=env | extra,
                              capture_output=True, text=True, check=True).stdout.split()
    assert seen("fine_tuning_teacher.py") == ["None"] * 3                          # no ../shared: nothing set
    (shared / "data" / "imdb").mkdir(parents=True)
    assert seen("fine_tuning_teacher.py") == [str(shared / "data" / "imdb"), str(shared / "hf-cache"), "1"]
    assert seen("distill_student.py", HF_HUB_CACHE="/mine") == [str(shared / "data" / "imdb"), "/mine", "1"]  # kept
    assert seen("distill_student.py", IMDB_DIR="/data") == ["/data", "None", "None"]   # the user's copy: none of it
    assert seen("notebook.py") == ["None"] * 3                                      # not a script of this project
    assert seen("inference.py") == ["None"] * 3              # reads no IMDb; a hub classifier may be downloaded


def test_a_shared_cpu_trains_with_the_threads_that_fit_beside_the_others(monkeypatch, caplog):
    # THREADS = 0 where another process keeps a core busy: 2 threads waiting on each other's turn ran a step 1.7-2.5x
    # slower (outputs/readme-figures, two runs)
    import torch

    import configurator
    assert [configurator.spare_threads(2, o, 2) for o in (None, 0.0, 0.4, 0.5, 0.6, 1.0, 1.4, 1.6, 3.0)] == \
        [2, 2, 2, 2, 1, 1, 1, 1, 1]                                       # half rounds up: 1.5 free cores are 2
    assert configurator.spare_threads(8, 2.2, 8) == 6 and configurator.spare_threads(1, 0.9, 2) == 1
    assert configurator.spare_threads(4, 10.0, 64) == 4                  # OMP_NUM_THREADS=4 on a big, busy machine
    assert configurator.spare_threads(8, 4.0, 16) == 8                   # 8 physical of 16 logical cores, 4 busy
    threads = [2]
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads[-1])
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(configurator.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(configurator, "usable_cores", lambda: 2)
    monkeypatch.setattr(configurator, "cpu_quota", lambda: None)
    monkeypatch.setattr(configurator, "_TORCH_THREADS", [2])              # torch's default, read once a process
    now = [(10.0, 125.0, 15.0)]                                            # (wall s, machine CPU s, own CPU s)
    monkeypatch.setattr(configurator, "cpu_sample", lambda: now[0])
    monkeypatch.setattr(configurator, "_WINDOW", [(0.0, 100.0, 5.0)])     # others: (25 - 10) / 10 = 1.5 cores
    with caplog.at_level("WARNING", logger="kd"):
        configurator.set_threads(0, "fine_tuning_teacher")
    assert threads[-1] == 1 and "keep 1.5 of this machine's" in caplog.text and "--threads=N" in caplog.text
    assert configurator._WINDOW == [now[0]]                               # the next run measures from here
    now[0] = (20.0, 130.5, 20.0)                                           # 10 s later, others 0.05: the default again
    configurator.set_threads(0, "distill_student")
    assert threads[-1] == 2
    configurator.set_threads(3, "distill_student")                       # --threads=3: as asked
    assert threads[-1] == 3
    busy = [(0.0, 100.0, 5.0), (10.0, 125.0, 15.0)]                        # 1.5 cores busy again
    configurator._WINDOW[:], now[0] = [busy[0]], busy[1]
    configurator.set_threads(0, "evaluate_models")                       # evaluation's speed figures: not cut
    assert threads[-1] == 2
    for skip in ({"WORLD_SIZE": "2"}, {"quota": 1.0}, {"affinity": 1}):   # torchrun's ranks; a container's quota; taskset
        configurator._WINDOW[:], now[0] = [busy[0]], busy[1]
        if "WORLD_SIZE" in skip:
            monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setattr(configurator, "cpu_quota", lambda: skip.get("quota"))
        monkeypatch.setattr(configurator, "usable_cores", lambda: skip.get("affinity", 2))
        configurator.set_threads(0, "fine_tuning_teacher")
        assert threads[-1] == 2, skip
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(configurator, "cpu_quota", lambda: None)
    monkeypatch.setattr(configurator, "usable_cores", lambda: 2)
    configurator._WINDOW[:], now[0] = [busy[0]], busy[1]
    configurator.set_threads(0, "fine_tuning_teacher")                   # the same, none of those: cut
    assert threads[-1] == 1
