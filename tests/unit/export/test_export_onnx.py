"""ONNX export: onnxruntime gives torch's logits (1e-4) at several context and query sizes
from one exported graph, and a model that cannot be exported as it is says why."""

from __future__ import annotations

import json

import pytest
import torch

from pfn_transformers import PFN, ClassificationConfig, RegressionConfig, UnsupervisedConfig
from pfn_transformers.export import ExportError, export_onnx
from tests.cli_helpers import one_thread  # noqa: F401 (fixture)

ort = pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(d_model=32, n_layers=2, n_heads=4)


@pytest.mark.parametrize(
    "config",
    [
        RegressionConfig(input_dim=2, d_vocab=30, **SMALL),
        ClassificationConfig(input_dim=3, num_classes=4, mask_type="gpt2", **SMALL),
    ],
    ids=["regression", "classification-gpt2"],
)
def test_onnxruntime_matches_torch_at_two_context_lengths(config, tmp_path):
    torch.manual_seed(0)
    model = PFN(config).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    d = config.input_dim
    for n_context, n_query, batch in ((5, 3, 2), (40, 17, 1)):
        x, xq = torch.randn(batch, n_context, d), torch.randn(batch, n_query, d)
        if model.discrete_y:
            y = torch.randint(0, config.num_classes, (batch, n_context))
        else:
            y = torch.randn(batch, n_context)
        expected = model.predict(x, y, xq).numpy()
        got = session.run(
            None, {"x_context": x.numpy(), "y_context": y.numpy(), "x_query": xq.numpy()}
        )[0]
        assert got.shape == expected.shape == (batch, n_query, config.d_vocab)
        assert abs(got - expected).max() < 1e-4
    info = json.loads((tmp_path / "model.onnx.json").read_text())
    assert list(info["inputs"]) == ["x_context", "y_context", "x_query"]
    assert info["inputs"]["x_context"]["shape"] == ["batch", "n_context", d]
    if model.bucketizer is not None:
        assert info["bucket_borders"] == model.bucketizer.borders.tolist()
        if model.bucketizer.support == "unbounded":
            assert info["bucket_tail_scales"] == model.bucketizer.tail_scales.tolist()


def test_unsupervised_models_export_their_next_token_logits(tmp_path):
    torch.manual_seed(0)
    model = PFN(UnsupervisedConfig(d_vocab=3, n_ctx=128, **SMALL)).eval()
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "u.onnx")))
    for seq in (4, 33):
        y = torch.randint(0, 3, (2, seq))
        got = session.run(None, {"y": y.numpy()})[0]
        assert abs(got - model(y).detach().numpy()).max() < 1e-4


def test_a_model_with_hooks_attached_is_refused(tmp_path):
    model = PFN(RegressionConfig(**SMALL))
    model.blocks[0].attn.hook_pattern.add_hook(lambda t, hook: t)
    with pytest.raises(
        ExportError, match=r"hooks attached \(blocks\.0\.attn\.hook_pattern\).*reset_hooks"
    ):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
