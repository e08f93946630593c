"""Made tests/data/muon_mlp_run with the code of commit f05be22 (torch.optim.Muon on the MLP
matrices, before muon_scope existed). Run: PYTHONPATH=<checkout of f05be22> python this.py OUT"""

import json
import sys
from pathlib import Path

import torch

import pfn_transformers
from pfn_transformers import RegressionConfig, TrainingConfig, train
from pfn_transformers.priors import LinearRegressionPrior

out = Path(sys.argv[1])
print(pfn_transformers.__file__)
config = RegressionConfig(
    d_model=16, n_layers=1, n_heads=2, input_dim=1, d_vocab=32, y_min=-4.0, y_max=4.0
)
tc = TrainingConfig(
    batch_size=8,
    seq_len=16,
    num_steps=23,
    learning_rate=1e-3,
    use_warmup=False,
    log_every=1,
    save_every=20,
    checkpoint_dir=str(out / "checkpoints"),
    progress_bar=False,
    device="cpu",
    precision="fp32",
    seed=0,
)
model = train(LinearRegressionPrior(), config, tc)
g = torch.Generator().manual_seed(7)
x = torch.rand(4, 12, 1, generator=g) * 2 - 1
y = torch.randn(4, 12, generator=g)
with torch.no_grad():
    lp = model.log_predictive(x, y)
(out / "reference.json").write_text(
    json.dumps(
        {"seed": 7, "shape": [4, 12, 1], "num_steps": 23, "log_predictive_at_23": lp.tolist()}
    )
)
for f in sorted((out / "checkpoints").iterdir()):
    print(f, f.stat().st_size)
