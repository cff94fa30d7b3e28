"""How many of the scarce runs' transfer reviews are also validation or test reviews (configs/scarce.toml keeps
drop_leaks = false, as published): the pool each student learned from is the first transfer_size of
distill_student.transfer_pool's seeded shuffle of IMDb's unsupervised split; 'evaluated' is the 5,000-review
stratified test subset evaluate_models.py measured (TEST_SIZE, SEED). Run from the checkout root with IMDB_DIR set:
    python outputs/scarce-matched/leaks.py > outputs/scarce-matched/leaks-results.json   (2 Dec 2026: 7 s)"""
import json, os, sys
import numpy as np
sys.path.insert(0, os.getcwd())
from data_utils import DataSpec, load_splits, stratified_indices

spec = DataSpec(data="imdb", data_dir=os.environ["IMDB_DIR"], seed=42, val_size=500, train_size=1000, drop_leaks=False)
data = load_splits(spec, transfer=True)
pool_order = np.random.default_rng(42).permutation(len(data.transfer))
part = data.test.select(stratified_indices(data.test["label"], 5000, 42, "--test_size", data.label_names))
val, test, evaluated = set(data.validation["text"]), set(data.test["text"]), set(part["text"])
out = {"transfer_texts": len(data.transfer), "validation": len(val), "test": len(test), "evaluated": len(evaluated)}
for name, n in (("L1 (transfer_size 8000)", 8000), ("L3 (transfer_size 2000)", 2000)):
    pool = [data.transfer[i] for i in pool_order[:n]]
    out[name] = {"in_test": sum(t in test for t in pool), "in_evaluated_test": sum(t in evaluated for t in pool),
                 "in_validation": sum(t in val for t in pool)}
print(json.dumps(out, indent=1))
