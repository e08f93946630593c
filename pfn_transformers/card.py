"""The model card (README.md) of a saved PFN, written from config.json and eval.json only.

Its YAML front matter (``huggingface_hub.ModelCardData``: ``library_name``, ``tags``, a
``model-index`` the Hub displays, and a ``pfn`` block) states the prior, the training budget,
seed, commit, parent and the verified quality: excess NLL against the exact posterior
overall and per context size, the bucket floor, interval coverage and the out-of-range
share. Every figure is copied from the evaluation dict (eval.json), never typed; a card
without an evaluation says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

NO_EVALUATION = (
    "No evaluation: this model was saved without an evaluation against its prior, so this "
    "card states no quality figures."
)


def _stat(value: Any) -> dict[str, Any] | None:
    """``{"mean", "stderr"}`` of an evaluate() statistic (None when absent)."""
    if isinstance(value, Mapping) and value.get("mean") is not None:
        return {"mean": value["mean"], "stderr": value.get("stderr")}
    return None


def quality(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The card's quality block: figures copied from an ``evaluate`` result / eval.json."""
    ev = evaluation
    coverage = ev.get("coverage") if isinstance(ev.get("coverage"), Mapping) else {}
    out: dict[str, Any] = {
        "file": "eval.json",
        "step": ev.get("step"),
        "prior": ev.get("prior"),
        "num_datasets": ev.get("num_datasets"),
        "seq_len": ev.get("seq_len"),
        "seed": ev.get("seed"),
        "has_exact_posterior": ev.get("has_exact"),
        "excess_nll": _stat(ev.get("excess_nll")),
        "excess_nll_per_n": (ev.get("excess_nll") or {}).get("per_n"),
        "bucket_floor_excess_nll": _stat(ev.get("floor_excess_nll")),
        "coverage": {level: (_stat(stat) or {}).get("mean") for level, stat in coverage.items()}
        or None,
        "out_of_range": (_stat(ev.get("out_of_range")) or {}).get("mean"),
        "nll": _stat(ev.get("nll")),
        "exact_nll": _stat(ev.get("exact_nll")),
        "accuracy": _stat(ev.get("accuracy")),
    }
    if isinstance(ev.get("fine_tuning"), Mapping):
        out["fine_tuning"] = ev["fine_tuning"]
    return out


def _eval_results(name: str, prior: str, q: Mapping[str, Any]) -> list[EvalResult]:
    """The Hub's model-index entries for the headline figures."""
    rows = [
        ("excess_nll", "excess NLL vs the exact posterior (nats)", q.get("excess_nll")),
        (
            "floor_excess_nll",
            "bucket floor of the excess NLL (nats)",
            q.get("bucket_floor_excess_nll"),
        ),
        ("nll", "NLL (nats)", q.get("nll")),
        ("accuracy", "accuracy", q.get("accuracy")),
    ]
    results = []
    for metric, label, stat in rows:
        if stat is not None:
            results.append(
                EvalResult(
                    task_type="in-context-bayesian-inference",
                    task_name="posterior predictive",
                    dataset_type=prior,
                    dataset_name=f"held-out draws from {prior}",
                    metric_type=metric,
                    metric_name=label,
                    metric_value=stat["mean"],
                )
            )
    return results


