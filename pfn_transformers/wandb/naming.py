"""Structured W&B run names: build them from config fields and parse them back.

A :class:`RunNameScheme` names the config fields that identify a run, per section (model,
training, data). :func:`create_run_name` writes them into the run name in a fixed format::

    {base}-model-{field}{value}-...-training-{field}{value}-...-data-{field}{value}-...

e.g. ``"my-experiment-model-n_layers4-d_model128-data-num_tasks100-input_dim10"``.
Values keep their exact value: ``100.0`` stays ``"100.0"`` and ``1e-4`` becomes ``"0.0001"``.
:func:`parse_run_name` is the inverse (used to match runs whose config is not stored).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SECTIONS: tuple[str, ...] = ("model", "training", "data")

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)")


@dataclass(frozen=True)
class RunNameScheme:
    """Which config fields go into a run name (and are used to find runs), per section.

    Build it with :meth:`from_templates` from dicts whose keys name the fields (values are
    ignored), or from config objects/dataclasses whose field names are used.
    """

    model_fields: tuple[str, ...] = ()
    training_fields: tuple[str, ...] = ()
    data_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for section in SECTIONS:
            fields = tuple(getattr(self, f"{section}_fields"))
            for f in fields:
                if not isinstance(f, str) or not f:
                    raise ValueError(
                        f"RunNameScheme.{section}_fields contains {f!r}; field names must be "
                        "non-empty strings."
                    )
            if len(set(fields)) != len(fields):
                raise ValueError(
                    f"RunNameScheme.{section}_fields={fields!r} repeats a field; "
                    "name each field once."
                )
            object.__setattr__(self, f"{section}_fields", fields)

    @classmethod
    def from_templates(
        cls, model: Any = None, training: Any = None, data: Any = None
    ) -> RunNameScheme:
        """Scheme from templates: ``{"n_layers": None, ...}`` dicts, field-name lists,
        dataclasses or plain objects (their public attributes)."""
        return cls(
            model_fields=_template_fields(model),
            training_fields=_template_fields(training),
            data_fields=_template_fields(data),
        )

    def fields(self, section: str) -> tuple[str, ...]:
        if section not in SECTIONS:
            raise ValueError(f"section={section!r} is not valid; choose one of {list(SECTIONS)}.")
        return getattr(self, f"{section}_fields")

    def sections(self) -> list[tuple[str, tuple[str, ...]]]:
        """Non-empty ``(section, fields)`` pairs in name order."""
        return [(s, self.fields(s)) for s in SECTIONS if self.fields(s)]

    def sections_of(self, field: str) -> list[str]:
        """Sections that name ``field`` (a field may appear in several, e.g. input_dim)."""
        return [s for s in SECTIONS if field in self.fields(s)]

    @property
    def all_fields(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for s in SECTIONS:
            for f in self.fields(s):
                seen.setdefault(f, None)
        return tuple(seen)


def _template_fields(template: Any) -> tuple[str, ...]:
    if template is None:
        return ()
    if isinstance(template, str):
        return (template,)
    if isinstance(template, Mapping):
        return tuple(str(k) for k in template)
    if dataclasses.is_dataclass(template):
        return tuple(f.name for f in dataclasses.fields(template))
    if isinstance(template, Iterable):
        return tuple(str(k) for k in template)
    if hasattr(template, "__dict__"):
        return tuple(k for k in vars(template) if not k.startswith("_"))
    raise TypeError(
        f"RunNameScheme template {template!r} is not valid; pass a dict of field names, a list "
        "of field names, a dataclass or a config object."
    )


# --------------------------------------------------------------------------- values
def format_value(value: Any) -> str:
    """Text for one value in a run name; numbers keep their exact value.

    ints as ints, floats by their shortest round-trip repr written positionally where that is
    reasonable (``100.0`` -> ``"100.0"``, ``1e-4`` -> ``"0.0001"``, ``1e-5`` -> ``"0.00001"``),
    bools and None as ``True``/``False``/``None``, sequences as ``[a,b]``.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # 0-d tensor / numpy scalar
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def _format_float(x: float) -> str:
    if not math.isfinite(x):
        return repr(x)
    text = repr(x)
    if "e" not in text and "E" not in text:
        return text
    exponent = Decimal(text).adjusted()
    if -12 <= exponent < 16:
        positional = format(Decimal(text), "f")
        if "." not in positional:
            positional += ".0"
        return positional
    return text  # very large/small: keep scientific notation (still exact)


