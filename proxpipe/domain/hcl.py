"""Packer templates and Terraform configurations read with python-hcl2 (HCL) and json (the JSON syntax), never with
regular expressions: the variables they declare (name, type, default, description, whether it is sensitive), their
outputs and blocks. Expressions the parser cannot turn into plain values come back as "${...}" strings; the few
that matter here (a `var.NAME` reference, a `jsonencode({...})` call) are taken apart with the same parser.

    variables(Path("lab/terraform"), TERRAFORM)
    -> {"vm_salt": {"sensitive": True, "type": "string", "description": "...", "default": "", "file": "main.tf"}}

python-hcl2 takes a tenth of a second to import and parse, so the pipeline asks only when a stage runs, through
sensitive(), which keeps its answer in a cache keyed by the files' digests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from proxpipe.base.errors import PipelineError

PACKER, TERRAFORM = "packer", "terraform"
_GLOBS = {PACKER: ("*.pkr.hcl", "*.pkr.json"), TERRAFORM: ("*.tf", "*.tf.json")}


class HclError(PipelineError):
    """A source file whose variable declarations cannot be read."""


def source_files(directory: Path, kind: str | None = None) -> list[Path]:
    """The files that declare variables, in the order the tool reads them (Terraform's *_override files last)."""
    globs = _GLOBS[kind] if kind else _GLOBS[PACKER] + _GLOBS[TERRAFORM]
    files = {path for pattern in globs for path in Path(directory).glob(pattern) if path.is_file()}
    return sorted(files, key=lambda p: (p.name.split(".")[0].endswith("override"), p.name))


def variables(directory: Path, kind: str | None = None) -> dict[str, dict[str, Any]]:
    """name -> {sensitive, type, description, file, and default when one is declared} of every variable declared in
    directory's Packer (kind PACKER), Terraform (TERRAFORM) or both (None) source files. An override file's
    declaration changes the attributes it sets. HclError names the file that cannot be read."""
    found: dict[str, dict[str, Any]] = {}
    for path in source_files(directory, kind):
        for name, attributes in _declarations(path):
            entry = found.setdefault(name, {"sensitive": False, "type": None, "description": None, "file": path.name})
            entry.update(_described(attributes))
    return found


def legacy_packer_variables(template: Path) -> dict[str, dict[str, Any]]:
    """The same for a legacy JSON Packer template: its "variables" and "sensitive-variables"."""
    data = _json(template)
    declared = data.get("variables") or {}
    hidden = set(data.get("sensitive-variables") or [])
    if not isinstance(declared, dict):
        raise HclError(f"{template.name}: \"variables\" is not an object")
    return {str(name): {"sensitive": name in hidden, "type": None, "description": None, "default": default,
                        "file": template.name} for name, default in declared.items()}


def sensitive(directory: Path, kind: str, cache: Path | None = None) -> set[str]:
    """The names of the variables declared sensitive."""
    return set(facts(directory, kind, cache)["sensitive"])


def facts(directory: Path, kind: str, cache: Path | None = None) -> dict[str, Any]:
    """What the pipeline needs of a directory's sources, from the cache while the files are the same:
    {"sensitive": names of the variables declared sensitive, "backend": the Terraform backend type declared (or
    None), "local_state": the state paths a `backend "local"` block names}."""
    files = source_files(directory, kind)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    key, current = f"{kind}:{Path(directory).resolve()}", digest.hexdigest()
    entries = _read_cache(cache)
    if entries.get(key, {}).get("digest") == current and "facts" in entries[key]:
        return entries[key]["facts"]
    backend, local_state = _backend(directory) if kind == TERRAFORM else (None, [])
    found = {"sensitive": sorted(name for name, var in variables(directory, kind).items() if var["sensitive"]),
             "backend": backend, "local_state": local_state}
    if cache is not None:
        from proxpipe.base.fsutil import atomic_write

        entries[key] = {"digest": current, "facts": found}
        try:
            atomic_write(cache, json.dumps(entries, indent=1, sort_keys=True), durable=False)
        except OSError:
            pass  # a read-only or full state directory: read again next time
    return found


def _backend(directory: Path) -> tuple[str | None, list[str]]:
    """(type, local state paths) of the backend a Terraform configuration declares: `terraform { backend "TYPE"
    {...} }`; paths only for the local backend's path and workspace_dir, when they are plain strings."""
    for _path, block in blocks(directory, TERRAFORM, "terraform"):
        for backend in block.get("backend") or []:
            for name, body in backend.items():
                body = body if isinstance(body, dict) else {}
                paths = [body[key] for key in ("path", "workspace_dir")
                         if name == "local" and isinstance(body.get(key), str) and "${" not in body[key]]
                return name, paths
    return None, []


def _read_cache(cache: Path | None) -> dict:
    try:
        data = json.loads(cache.read_text()) if cache else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _declarations(path: Path) -> list[tuple[str, dict]]:
    """(name, attributes) of each variable block of one file."""
    blocks = parse(path).get("variable") or []
    if isinstance(blocks, dict):  # the JSON syntax: {"name": {...}}
        blocks = [blocks]
    out = []
    for block in blocks:
        for name, attributes in (block.items() if isinstance(block, dict) else ()):
            out.append((str(name), attributes if isinstance(attributes, dict) else {}))
    return out


def _described(attributes: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "sensitive" in attributes:
        out["sensitive"] = attributes["sensitive"] in (True, "true")
    if "type" in attributes:
        out["type"] = _unwrap(str(attributes["type"]))
    if "description" in attributes:
        out["description"] = attributes["description"]
    if "default" in attributes:
        out["default"] = attributes["default"]
    return out


def _unwrap(expression: str) -> str:
    """python-hcl2 writes expressions as ${...}: map(string) rather than ${map(string)}."""
    return expression[2:-1] if expression.startswith("${") and expression.endswith("}") else expression


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise HclError(f"{path.name}: cannot read it: {exc}") from None
    except ValueError as exc:
        raise HclError(f"{path.name}: invalid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def parse(path: Path) -> dict[str, Any]:
    """One file as a dictionary (HCL through python-hcl2, or the JSON syntax); HclError naming it when unreadable.
    Kept per process by size and modification time: discovery reads the same files many times."""
    stat = Path(path).stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _parse(path: str, _mtime: int, _size: int) -> dict[str, Any]:
    return _json(Path(path)) if path.endswith(".json") else _hcl(Path(path))


def blocks(directory: Path, kind: str, block: str) -> Iterator[tuple[Path, Any]]:
    """Every block of one kind ("variable", "output", "resource", "source", ...) in the directory's files."""
    for path in source_files(directory, kind):
        found = parse(path).get(block) or []
        for item in found if isinstance(found, list) else [found]:
            yield path, item


def outputs(directory: Path) -> dict[str, Any]:
    """output name -> its value expression (a plain value, or a "${...}" string) of a Terraform configuration."""
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


def _hcl(path: Path) -> dict:
    import hcl2
    from hcl2.utils import SerializationOptions
    from lark.exceptions import LarkError

    options = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    try:
        return hcl2.loads(path.read_text(), serialization_options=options)
    except (OSError, UnicodeDecodeError) as exc:
        raise HclError(f"{path.name}: cannot read it: {exc}") from None
    except LarkError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f"line {line}, column {column}" if line else "syntax"
        raise HclError(f"{path.name}: {where}: cannot parse its HCL ({type(exc).__name__})") from None
