"""Typed configs: YAML files (one per scale) mapped onto dataclasses, with checked command-line overrides.

    cfg = load_config(LMConfig, "small", CONFIG_DIR, overrides=["train.lr=3e-4", "model.layers=8"])

A config is a dataclass whose fields may be dataclasses themselves (`model`, `train`, `data` ...). Every value
read from YAML, from a `--set section.field=value` override, or from a saved `config.json` goes through
`build`, which checks it against the field's annotation: `"false"` is not a bool, `"64"` is not an int, a
list becomes a tuple where the field is a tuple, and an unknown field is an error naming the file and the
fields that exist. Overrides are parsed as YAML values (`train.betas=[0.9,0.95]`, `model.causal=false`). `build`
reads any JSON record onto dataclasses the same way (a result file's schema), a missing field named as clearly.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

SCALES = ("tiny", "small", "paper")


class ConfigError(ValueError):
    pass


def scale_file(scale: str | Path, config_dir: str | Path) -> Path:
    """configs/<scale>.yaml, or the YAML path given."""
    path = Path(scale) if str(scale).endswith((".yaml", ".yml")) else Path(config_dir) / f"{scale}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config; scales are {', '.join(SCALES)} or a path to a YAML file")
    return path


def read_yaml(path: str | Path) -> dict:
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    return values


def _check(value: Any, tp: Any, where: str) -> Any:
    """`value` converted to the annotation `tp` where that is lossless (list -> tuple, int -> float), else an error."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return build(tp, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_check(k, kt, where): _check(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def at_least(cfg, **bounds: int) -> None:
    """For a dataclass's __post_init__: refuse a field below its bound (0 is a value, never "not set")."""
    for name, low in bounds.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")


def check_finite(name: str, value) -> None:
    """Refuse a setting that is not a finite number (NaN guidance or temperature writes wrong samples silently)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


MAX_SEED = 2**32 - 1  # per-batch and per-step seeds are derived from it (seed * 1_000_003 + step ...): kept in range


def check_seed(seed: int, name: str = "seed") -> None:
    """Refuse a seed outside [0, MAX_SEED] (torch takes at most 2**64 - 1, and derived seeds add to it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")


def build(config_class: type, values: dict, source: str = "config"):
    """A dataclass from a dict, every field type-checked; a missing required field, or an unknown one, is an error
    naming `source`. A field read from another key says so in its metadata (`field(metadata={"key": "class"})`: a
    key that is no Python name); a class whose `ignores_unknown_fields` is true (a record a newer writer may add to)
    leaves unknown keys unread."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping for {config_class.__name__}, got {values!r}")
    hints = typing.get_type_hints(config_class)
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown and not getattr(config_class, "ignores_unknown_fields", False):
        raise ConfigError(f"{source}: unknown {config_class.__name__} field(s) {unknown}; known fields are "
                          f"{sorted(fields)}")
    missing = [key for key, f in fields.items() if key not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing {config_class.__name__} field(s) {missing}")
    checked = {f.name: _check(values[key], hints[f.name], f"{source}: {key}") for key, f in fields.items()
               if key in values}
    try:
        return config_class(**checked)
    except (TypeError, ValueError) as exc:  # the class refuses a value
        raise ConfigError(f"{source}: {exc}") from None


def apply_overrides(values: dict, overrides: list[str] | None, source: str = "--set") -> dict:
    """`section.field=value` strings applied to a nested dict (values parsed as YAML), returning a new dict."""
    out = _deepcopy(values)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source} {item!r}: expected section.field=value")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source} {item!r}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} {item!r}: value is not valid YAML ({exc})") from None
    return out


def load_config(config_class: type, scale: str | Path, config_dir: str | Path, overrides: list[str] | None = None,
                section: str | None = None):
    """A scale's YAML (or one `section` of it) as `config_class`, with overrides applied and every value checked."""
    path = scale_file(scale, config_dir)
    values = read_yaml(path)
    if section is not None:
        values = values.get(section) or {}
    return build(config_class, apply_overrides(values, overrides), str(path))


def _deepcopy(v):
    if isinstance(v, dict):
        return {k: _deepcopy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deepcopy(x) for x in v]
    return v