def parse_value(text: str) -> Any:
    """Inverse of :func:`format_value` for scalars: int, float, bool, None or the string."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def values_equal(a: Any, b: Any) -> bool:
    """Loose equality for matching configs: 4 == 4.0 == "4", 1e-4 == "0.0001", lists too."""
    if isinstance(a, str) and not isinstance(b, str):
        a, b = b, a
    if isinstance(b, str) and not isinstance(a, str):
        b = parse_value(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(values_equal(a[k], b[k]) for k in a)
    return a == b or format_value(a) == format_value(b)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --------------------------------------------------------------------------- config access
def config_get(config: Any, field: str) -> Any:
    """Field ``field`` of a config: dataclass/object attribute or mapping key.

    Raises KeyError when absent.
    """
    if config is None:
        raise KeyError(field)
    if isinstance(config, Mapping):
        if field in config:
            return config[field]
        raise KeyError(field)
    if hasattr(config, field):
        return getattr(config, field)
    if hasattr(config, "to_dict"):
        d = config.to_dict()
        if field in d:
            return d[field]
    raise KeyError(field)


def _available_fields(config: Any) -> list[str]:
    if isinstance(config, Mapping):
        return sorted(str(k) for k in config)
    if dataclasses.is_dataclass(config):
        return [f.name for f in dataclasses.fields(config)]
    return (
        sorted(k for k in vars(config) if not k.startswith("_"))
        if hasattr(config, "__dict__")
        else []
    )


# --------------------------------------------------------------------------- names
def create_run_name(
    base: str,
    model_config: Any = None,
    data_config: Any = None,
    scheme: RunNameScheme | None = None,
    *,
    training_config: Any = None,
) -> str:
    """Run name ``{base}-model-{field}{value}...-data-{field}{value}...`` per ``scheme``.

    Example: ``create_run_name("my-experiment", model_config, data_config, scheme)`` ->
    ``"my-experiment-model-n_layers4-d_model128-data-num_tasks100-input_dim10"``.
    """
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"create_run_name: base={base!r} is not valid; pass a non-empty string.")
    if scheme is None:
        return base
    configs = {"model": model_config, "training": training_config, "data": data_config}
    parts = [base]
    for section, fields in scheme.sections():
        config = configs[section]
        if config is None:
            raise ValueError(
                f"create_run_name: the scheme names {section} fields {list(fields)} but "
                f"{section}_config=None; pass {section}_config."
            )
        parts.append(section)
        for f in fields:
            try:
                value = config_get(config, f)
            except KeyError:
                raise ValueError(
                    f"create_run_name: the scheme names {section} field {f!r} but "
                    f"{type(config).__name__} has no such field; available: "
                    f"{_available_fields(config)}."
                ) from None
            parts.append(f"{f}{format_value(value)}")
    return "-".join(parts)


def _name_regex(scheme: RunNameScheme) -> re.Pattern[str]:
    pattern = r"(?P<base>.+?)"
    for si, (section, fields) in enumerate(scheme.sections()):
        pattern += "-" + re.escape(section)
        for fi, f in enumerate(fields):
            pattern += "-" + re.escape(f) + f"(?P<v{si}_{fi}>.*?)"
    return re.compile(pattern)


def parse_run_name(name: str, scheme: RunNameScheme) -> dict[str, Any]:
    """Inverse of :func:`create_run_name`.

    Returns ``{"base": str, "model": {...}, "data": {...}}`` (one key per non-empty section
    of ``scheme``) with values converted back to int/float/bool/None where they look like one.
    Raises ValueError when ``name`` was not made with ``scheme``.
    """
    match = _name_regex(scheme).fullmatch(name or "")
    if match is None:
        raise ValueError(
            f"run name {name!r} does not follow the scheme {describe_scheme(scheme)!r}."
        )
    out: dict[str, Any] = {"base": match.group("base")}
    for si, (section, fields) in enumerate(scheme.sections()):
        out[section] = {f: parse_value(match.group(f"v{si}_{fi}")) for fi, f in enumerate(fields)}
    return out


def describe_scheme(scheme: RunNameScheme) -> str:
    """Human-readable template, e.g. ``{base}-model-n_layers{n_layers}-data-...``."""
    parts = ["{base}"]
    for section, fields in scheme.sections():
        parts.append(section)
        parts.extend(f"{f}{{{f}}}" for f in fields)
    return "-".join(parts)


__all__ = [
    "RunNameScheme",
    "create_run_name",
    "describe_scheme",
    "format_value",
    "parse_run_name",
    "parse_value",
    "values_equal",
]
