"""A small declarative schema for pipeline.yaml: types, defaults, paths, and one-line errors.

Every error names the file, the key path and the problem, e.g.
``pipeline.yaml: environments.lab.stages.build.template_id_range: empty range [9200, 9100] (low > high)``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.base.errors import ConfigError
from proxpipe.base.fsutil import display
from proxpipe.base.secrets import Secret, expand, looks_secret, references, unset_message, written_out

# Kinds of value a Field accepts.
STR, INT, NUMBER, BOOL, LIST, MAP = "str", "int", "number", "bool", "list", "map"
DIR, FILE, PATH = "dir", "file", "path"  # relative to the base directory; dir and file must exist
SECRET = "secret"  # a string that must never be shown; ${VAR} references are resolved lazily
COMMAND = "command"  # a program and its arguments: a list of strings, or one string split like a shell
VARS = "vars"  # name -> value for a tool; secret ones become Secret, and an unset ${VAR} fails only when used
RANGE = "range"  # [low, high] integers, low <= high
ANY = "any"
RAW = "raw"  # taken as it is, checked later by its own schema

_TYPE_NAMES = {STR: "a string", INT: "an integer", NUMBER: "a number", BOOL: "true or false",
               LIST: "a list", MAP: "a mapping", DIR: "a directory path", FILE: "a file path",
               PATH: "a path", SECRET: "a string", COMMAND: "a command (list of strings)",
               RANGE: "a range [low, high]", VARS: "a mapping", ANY: "a value", RAW: "a value"}


class Field(NamedTuple):
    """One key of a mapping: its kind, default and constraints. doc feeds the generated docs."""

    kind: str
    doc: str = ""
    default: Any = None
    required: bool = False
    items: Field | None = None  # for LIST: the kind of each item
    fields: Mapping[str, Field] | None = None  # for MAP with fixed keys
    values: Field | None = None  # for MAP with free keys: the kind of each value
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    relative_to: str = "base"  # paths: "base" (the stage's dir for stage options) or "project"
    # SECRET: the problem with the text as written (before its ${VAR} references are resolved), or None. Default:
    # anything written out besides references is refused (a secret in a file is a secret in git).
    as_written: Callable[[str], str | None] | None = None


class Context:
    """Where values come from: the file (for messages), the base directory of relative paths, the environ."""

    def __init__(self, file: str, base: Path, environ: Mapping[str, str] | None = None, project: Path | None = None):
        self.file = file
        self.base = base
        self.environ = dict(os.environ) if environ is None else environ
        self.project = project  # the directory of pipeline.yaml; base when None

    def error(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {where}: {problem}")


class Unset(ConfigError):
    """A ${VAR} reference to a variable that is not set, and has no default."""

    def __init__(self, where: str, variable: str):
        super().__init__(unset_message(where, variable))
        self.where, self.variable = where, variable


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_map(data: Any, fields: Mapping[str, Field], where: str, ctx: Context) -> dict:
    """Check a mapping against its fields; returns it with defaults filled in and values converted."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ctx.error(where or "(top level)", f"expected a mapping, got {describe(data)}")
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        known = ", ".join(fields) or "none"
        raise ctx.error(_join(where, unknown[0]), f"unknown key (known keys here: {known})")
    out = {}
    for name, spec in fields.items():
        key_path = _join(where, name)
        if name not in data or data[name] is None:
            if spec.required:
                raise ctx.error(key_path, f"missing; expected {_TYPE_NAMES[spec.kind]}")
            out[name] = convert(spec.default, spec, key_path, ctx) if spec.default is not None else None
            continue
        out[name] = convert(data[name], spec, key_path, ctx)
    return out


