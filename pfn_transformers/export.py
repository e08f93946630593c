"""Run a trained PFN outside PyTorch: ONNX export with dynamic context and query sizes.

``export_onnx(model, "model.onnx")`` writes one ONNX graph (``torch.onnx.export`` on
``torch.export``) and a ``model.onnx.json`` beside it that says what goes in and comes out:

- supervised models: inputs ``x_context [batch, n_context, input_dim]``,
  ``y_context [batch, n_context]`` and ``x_query [batch, n_query, input_dim]``; output
  ``logits [batch, n_query, out]``, what ``model.predict`` returns (every query sees the
  whole context and itself);
- unsupervised models: input ``y [batch, seq]``; output ``logits [batch, seq, out]``, what
  ``model(y)`` returns (position t predicts y_{t+1}).

Batch, context, query and sequence sizes are dynamic. For a bar-distribution head the JSON
lists the bucket borders: softmax(logits) are the bucket masses (with unbounded support the
two edge buckets carry half-normal tails beyond the inner borders, as in ``Bucketizer``). Needs the ``export`` extra (``pip install 'pfn-transformers[export]'``: onnx,
onnxscript, onnxruntime for checking).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .runs import write_json_atomic
from .utils import to_plain

EXPORT_EXTRA = "pip install 'pfn-transformers[export]'"


class ExportError(RuntimeError):
    """A model that cannot be exported as it is (the message says why and what to do)."""


class _Predict(nn.Module):
    """``model.predict(x_context, y_context, x_query)`` as a module to export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_context: Tensor, y_context: Tensor, x_query: Tensor) -> Tensor:
        return self.model.predict(x_context, y_context, x_query)


class _NextToken(nn.Module):
    """``model(y)`` (next-token logits) as a module to export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: Tensor) -> Tensor:
        return self.model(y)


def _hooked_points(model: Any) -> list[str]:
    """The hook points that have hooks attached."""
    return [name for name, hp in model.hook_dict.items() if hp.has_hooks()]


def _inputs(model: Any) -> tuple[nn.Module, tuple[Tensor, ...], list[str], dict[str, Any]]:
    """The module to export, example inputs, input names and their dynamic dimensions."""
    batch = torch.export.Dim("batch", min=1)
    y_dtype = torch.long if model.discrete_y else torch.float32
    if model.supervised:
        d = model.config.input_dim
        n_ctx = torch.export.Dim("n_context", min=1)
        n_query = torch.export.Dim("n_query", min=1)
        example = (torch.randn(2, 3, d), torch.zeros(2, 3, dtype=y_dtype), torch.randn(2, 2, d))
        dims = {
            "x_context": {0: batch, 1: n_ctx},
            "y_context": {0: batch, 1: n_ctx},
            "x_query": {0: batch, 1: n_query},
        }
        return _Predict(model), example, ["x_context", "y_context", "x_query"], dims
    limit = (model.config.n_ctx - 1) if model.config.positional_embedding else None
    seq = torch.export.Dim("seq", min=1, max=limit) if limit else torch.export.Dim("seq", min=1)
    return _NextToken(model), (torch.zeros(2, 3, dtype=y_dtype),), ["y"], {"y": {0: batch, 1: seq}}


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Write ``model`` as an ONNX graph at ``path`` plus ``<path>.json`` (see the module doc).

    Raises ExportError when hooks are attached (exporting would drop them silently), when
    the export extra is missing, or when torch cannot export the model.
    """
    hooked = _hooked_points(model)
    if hooked:
        raise ExportError(
            f"the model has hooks attached ({', '.join(hooked[:5])}); an exported graph cannot "
            "run them. Remove them with model.reset_hooks() before exporting."
        )
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs onnx and onnxscript ({exc}); {EXPORT_EXTRA}."
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training, device = model.training, model.device
    model.eval().to("cpu")
    module, example, names, dims = _inputs(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                example,
                tmp,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=dict(zip(names, dims.values(), strict=True)),
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
        os.replace(tmp, path)
    except Exception as exc:
        raise ExportError(
            f"torch could not export this {type(model.config).__name__} model to ONNX: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
        model.to(device).train(was_training)
    write_json_atomic(path.with_name(path.name + ".json"), describe_io(model, names))
    return path


def describe_io(model: Any, names: list[str]) -> dict[str, Any]:
    """What the exported graph takes and returns, for users outside PyTorch."""
    y_type = "int64" if model.discrete_y else "float32"
    d = getattr(model.config, "input_dim", None)
    shapes = {
        "x_context": ("float32", ["batch", "n_context", d]),
        "y_context": (y_type, ["batch", "n_context"]),
        "x_query": ("float32", ["batch", "n_query", d]),
        "y": (y_type, ["batch", "seq"]),
    }
    out_dim = 1 if model.task.head == "point" else model.config.d_vocab
    rows = "n_query" if model.supervised else "seq"
    info: dict[str, Any] = {
        "format": "onnx",
        "inputs": {n: {"dtype": shapes[n][0], "shape": shapes[n][1]} for n in names},
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", rows, out_dim]}},
        "meaning": (
            "logits[:, j] is the predictive of y at x_query[:, j] given the whole context"
            if model.supervised
            else "logits[:, t] is the predictive of y[:, t+1] given y[:, :t+1]"
        ),
        "head": model.task.head,
        "model_config": to_plain(model.config.to_dict()),
    }
    if model.bucketizer is not None:
        info["bucket_borders"] = model.bucketizer.borders.detach().cpu().tolist()
        info["bucket_support"] = model.bucketizer.support
        if model.bucketizer.support == "unbounded":  # half-normal scales of the two tails
            info["bucket_tail_scales"] = model.bucketizer.tail_scales.detach().cpu().tolist()
    return info


__all__ = ["EXPORT_EXTRA", "ExportError", "describe_io", "export_onnx"]
