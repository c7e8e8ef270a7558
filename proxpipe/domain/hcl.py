"""Terraform (.tf) and Packer (.pkr.hcl) files read with python-hcl2: variables, outputs, blocks.

Never regular expressions over HCL. Expressions the parser cannot turn into plain values come back as
"${...}" strings; the few that matter here (a `var.NAME` reference, a `jsonencode({...})` call) are taken
apart with the same parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.base.errors import ConfigError

TERRAFORM = ".tf"
PACKER = ".pkr.hcl"


class Variable(NamedTuple):
    name: str
    sensitive: bool
    has_default: bool
    type: str | None
    description: str


def files(directory: Path, suffix: str) -> list[Path]:
    """The directory's own HCL files of one tool (not its subdirectories; Packer variable files left out)."""
    found = sorted(p for p in Path(directory).glob(f"*{suffix}") if p.is_file())
    return [p for p in found if not p.name.endswith(".pkrvars.hcl")]


def parse(path: Path) -> dict[str, Any]:
    """One file as python-hcl2's dictionary; ConfigError naming the file when it does not parse."""
    stat = Path(path).stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _parse(path: str, _mtime: int, _size: int) -> dict[str, Any]:
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    try:
        with open(path) as source:
            return hcl2.load(source, serialization_options=options)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - lark's parse errors have no common base worth naming
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid HCL: {first}") from None


def blocks(directory: Path, suffix: str, kind: str) -> Iterator[tuple[Path, Any]]:
    """Every block of one kind ("variable", "output", "resource", ...) in the directory's files."""
    for path in files(directory, suffix):
        for block in parse(path).get(kind, []):
            yield path, block


def variables(directory: Path, suffix: str) -> dict[str, Variable]:
    found = {}
    for _path, block in blocks(directory, suffix, "variable"):
        for name, body in block.items():
            body = body or {}
            found[name] = Variable(name, body.get("sensitive") is True, "default" in body,
                                   body.get("type"), str(body.get("description", "")))
    return found


def outputs(directory: Path) -> dict[str, Any]:
    """output name -> its value expression (a plain value, or a "${...}" string)."""
    return {name: (body or {}).get("value") for _path, block in blocks(directory, TERRAFORM, "output")
            for name, body in block.items()}


def var_reference(value: Any) -> str | None:
    """NAME when value is exactly the expression `var.NAME`."""
    if isinstance(value, str) and value.startswith("${var.") and value.endswith("}"):
        name = value[len("${var."):-1]
        if name.isidentifier():
            return name
    return None


def call_argument(value: Any, function: str) -> Any:
    """The argument of `function(...)` when value is exactly that call, parsed as an HCL value; else None."""
    prefix = "${" + function + "("
    if not (isinstance(value, str) and value.startswith(prefix) and value.endswith(")}")):
        return None
    import hcl2

    try:
        return hcl2.loads(f"argument = {value[len(prefix):-2]}\n")["argument"]
    except Exception:  # noqa: BLE001 - not a single plain argument
        return None


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) of every attribute in a parsed block body, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
