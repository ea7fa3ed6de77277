"""YAML configs mapped onto dataclasses, with `key=value` command-line overrides.

    cfg = load_config(TrainConfig, "configs/mini.yaml", ["optim.lr=3e-4", "out=runs/x"])
    describe(TrainConfig)   # every dotted key with its default and its comment, for --help

Nested dataclasses are addressed with dots. A key that does not exist or a value of the
wrong type is a one-line ConfigError that names it.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import io
import json
import os
import re
import tokenize
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    pass


def load_config(cls: type[T], path: str | os.PathLike | None = None,
                overrides: Sequence[str] = (), base: dict[str, Any] | None = None) -> T:
    """Build `cls` from its defaults, then `base` (a nested dict, e.g. a run's stored config),
    then the YAML file at `path` (merged into it section by section), then `key=value`
    overrides."""
    data: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of keys to values")
        _merge(data, loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return from_dict(cls, data)


def _merge(data: dict, update: dict) -> None:
    """Sections merge key by key (a file's `model: {dim: 64}` keeps the other model keys);
    anything else is replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = copy.deepcopy(value)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Fill dataclass `cls` from a (nested) dict, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, prefix=name + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple, Sequence):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, name) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples as lists), for JSON/YAML."""
    def convert(v: Any) -> Any:
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v
    return convert(dataclasses.asdict(cfg))


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default as one writes it in key=value, the field's comment) for every
    key of the config dataclass `cls`, in declaration order; a mapping-valued field (the
    codec's model) lists its keys."""
    notes = _field_comments(cls)
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = prefix + f.name
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            rows.append((name, "(required)", notes.get(f.name, "")))
            continue
        if dataclasses.is_dataclass(default):
            rows.extend(describe(type(default), name + "."))
        elif isinstance(default, dict) and default:
            rows.extend((f"{name}.{k}", _written(v), "") for k, v in default.items())
        else:
            rows.append((name, _written(default), notes.get(f.name, "")))
    return rows


def _written(value: Any) -> str:
    """A default the way an override writes it: strings bare, the rest as JSON (YAML flow)."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _field_comments(cls: type) -> dict[str, str]:
    """The comment of each field in the class source: the one on its line, else the comment
    lines right above it. The comments are the config's documentation; {} without source."""
    try:
        source = inspect.getsource(cls)
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
    except (OSError, TypeError, tokenize.TokenError, IndentationError):
        return {}
    lines = source.splitlines()
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    notes: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if not match or match.group(1) not in fields:
            continue
        if number in comments:
            notes[match.group(1)] = comments[number]
            continue
        above, n = [], number - 1
        while n in comments and lines[n - 1].lstrip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        if above:
            notes[match.group(1)] = " ".join(above)
    return notes
