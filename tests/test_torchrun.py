"""The scripts run unchanged under torchrun (2 CPU processes, DDP over gloo): one teacher folder,
the teacher's logits computed by one process only, every student saved."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_args


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_teacher_and_students_under_torchrun(tmp_path, imdb_parquet):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["TQDM_DISABLE"] = ""      # progress bars kept in the captured output: rank 0's alone must show
    runs = {}
    for script in ("fine_tuning_teacher.py", "distill_student.py"):
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            str(ROOT / script), *tiny_args(imdb_parquet, tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[script] = r.stderr
    root = tmp_path / "tiny"
    assert json.loads((root / "teacher" / "metrics.json").read_text())["train_examples"] == 40
    assert runs["distill_student.py"].count("teacher logits: 100%") == 1        # rank 0 only; rank 1 read the cache
    for name in ("cut", "cut-baseline", "roberta"):
        assert (root / "students" / name / "model.safetensors").exists()
    assert not list(root.glob("*.partial")) and not list((root / "students").glob("*.partial"))
