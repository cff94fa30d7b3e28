"""Predict the sentiment of new text with any saved model (teacher or student).

Reads  a model folder written by fine_tuning_teacher.py or distill_student.py (default: the best
       student, by validation accuracy, of the most recent experiment under outputs/, else its teacher),
       and texts from the command line, a file (one review per line) or standard input.
Writes to stdout, per text: label, confidence, text; or JSON with --json. Notes go to stderr.

    python inference.py "I loved it" "Worst film ever"
    python inference.py --file reviews.txt            # one review per line; --file - reads stdin
    cat reviews.txt | python inference.py -
    python inference.py --model outputs/quick/students/L3 --json "A slow start, then wonderful."
    python inference.py                               # a few built-in examples

From Python:
    from inference import predict
    predict(["a great film"], model="outputs/quick/students/L3")   # [{'label': 'positive', 'score': 0.97}]

Long texts are truncated the way the model was trained (its config.json); batched, on GPU when present.
"""
import json
import sys
from pathlib import Path

from data_utils import PadCollator, UsageError, configure, encode, read_json, run_main

# --- I/O ---------------------------------------------------------------------------------------
MODEL = ""                        # model folder; "" = best student of the newest experiment, else its teacher
OUTPUT_DIR = "outputs"            # where experiments are looked for
FILE = ""                         # one review per line; "-" = standard input
JSON = False                      # print JSON instead of a table
# --- system ------------------------------------------------------------------------------------
BATCH_SIZE = 32                   # texts per forward pass
DEVICE = "auto"                   # auto | cpu | cuda

EXAMPLES = (
    "One of the best films I have seen in years: moving, funny and beautifully acted.",
    "A tedious, badly written mess. I want those two hours of my life back.",
    "The first half drags, but the ending more than makes up for it.",
    "Not bad, not great either. The lead tries hard but the script gives her nothing.",
)
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_LOADED: dict = {}


def saved_models(output_dir: str) -> list[Path]:
    """Every complete model folder under output_dir (teachers and students)."""
    root = Path(output_dir)
    found = list(root.glob("*/teacher")) + list(root.glob("*/students/*"))
    return sorted(p for p in found if is_complete(p))


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHTS)


def default_model(output_dir: str) -> Path:
    """The best student (validation accuracy) of the experiment trained most recently, else its teacher."""
    models = [p for p in saved_models(output_dir) if (p / "metrics.json").is_file()]
    if not models:
        raise UsageError(f"no saved model under {output_dir}/; train one (fine_tuning_teacher.py, distill_student.py) "
                         f"or pass --model=PATH")
    experiment = lambda p: p.parent if p.name == "teacher" else p.parent.parent   # noqa: E731
    newest = experiment(max(models, key=lambda p: (p / "metrics.json").stat().st_mtime))
    mine = [p for p in models if experiment(p) == newest]
    students = [p for p in mine if p.name != "teacher"]
    return max(students or mine, key=lambda p: read_json(p / "metrics.json").get("val_accuracy", 0))


def check_model(path: str, output_dir: str) -> Path:
    folder = Path(path)
    if not is_complete(folder):
        what = "does not exist" if not folder.exists() else "is incomplete (needs config.json and model weights)"
        have = ", ".join(str(p) for p in saved_models(output_dir)) or f"none under {output_dir}/"
        raise UsageError(f"model folder {folder} {what}; saved models: {have}")
    return folder


def load(folder: Path, device: str):
    """(model, tokenizer, truncation settings), cached per folder and device."""
    key = (str(folder.resolve()), device)
    if key not in _LOADED:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()      # keep the terminal output to the predictions
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).to(device).eval()
        kd = read_json(folder / "config.json").get("sentiment_kd", {})
        limit = min(getattr(tok, "model_max_length", 512) or 512, 512)
        settings = (kd.get("max_length", limit), kd.get("truncation", "head"), kd.get("head_tokens", 128))
        _LOADED[key] = (model, tok, settings)
    return _LOADED[key]


def predict(texts: list[str], model: str = "", batch_size: int = 32, device: str = "auto",
            output_dir: str = "outputs") -> list[dict]:
    """Sentiment of each text: [{"label": "positive" | "negative", "score": probability of that label}].

    model: a saved model folder ("" = the default model, see the module docstring).
    """
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = check_model(model, output_dir) if model else default_model(output_dir)
    net, tok, (max_length, truncation, head_tokens) = load(folder, device)
    ids, _ = encode(tok, list(texts), max_length, truncation, head_tokens)
    collate = PadCollator(tok)
    out = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            batch = {k: v.to(device) for k, v in collate([{"input_ids": x} for x in ids[i:i + batch_size]]).items()}
            probs = torch.softmax(net(**batch).logits.float(), -1).cpu()
            for p in probs:
                k = int(p.argmax())
                out.append({"label": net.config.id2label[k], "score": round(float(p[k]), 4)})
    return out


def read_lines(path: str) -> list[str]:
    """Reviews from a file, one per line ("-" = standard input); a non-UTF-8 line is named."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"--file {path}: cannot read it ({e.strerror}); give a UTF-8 text file, one review per line") from None
    lines = []
    for n, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise UsageError(f"{'standard input' if path == '-' else path}: line {n} is not valid UTF-8; "
                             f"save the file as UTF-8") from None
    return lines


def gather_texts(args: list[str], file: str) -> list[str]:
    """Texts from --file, a lone "-" (stdin), the positional arguments, or the built-in examples."""
    if file:
        return read_lines(file) + args
    if args == ["-"]:
        return read_lines("-")
    return args or list(EXAMPLES)


def main(argv=None) -> list[dict]:
    cfg = configure(globals(), argv, "inference")
    texts = gather_texts(cfg["_args"], FILE)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if len(keep) < len(texts):
        skipped = [str(i + 1) for i in range(len(texts)) if i not in set(keep)]
        print(f"note: skipped {len(skipped)} empty text(s) (#{', #'.join(skipped[:10])})", file=sys.stderr)
    if not keep:
        raise UsageError("no non-empty text to predict; pass texts, --file=PATH or - for standard input")
    texts = [texts[i] for i in keep]
    folder = check_model(MODEL, OUTPUT_DIR) if MODEL else default_model(OUTPUT_DIR)
    results = predict(texts, str(folder), BATCH_SIZE, DEVICE, OUTPUT_DIR)
    if JSON:
        print(json.dumps({"model": str(folder), "predictions": [{"text": t, **r} for t, r in zip(texts, results)]}, indent=2))
    else:
        print(f"model: {folder}", file=sys.stderr)
        for t, r in zip(texts, results):
            short = t if len(t) <= 70 else t[:67] + "..."
            print(f"{r['label']:<9} {r['score']:.3f}  {short}")
    return results


if __name__ == "__main__":
    run_main(main)
