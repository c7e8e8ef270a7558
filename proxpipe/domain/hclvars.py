"""The variables a Packer template or a Terraform configuration declares: name, type, default, description and
whether it is sensitive. Read with python-hcl2 (HCL) and json (the JSON syntax), never with regular expressions.

    variables(Path("lab/terraform"), TERRAFORM)
    -> {"vm_salt": {"sensitive": True, "type": "string", "description": "...", "default": "", "file": "main.tf"}}

python-hcl2 takes a tenth of a second to import and parse, so the pipeline asks only when a stage runs, through
sensitive(), which keeps its answer in a cache keyed by the files' digests.
"""

from __future__ import annotations

import hashlib
import json
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
    """The names of the variables declared sensitive, from the cache while the source files are the same."""
    files = source_files(directory, kind)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    key, current = f"{kind}:{Path(directory).resolve()}", digest.hexdigest()
    entries = _read_cache(cache)
    if entries.get(key, {}).get("digest") == current:
        return set(entries[key]["sensitive"])
    names = sorted(name for name, var in variables(directory, kind).items() if var["sensitive"])
    if cache is not None:
        from proxpipe.base.fsutil import atomic_write

        entries[key] = {"digest": current, "sensitive": names}
        atomic_write(cache, json.dumps(entries, indent=1, sort_keys=True), durable=False)
    return set(names)


def _read_cache(cache: Path | None) -> dict:
    try:
        data = json.loads(cache.read_text()) if cache else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _declarations(path: Path) -> list[tuple[str, dict]]:
    """(name, attributes) of each variable block of one file."""
    data = _json(path) if path.name.endswith(".json") else _hcl(path)
    blocks = data.get("variable") or []
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
