"""Made tests/data/unconditioned_gp_hyper/losses.json with the code of commit 0d009ab (before
hyperparameter conditioning existed): a tiny fixed-seed run on GPHyperPrior, per-step losses
and log_predictive on fixed inputs. Run: OMP_NUM_THREADS=1 PYTHONPATH=<checkout of 0d009ab> python this.py OUT"""

import json
import sys
from pathlib import Path

import torch

import pfn_transformers
from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers.priors import GPHyperPrior

out = Path(sys.argv[1])
print(pfn_transformers.__file__)
config = RegressionConfig(d_model=16, n_layers=1, n_heads=2, d_vocab=32, y_min=-4.0, y_max=4.0)
tc = TrainingConfig(
    batch_size=8,
    seq_len=16,
    num_steps=12,
    learning_rate=1e-3,
    use_warmup=False,
    log_every=1,
    metrics_path=str(out / "metrics.jsonl"),
    progress_bar=False,
    device="cpu",
    precision="fp32",
    seed=0,
)
model = train(GPHyperPrior(), config, tc)
losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
(out / "metrics.jsonl").unlink()
g = torch.Generator().manual_seed(7)
x = torch.rand(4, 12, 1, generator=g) * 2 - 1
y = torch.randn(4, 12, generator=g)
with torch.no_grad():
    lp = model.log_predictive(x, y)
(out / "losses.json").write_text(json.dumps({"losses": losses, "log_predictive": lp.tolist()}))
