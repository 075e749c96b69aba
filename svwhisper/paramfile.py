"""Reading `params.yaml`: each block into a frozen dataclass (the schema is svwhisper.params), checked.

Each stage declares a frozen dataclass for its block and calls `load_params(Block, "name")`.
Values are coerced to the field's type (`dvc exp run -S train.learning_rate=2e-5` writes
`2e-05`, which YAML reads back as a string), and a key the dataclass does not know is an
error naming the file, line and key: a typo must never become a silently ignored setting.
So are a key written twice (YAML would keep the last silently), a number that is not finite,
and a value outside the range its block's `check()` allows.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """A params.yaml problem, with the file, line and key in its message."""


class ParamsRangeError(ValueError):
    """Raised by a block's `check()` about one key, so that the error names that key's line."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key} {message}")


def at_least(params, low, *keys: str) -> None:
    """Each of `keys` of `params` must be >= low."""
    for key in keys:
        if not getattr(params, key) >= low:
            raise ParamsRangeError(key, f"must be >= {low}, got {getattr(params, key)}")


def within(params, low, high, *keys: str, high_open: bool = False) -> None:
    """Each of `keys` must lie in [low, high] ([low, high) with `high_open`)."""
    for key in keys:
        value = getattr(params, key)
        if not (low <= value < high if high_open else low <= value <= high):
            bracket = ")" if high_open else "]"
            raise ParamsRangeError(key, f"must be in [{low}, {high}{bracket}, got {value}")


def one_of(params, key: str, allowed) -> None:
    if getattr(params, key) not in allowed:
        raise ParamsRangeError(key, f"must be one of {', '.join(map(str, allowed))}; got {getattr(params, key)!r}")


def _duplicate_keys(text: str, path: Path) -> None:
    """ParamsError at the second occurrence of any key written twice in one mapping of the YAML `text`."""

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                if key.value in first:
                    raise ParamsError(
                        f"{path}:{key.start_mark.line + 1}: {name}: duplicate key (first at line {first[key.value]})"
                    )
                first[key.value] = key.start_mark.line + 1
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{prefix}[{index}]")

    walk(yaml.compose(text), "")


def _key_lines(text: str, block: str) -> dict[str, int]:
    """1-based line of every key inside `block` of a YAML document, by dotted path (for error messages).

    Nested keys are named as in error messages: `sources.train[0].kind`.
    """
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else key.value
                lines[name] = key.start_mark.line + 1
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[f"{prefix}[{index}]"] = item.start_mark.line + 1
                walk(item, f"{prefix}[{index}]")

    root = yaml.compose(text)
    for key_node, value_node in getattr(root, "value", []):
        if key_node.value == block:
            walk(value_node, "")
    return lines


def _coerce(value, target, key: str, where):
    """Convert `value` (at `key` of the block) to the annotation `target`.

    Supported: int, float, bool, str, tuple[...], Optional, and nested frozen dataclasses
    (e.g. a tuple of data sources). `where(key)` gives the `file:line: block.key` of an error.
    """
    origin = typing.get_origin(target)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(target) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, where)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(target)
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_coerce(v, item_type, f"{key}[{i}]", where) for i, v in enumerate(items))
    if dataclasses.is_dataclass(target):
        return _parse_dataclass(target, value, key, where)
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ParamsError(f"{where(key)}: expected true or false, got {value!r}")
    if target in (int, float):
        if isinstance(value, bool):
            raise ParamsError(f"{where(key)}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int of hundreds of digits
            raise ParamsError(f"{where(key)}: expected a number, got {_shown(value)}") from None
        if not math.isfinite(number):
            raise ParamsError(f"{where(key)}: expected a finite number, got {_shown(value)}")
        if target is int:
            if not number.is_integer():
                raise ParamsError(f"{where(key)}: expected a whole number, got {_shown(value)}")
            if abs(number) >= 2**63:  # torch, numpy and the Trainer take 64-bit integers
                raise ParamsError(f"{where(key)}: {_shown(value)} is too large (at most 2**63 - 1)")
            return int(number)
        return number
    if target is str:
        if isinstance(value, dict | list):
            raise ParamsError(f"{where(key)}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    raise TypeError(f"unsupported params field type {target!r}")


def _shown(value) -> str:
    """`value` as an error message shows it: at most 40 characters."""
    text = (
        repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an integer of {len(str(value))} digits"
    )
    return text if len(text) <= 40 else f"{text[:37]}..."


def _parse_dataclass(cls, raw, prefix: str, where):
    """The frozen dataclass `cls` from the mapping `raw` found at `prefix` ("" = the block itself)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(f"{where(prefix)}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def key(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    unknown = [k for k in raw if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise ParamsError(f"{where(key(unknown[0]))}: unknown key {unknown[0]!r} (known keys: {known})")
    values = {}
    for name, field in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], key(name), where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where(key(name))} is missing")
    try:
        params = cls(**values)
        check = getattr(params, "check", None)
        if check is not None:
            check()
    except ParamsRangeError as err:
        raise ParamsError(f"{where(key(err.key))}: {err.message}") from None
    except ValueError as err:
        raise ParamsError(f"{where(prefix)}: {err}") from None
    return params


def parse_block(cls, raw: dict | None, block: str, path: Path = PARAMS_FILE, text: str = ""):
    """Build the frozen dataclass `cls` from the mapping `raw` (the `block` of `path`)."""
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: block {block!r} must be a mapping, got {type(raw).__name__}")
    lines = _key_lines(text, block) if text else {}

    def where(key: str) -> str:
        line = f":{lines[key]}" if key in lines else ""
        return f"{path}{line}: {block}.{key}" if key else f"{path}: {block}"

    return _parse_dataclass(cls, raw, "", where)


def load_params(cls, block: str, path: Path = PARAMS_FILE):
    """Read `block` of the YAML file at `path` into the frozen dataclass `cls`."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        _duplicate_keys(text, Path(path))
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an int of over 4300 digits
        raise ParamsError(f"{path}: not valid YAML ({err})") from None
    if block not in data:
        raise ParamsError(f"{path}: block {block!r} is missing")
    return parse_block(cls, data[block], block, Path(path), text)


def key_where(path: Path, block: str, key: str) -> str:
    """`file:line: block.key` of `key` in `block` of the YAML file at `path` (no line when it is not written)."""
    lines = _key_lines(Path(path).read_text(encoding="utf-8"), block)
    return f"{path}:{lines[key]}: {block}.{key}" if key in lines else f"{path}: {block}.{key}"
