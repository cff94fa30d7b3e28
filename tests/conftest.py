"""Shared fixtures: tiny IMDb copies (parquet and aclImdb) written by the tests themselves."""
import os
import random
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one torch/OpenMP thread, in this process and the scripts it starts: the tiny models' ops are too small to
# split (alone on 2 cores the suite takes as long either way), and beside other work (a training run) two
# threads spin-waiting on each other made the 3-class end-to-end test take 130 s instead of 33 s
os.environ.setdefault("OMP_NUM_THREADS", "1")
# pytest started in the background by a shell without job control (`pytest &`, nohup) inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: the tests of Ctrl-C (a stop held while results are written, a
# stop mid-training) need the handler a terminal's pytest has (a test of the ignored case sets SIG_IGN itself)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

POS = ["great", "wonderful", "loved", "excellent", "best"]
NEG = ["awful", "boring", "worst", "terrible", "waste"]
FILLER = "the movie was a film with a story and acting and a plot that it had".split()


def make_reviews(n: int, seed: int, label: int | None = None):
    """n synthetic reviews, half positive, half negative (or all unlabeled), with <br /> breaks. The label
    is carried by two sentiment words among a few neutral ones: short enough that the tiny models learn
    it in a few dozen steps, so that a right and a wrong accuracy differ in the tests."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = (i % 2) if label is None else label
        words = rng.choices(FILLER, k=rng.randint(3, 10)) + rng.choices(POS if y == 1 else NEG, k=2)
        rng.shuffle(words)
        text = " ".join(words[:len(words) // 2]) + "<br /><br />" + " ".join(words[len(words) // 2:]) + "."
        rows.append((text, y if label is None else label))
    return rows


def write_parquet(folder: Path, hub_names: bool = False, sizes=(48, 24, 12)):
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder.mkdir(parents=True, exist_ok=True)
    for (split, n, label), seed in zip([("train", sizes[0], None), ("test", sizes[1], None),
                                        ("unsupervised", sizes[2], -1)], (1, 2, 3)):
        rows = make_reviews(n, seed, label)
        name = f"{split}-00000-of-00001.parquet" if hub_names else f"{split}.parquet"
        pq.write_table(pa.table({"text": [r[0] for r in rows], "label": pa.array([r[1] for r in rows], pa.int64())}),
                       folder / name)
    return folder


@pytest.fixture(scope="session")
def imdb_parquet(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("imdb_parquet"))


@pytest.fixture(scope="session")
def imdb_hub_named(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("imdb_hub") / "plain_text", hub_names=True).parent


@pytest.fixture(scope="session")
def imdb_aclimdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("acl") / "aclImdb"
    for split, n, seed in (("train", 16, 1), ("test", 8, 2)):
        for i, (text, y) in enumerate(make_reviews(n, seed)):
            d = root / split / ("pos" if y else "neg")
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}_{8 if y else 2}.txt").write_text(text)
    d = root / "train" / "unsup"
    d.mkdir(parents=True)
    for i, (text, _) in enumerate(make_reviews(4, 3, -1)):
        (d / f"{i}_0.txt").write_text(text)
    return root.parent


@pytest.fixture()
def no_imdb_env(monkeypatch):
    monkeypatch.delenv("IMDB_DIR", raising=False)


def stopped_at_save(run, when=lambda args, state: True) -> None:
    """Call run() (a training script's main) and stop it as Ctrl-C would (KeyboardInterrupt) once a checkpoint is saved
    for which when(args, state) holds (the Trainer's TrainingArguments and TrainerState); the stop is expected."""
    from transformers import TrainerCallback

    import training

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if when(args, state):
                raise KeyboardInterrupt("simulated stop after a checkpoint")
    with pytest.MonkeyPatch.context() as mp:           # the scripts' own callback slot (training.LogToFile)
        mp.setattr(training, "LogToFile", Stop)
        with pytest.raises(KeyboardInterrupt):
            run()


def narrow_student(folder: Path) -> Path:
    """A 1-layer BERT classifier narrower than the tiny teacher (hidden 16 vs 32) with its tokenizer, saved in
    `folder`: a student whose hidden-state loss needs projections."""
    from transformers import BertConfig, BertForSequenceClassification

    from models import build_tiny
    _, tok = build_tiny("bert")
    BertForSequenceClassification(BertConfig(vocab_size=max(tok.get_vocab().values()) + 1, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, num_labels=2,
                                             id2label={0: "negative", 1: "positive"},
                                             label2id={"negative": 0, "positive": 1})).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_args(data_dir, out_dir, *extra, cache=True):
    """Command-line arguments that run a script on the tiny experiment in a temporary folder."""
    return ["--config", str(ROOT / "configs" / "tiny.toml"), f"--data_dir={data_dir}",
            f"--output_dir={out_dir}", *([f"--cache_dir={out_dir}/cache"] if cache else []), *extra]


real_data = pytest.mark.skipif(not (os.environ.get("IMDB_DIR") and os.environ.get("HF_HUB_CACHE")),
                               reason="needs IMDB_DIR and HF_HUB_CACHE (../shared)")


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory, imdb_parquet):
    """A finished tiny experiment: teacher plus distilled and baseline students (outputs root)."""
    import distill_student
    import fine_tuning_teacher
    out = tmp_path_factory.mktemp("tiny_experiment")
    fine_tuning_teacher.main(tiny_args(imdb_parquet, out))
    distill_student.main(tiny_args(imdb_parquet, out))
    return out


def run_cli(script: str, *args: str, stdin: bytes = b""):
    """`python script args...` run in this process as its `__main__` runs it (configurator.run_main), with
    `stdin` as standard input: SimpleNamespace(returncode, stdout, stderr), the outputs as text. A subprocess
    would spend ~8 s importing torch and transformers per call; tests of what only a real process shows (the
    operating system's argv bytes, a closed pipe) start one."""
    import contextlib
    import importlib
    import io
    from types import SimpleNamespace

    from configurator import run_main
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging
    module = importlib.import_module(script.removesuffix(".py"))
    datasets_logging.enable_progress_bar()          # as a new process starts: the script must turn them off itself
    transformers_logging.enable_progress_bar()
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_main(lambda: module.main(list(args)))
    except SystemExit as e:
        code = e.code
    finally:
        sys.stdin = saved_stdin
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