def convert(value: Any, spec: Field, where: str, ctx: Context) -> Any:
    """One value checked against its field and converted (paths resolved, secrets wrapped)."""
    if isinstance(value, str) and spec.kind not in (SECRET, RAW):
        value = _expand(value, where, ctx)
    value = _CONVERTERS[spec.kind](value, spec, where, ctx)
    if spec.choices and value not in spec.choices:
        raise ctx.error(where, f"{describe(value)} is not one of: {', '.join(map(str, spec.choices))}")
    if spec.minimum is not None and value < spec.minimum:
        raise ctx.error(where, f"{describe(value)} is below the minimum {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise ctx.error(where, f"{describe(value)} is above the maximum {spec.maximum}")
    if spec.check:
        problem = spec.check(value)
        if problem:
            raise ctx.error(where, problem)
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _expand(text: str, where: str, ctx: Context) -> str:
    value, names = expand(text, ctx.environ)
    if value is None:
        missing = [n for n in names if n not in ctx.environ]
        raise Unset(f"{ctx.file}: {where}", missing[0])
    return value


def _wrong(value: Any, spec: Field, where: str, ctx: Context) -> ConfigError:
    return ctx.error(where, f"expected {_TYPE_NAMES[spec.kind]}, got {describe(value)}")


def _str(value, spec, where, ctx):
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _wrong(value, spec, where, ctx)
    return str(value)


def _int(value, spec, where, ctx):
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(value, spec, where, ctx)
    return value


def _number(value, spec, where, ctx):
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _wrong(value, spec, where, ctx) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(value, spec, where, ctx)
    return float(value)


def _bool(value, spec, where, ctx):
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise _wrong(value, spec, where, ctx)
    return value


def _free(value, where, ctx):
    """A value of no declared shape, with ${VAR} references in its strings resolved."""
    if isinstance(value, str):
        return _expand(value, where, ctx)
    if isinstance(value, dict):
        return {k: _free(v, _join(where, str(k)), ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_free(v, f"{where}[{i}]", ctx) for i, v in enumerate(value)]
    return value


def _list(value, spec, where, ctx):
    if not isinstance(value, list):
        raise _wrong(value, spec, where, ctx)
    if spec.items is None:
        return _free(value, where, ctx)
    return [convert(item, spec.items, f"{where}[{i}]", ctx) for i, item in enumerate(value)]


def _map(value, spec, where, ctx):
    if spec.fields is not None:
        return validate_map(value, spec.fields, where, ctx)
    if not isinstance(value, dict):
        raise _wrong(value, spec, where, ctx)
    if spec.values is None:
        return _free(value, where, ctx)
    return {str(k): convert(v, spec.values, _join(where, str(k)), ctx) for k, v in value.items()}


def _path(value, spec, where, ctx):
    if not isinstance(value, str) or not value:
        raise _wrong(value, spec, where, ctx)
    base = (ctx.project or ctx.base) if spec.relative_to == "project" else ctx.base
    path = (base / value) if not os.path.isabs(value) else Path(value)
    if spec.kind == DIR and not path.is_dir():
        raise ctx.error(where, f"directory {value} does not exist (relative to {_shown(base)})")
    if spec.kind == FILE and not path.is_file():
        raise ctx.error(where, f"file {value} does not exist (relative to {_shown(base)})")
    return path


def _shown(base: Path) -> str:
    shown = display(base)
    return "the project" if shown == "." else shown


def _secret(value, spec, where, ctx):
    if not isinstance(value, str):
        raise _wrong(value, spec, where, ctx)
    problem = spec.as_written(value) if spec.as_written else literal_secret(value, where)
    if problem:
        raise ctx.error(where, problem)
    resolved, names = expand(value, ctx.environ)
    source = names[0] if names else ""
    return Secret(resolved, source, f"{ctx.file}: {where}")


def literal_secret(text: str, where: str) -> str | None:
    """The problem with a secret written out, or None when it is only ${VAR} references (a ${VAR:-default} included)
    or empty."""
    if not written_out(text).strip():
        return None
    variable = "_".join(where.replace("-", "_").split(".")[-2:]).upper()  # proxmox.token_secret: PROXMOX_TOKEN_SECRET
    return (f"a literal secret is refused: write a reference such as ${{{variable}}} instead, and set that environment "
            "variable")


def _command(value, spec, where, ctx):
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not value or not all(isinstance(a, str | int) for a in value):
        raise _wrong(value, spec, where, ctx)
    return [_expand(str(a), where, ctx) for a in value]


def _vars(value, spec, where, ctx):
    if not isinstance(value, dict):
        raise _wrong(value, spec, where, ctx)
    return {str(k): _tool_var(str(k), v, spec.values, _join(where, str(k)), ctx) for k, v in value.items()}


def _tool_var(key: str, value: Any, spec: Field | None, where: str, ctx: Context) -> Any:
    """One tool variable: a Secret when its key or a variable it refers to is named like a secret, or when it refers
    to a variable that is not set (that failure waits until a command needs the value); else the value."""
    names = references(json.dumps(value, default=str))
    secret_names = [name for name in names if looks_secret(name)]
    try:
        resolved = convert(value, spec, where, ctx) if spec else _free(value, where, ctx)
    except Unset as exc:
        return Secret(None, exc.variable, exc.where, empty_ok=True)
    if looks_secret(key) or secret_names:
        return Secret(resolved, (secret_names or names or [""])[0], f"{ctx.file}: {where}", empty_ok=True)
    return resolved


def _range(value, spec, where, ctx):
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise _wrong(value, spec, where, ctx)
    low, high = value
    if low > high:
        raise ctx.error(where, f"empty range [{low}, {high}] (low > high)")
    return (low, high)


_CONVERTERS = {STR: _str, INT: _int, NUMBER: _number, BOOL: _bool, LIST: _list, MAP: _map,
               DIR: _path, FILE: _path, PATH: _path, SECRET: _secret, COMMAND: _command,
               RANGE: _range, VARS: _vars, ANY: lambda value, spec, where, ctx: _free(value, where, ctx),
               RAW: lambda value, spec, where, ctx: value}
