"""``pfn export``: a trained run (or a saved folder) as a folder that travels.

``format=pretrained`` writes ``model.safetensors``, ``config.json``, ``README.md`` (the model
card, its figures read from the run's eval.json) and ``eval.json`` with
``model.save_pretrained``; ``format=onnx`` writes ``model.onnx`` and ``model.onnx.json``
(``pfn_transformers.export``). Both are library calls; this module picks the run and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pfn_cli._app import hydra_app
from pfn_cli.errors import CliError
from pfn_cli.loading import load_run

FORMATS = ("pretrained", "onnx")


def run_export(cfg: DictConfig) -> dict[str, Any]:
    """Export one run; returns the folder and the files written."""
    fmt = str(cfg.get("format", "pretrained"))
    if fmt not in FORMATS:
        raise CliError(f"format={fmt!r} is not valid; choose one of {list(FORMATS)}.")
    loaded = load_run(cfg.get("run"), cfg.get("step"), cfg.outputs_root, "cpu")
    default = "export" if fmt == "pretrained" else "export_onnx"
    out = Path(str(cfg.out)) if cfg.get("out") else loaded.run_dir / default
    if out.resolve() == loaded.run_dir.resolve():
        raise CliError(f"out={out}: that is the folder being exported; choose another folder.")
    if fmt == "pretrained":
        loaded.model.save_pretrained(out)
        files = ["model.safetensors", "config.json", "README.md"]
        files += ["eval.json"] if (out / "eval.json").is_file() else []
        evaluation = (loaded.model.provenance or {}).get("evaluation")
        quality = (
            f"excess NLL {evaluation['excess_nll']['mean']:.4f} (from eval.json)"
            if evaluation and (evaluation.get("excess_nll") or {}).get("mean") is not None
            else "no evaluation of this step: the card says so"
        )
    else:
        from pfn_transformers.export import ExportError, export_onnx

        try:
            export_onnx(loaded.model, out / "model.onnx")
        except ExportError as exc:
            raise CliError(f"format=onnx: {exc}") from None
        files, quality = ["model.onnx", "model.onnx.json"], "onnx graph"
    print(
        f"Exported {loaded.run_dir} @ step {loaded.step} to {out}: {', '.join(files)} ({quality})"
    )
    if fmt == "pretrained":
        print(f'Load it with: PFN.from_pretrained("{out}")   or   pfn eval run={out}')
    return {"out": str(out), "files": [str(out / f) for f in files], "format": fmt}


main = hydra_app("export", run_export)

if __name__ == "__main__":  # pragma: no cover
    main()
