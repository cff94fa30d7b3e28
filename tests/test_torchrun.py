"""The scripts run unchanged under torchrun (2 CPU processes, DDP over gloo): one teacher folder,
the teacher's logits computed by one process only, every student saved."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, narrow_student, tiny_args


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_teacher_and_students_under_torchrun(tmp_path, imdb_parquet):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["TQDM_DISABLE"] = ""      # progress bars kept in the captured output: rank 0's alone must show
    # configs/tiny.toml's students, and a narrower one whose hidden-state projections, applied in its forward, must
    # train under DDP (applied to the wrapped model's outputs outside it, they were none there, then "marked ready
    # twice" once found); one launch each (a launch costs two processes' transformers import)
    narrow = narrow_student(tmp_path / "narrow")
    students = ('[{name = "cut", layers = [1], transfer_size = 4}, {name = "roberta", model = "tiny:roberta", layers = [1], '
                f'transfer_size = 4, baseline = false}}, {{name = "narrow", model = "{narrow}", hidden_weight = 0.5, '
                'baseline = false, epochs = 1.0}]')
    runs = {}
    for script, extra in (("fine_tuning_teacher.py", []), ("distill_student.py", [f"--students={students}"])):
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            str(ROOT / script), *tiny_args(imdb_parquet, tmp_path, *extra)],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[script] = r.stderr
    root = tmp_path / "tiny"
    teacher = json.loads((root / "teacher" / "metrics.json").read_text())
    # each process takes half of an epoch's 5 batches (40 reviews, batch 8): 3 steps an epoch, 24 in 8 epochs; one
    # model, its gradients averaged over the two (DDP over gloo). Without a distributed state (transformers warns, as
    # below) the steps were the same but each process trained a copy of its own, unsynchronised, rank 0's saved
    assert teacher["train_examples"] == 40 and teacher["optimizer_steps"] == 24
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in runs["fine_tuning_teacher.py"]
    assert runs["distill_student.py"].count("teacher logits: 100%") == 1        # rank 0 only; rank 1 read the cache
    for name in ("cut", "cut-baseline", "roberta"):
        assert (root / "students" / name / "model.safetensors").exists()
    assert not list(root.glob("*.partial")) and not list((root / "students").glob("*.partial"))
    history = json.loads((root / "students" / "narrow" / "metrics.json").read_text())["log_history"]
    assert [h for h in history if "loss_hidden" in h] and all(h["loss_hidden"] > 0 for h in history if "loss_hidden" in h)


def test_processes_the_trainer_did_not_join_are_refused(monkeypatch):
    # the check that stops a run whose processes would each train a copy of their own (transformers 5 on CPUs
    # without use_cpu: DistributedType.NO, though num_processes said 2)
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    import training
    alone = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2, distributed_type=DistributedType.NO))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"^torchrun started 2 processes, but the Trainer set up no distributed training"):
        training.check_distributed(alone)
    training.check_distributed(SimpleNamespace(accelerator=SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)))
    monkeypatch.setenv("WORLD_SIZE", "1")
    training.check_distributed(alone)
