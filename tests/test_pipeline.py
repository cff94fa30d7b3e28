"""run_experiment.sh: the three steps in order, each given only the flags it defines."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args):
    return subprocess.run(["bash", str(ROOT / "run_experiment.sh"), "configs/tiny.toml", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_run_experiment_passes_each_step_its_own_flags(imdb_parquet, tmp_path):
    # --overwrite and --cache_dir are not evaluate_models.py constants, --quantize is only its own
    p = run_script(f"--data_dir={imdb_parquet}", f"--output_dir={tmp_path}", f"--cache_dir={tmp_path}/cache",
                   "--overwrite=true", "--quantize=false", "--students=[{name = \"one\", layers = [0]}]")
    assert p.returncode == 0, p.stderr[-2000:]
    root = tmp_path / "tiny"
    timings = (root / "timings.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in timings[2:]] == \
        ["fine_tuning_teacher", "distill_student", "evaluate_models", "total"]
    rows = json.loads((root / "results.json").read_text())["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [("teacher", "fp32"), ("one", "fp32"), ("one-baseline", "fp32")]
    assert not (root / "timings.md.new").exists()


def test_run_experiment_unknown_flag_fails_with_the_valid_names(imdb_parquet, tmp_path):
    p = run_script(f"--data_dir={imdb_parquet}", f"--output_dir={tmp_path}", "--epochz=1")
    assert p.returncode != 0
    assert "unknown constant '--epochz'" in p.stderr and "valid names" in p.stderr
    assert not (tmp_path / "tiny" / "teacher").exists()
