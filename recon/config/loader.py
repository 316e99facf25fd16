"""Load a YAML experiment config: inheritance, command-line overrides, strict checks."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from recon.config.schema import OPEN_SECTIONS, REQUIRED, SCHEMA, Field


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and where it was set."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Parse one command-line value as YAML (``0.1`` -> float, ``[1, 2]`` -> list)."""
    return yaml.load(text, Loader=_Loader)


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in {path}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys at its top level; found {type(data).__name__}")
    return data


def _merge(base: dict, update: dict, sources: dict, origin: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, noting in ``sources`` where each key came from."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, sources, origin, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)
            sources[dotted] = origin


def _load_file(path: Path, sources: dict, seen: tuple[Path, ...] = ()) -> dict:
    """Load ``path`` on top of the files its ``extends`` key names (paths relative to it)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config files extend each other in a cycle: {chain}")
    data = _read_yaml(path)
    parents = data.pop("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"key 'extends' in {path} must be a file path or a list of them; found {parents!r}")
    merged: dict = {}
    for parent in parents:
        _merge(merged, _load_file(path.parent / parent, sources, (*seen, path)), sources, str(path.parent / parent))
    _merge(merged, data, sources, str(path))
    return merged


def apply_overrides(config: dict, overrides: list[str], sources: dict) -> None:
    """Apply ``key.sub=value`` overrides; each value is parsed as YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must have the form key=value, e.g. train.epochs=10")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = config
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(text)
        sources[key.strip()] = "the command-line overrides"


def _all_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in schema.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys.extend(_all_keys(value, prefix + key + "."))
    return keys


def _where(key: str, sources: dict) -> str:
    """Return where ``key`` was set: its own entry, or the nearest enclosing section's."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        origin = sources.get(".".join(parts[:end]))
        if origin is not None:
            return origin
    return "the config"


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_value(key: str, value: Any, field: Field, sources: dict) -> Any:
    """Return ``value`` checked against ``field`` (an int is accepted for a float)."""
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"key '{key}' in {_where(key, sources)} must be set; it is {field.help}")
    ok = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    if not ok and float in field.types and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"key '{key}' in {_where(key, sources)} must be {_type_name(field.types)}; "
            f"found {value!r} ({type(value).__name__})"
        )
    if field.choices is not None and value not in field.choices:
        allowed = ", ".join(str(c) for c in field.choices)
        raise ConfigError(f"key '{key}' in {_where(key, sources)} is '{value}'; allowed values: {allowed}")
    return value


def _validate(config: dict, schema: dict, sources: dict, prefix: str = "") -> dict:
    """Return ``config`` with defaults filled in, rejecting unknown keys and wrong types."""
    known = _all_keys(SCHEMA)
    result = {}
    for key, value in config.items():
        dotted = prefix + key
        if key not in schema:
            if prefix.rstrip(".") in OPEN_SECTIONS:
                result[key] = value
                continue
            close = difflib.get_close_matches(dotted, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; keys here: {', '.join(schema)}"
            raise ConfigError(f"unknown key '{dotted}' in {_where(dotted, sources)}{hint}")
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"key '{dotted}' in {_where(dotted, sources)} must be a section "
                                  f"(a mapping); found {value!r}")
            continue
        result[key] = _check_value(dotted, value, expected, sources)
    for key, expected in schema.items():
        dotted = prefix + key
        if isinstance(expected, dict):
            result[key] = _validate(config.get(key) or {}, expected, sources, dotted + ".")
        elif key not in config:
            if expected.default is REQUIRED:
                raise ConfigError(f"missing required key '{dotted}' ({expected.help}); "
                                  f"set it in the config file or pass {dotted}=VALUE")
            result[key] = copy.deepcopy(expected.default)
    return result


def _validate_method(config: dict, sources: dict) -> None:
    """Check ``method.name`` and its options against the method registry."""
    from recon.methods import UnknownMethodError, resolve

    section = config["method"]
    try:
        spec = resolve(section["name"])
    except UnknownMethodError as error:
        raise ConfigError(f"key 'method.name' in {_where('method.name', sources)}: {error}") from None
    for key, value in section.items():
        if key == "name":
            continue
        dotted = f"method.{key}"
        if key not in spec.options:
            allowed = ", ".join(sorted(spec.options)) or "none"
            raise ConfigError(f"unknown key '{dotted}' in {_where(dotted, sources)}: method "
                              f"'{spec.name}' has the options: {allowed}")
        option = spec.options[key]
        section[key] = _check_value(dotted, value, Field((option.type,), help=option.help), sources)


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Load, merge, override and validate a config; raise ``ConfigError`` naming the key."""
    sources: dict[str, str] = {}
    raw = _load_file(Path(path), sources)
    apply_overrides(raw, list(overrides or []), sources)
    config = _validate(raw, SCHEMA, sources)
    _validate_method(config, sources)
    return config


def dump_config(config: dict, path: Path) -> None:
    """Write a resolved config as YAML."""
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