def card_data(config: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> ModelCardData:
    """The front matter: Hub fields plus the ``pfn`` block (see the module doc)."""
    mc = config.get("model_config") or {}
    prior = config.get("prior") or {}
    prior_config = prior.get("config") or {}
    prior_name = prior.get("choice") or prior_config.get("_target_") or prior.get("class")
    env = config.get("environment") or {}
    training = dict(config.get("training") or {})
    training.pop("config", None)
    q = quality(evaluation) if evaluation is not None else None
    block = {
        "model": {k: mc.get(k) for k in ("kind", "d_model", "n_layers", "n_heads", "d_vocab")}
        | {"input_dim": mc.get("input_dim"), "prediction_type": mc.get("prediction_type")},
        "prior": {
            "name": prior_name,
            "target": prior_config.get("_target_") or prior.get("class"),
            "config": prior_config or None,
        },
        "training": training or None,
        "seed": training.get("seed"),
        "commit": env.get("commit"),
        "library_version": config.get("library_version"),
        "parent": config.get("parent"),
        "evaluation": q,
    }
    if q is None:
        block["evaluation_note"] = config.get("evaluation_note") or NO_EVALUATION
    tags = ["pfn", "prior-fitted-network", "transformer-lens", "bayesian-inference"]
    if mc.get("kind"):
        tags.append(str(mc["kind"]))
    name = f"pfn-{mc.get('kind', 'model')}-{prior_name or 'unknown-prior'}"
    results = _eval_results(name, str(prior_name or "the prior"), q) if q else None
    return ModelCardData(
        library_name="pfn-transformers",
        tags=tags,
        model_name=name if results else None,
        eval_results=results or None,
        pfn=block,
    )


def _fmt(stat: Mapping[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    text = f"{stat['mean']:.4f}"
    if stat.get("stderr") is not None:
        text += f" ± {stat['stderr']:.4f}"
    return text


def _per_n_line(per_n: list[Any] | None) -> str:
    if not per_n:
        return ""
    picks = sorted({0, 1, 2, 4, 8, 16, 32, 64, 128, len(per_n) - 1} & set(range(len(per_n))))
    parts = [f"n={n}: {per_n[n]:.4f}" for n in picks if per_n[n] is not None]
    return "Excess NLL per context size: " + ", ".join(parts) + ".\n"


def _fine_tuning_lines(report: Mapping[str, Any]) -> list[str]:
    """The before/after table of a fine-tuned model (eval.json's ``fine_tuning``)."""

    def row(label: str, entry: Any) -> str:
        entry = entry or {}
        before, after = entry.get("before"), entry.get("after")
        return f"| {label} ({entry.get('metric', '-')}) | {_fmt(before)} | {_fmt(after)} |"

    lines = [
        "## Fine-tuning",
        "",
        f"Started from `{report.get('source')}`; before = the source model, after = this one.",
        "",
        "| prior | before | after |",
        "|---|---|---|",
        row(
            f"new prior {(report.get('new_prior') or {}).get('prior', '')}", report.get("new_prior")
        ),
    ]
    if report.get("source_prior"):
        lines.append(
            row(f"source prior {report['source_prior'].get('prior', '')}", report["source_prior"])
        )
        if report.get("forgetting") is not None:
            lines += ["", f"Forgetting on the source prior: {report['forgetting']:+.4f} nats."]
    else:
        lines += ["", "The source's prior is not recorded: forgetting was not measured."]
    return [*lines, ""]


def render_card(config: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> str:
    """README.md: YAML front matter, then the same facts for people."""
    data = card_data(config, evaluation)
    block = data.to_dict()["pfn"]
    prior, training, q = block["prior"], block["training"] or {}, block["evaluation"]
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# A Prior-Fitted Network for {prior['name'] or 'an unrecorded prior'}",
        "",
        f"A {block['model']['kind']} PFN (pfn-transformers {block['library_version']}): a "
        "transformer trained on draws from a prior so that, in context, it approximates the "
        "Bayesian posterior predictive.",
        "",
        "```python",
        "from pfn_transformers import PFN",
        "",
        'model = PFN.from_pretrained("THIS_FOLDER_OR_HUB_ID")  # safetensors: no code runs',
        "```",
        "",
        "## Prior",
        "",
        f"`{prior['target'] or 'unknown'}`"
        + (
            f" with `{ {k: v for k, v in (prior['config'] or {}).items() if k != '_target_'} }`"
            if prior["config"]
            else ""
        ),
        "",
        "## Training",
        "",
        "| steps | batch | sequence | seconds | device | seed | commit |",
        "|---|---|---|---|---|---|---|",
        "| {} | {} | {} | {} | {} | {} | {} |".format(
            training.get("steps", "-"),
            training.get("batch_size", "-"),
            training.get("seq_len", "-"),
            "-" if training.get("seconds") is None else f"{training['seconds']:.0f}",
            training.get("device") or "-",
            training.get("seed", "-"),
            block["commit"] or "-",
        ),
        "",
    ]
    if block["parent"]:
        lines += [f"Fine-tuned from `{block['parent'].get('source')}`.", ""]
    lines += ["## Verified quality", ""]
    if q is None:
        lines += [block["evaluation_note"], ""]
    else:
        lines += [
            f"Scored on {q['num_datasets']} held-out datasets of {q['seq_len']} points drawn "
            f"from {q['prior']} (seed {q['seed']}), checkpoint step {q['step']}; figures copied "
            "from eval.json.",
            "",
            "| figure | value (nats unless noted) |",
            "|---|---|",
            f"| excess NLL vs the exact posterior | {_fmt(q['excess_nll'])} |",
            f"| bucket floor of the excess NLL | {_fmt(q['bucket_floor_excess_nll'])} |",
            f"| NLL | {_fmt(q['nll'])} |",
            f"| NLL of the exact posterior | {_fmt(q['exact_nll'])} |",
        ]
        for level, share in (q["coverage"] or {}).items():
            if share is not None:
                lines.append(f"| coverage of the {float(level):.0%} interval | {share:.4f} |")
        if q["out_of_range"] is not None:
            lines.append(f"| share of targets outside the buckets | {q['out_of_range']:.4f} |")
        if q["accuracy"] is not None:
            lines.append(f"| accuracy | {_fmt(q['accuracy'])} |")
        lines += ["", _per_n_line(q["excess_nll_per_n"])]
        if not q["has_exact_posterior"]:
            lines += ["The prior has no exact posterior: no excess NLL could be computed.", ""]
        if q.get("fine_tuning"):
            lines += _fine_tuning_lines(q["fine_tuning"])
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["NO_EVALUATION", "card_data", "quality", "render_card"]
