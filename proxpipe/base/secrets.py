"""Secrets from ${ENV_VAR} references, and masking of their values wherever text leaves the process."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any

from proxpipe.base.errors import ConfigError

MASK = "***"
_known: set[str] = set()
_lock = threading.Lock()
# Shorter values would mask ordinary words; real tokens and passwords are longer.
_MIN_LEN = 4
# Names of variables and keys whose values are secrets. Names of a secret's companions (the token's id, a key's
# file or path) are not.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASS|KEY|CREDENTIAL|PRIVATE", re.I)
_COMPANION = re.compile(r"_(ID|NAME|FILE|PATH|DIR)$", re.I)


def looks_secret(name: str) -> bool:
    """True for names like PVE_TOKEN_SECRET, db_password, api_key; False for PVE_TOKEN_ID or ssh_key_file."""
    return bool(_SECRET_NAME.search(name)) and not _COMPANION.search(name)


def register(value: Any, nested: bool = False) -> None:
    """Mask this value (and its URL-encoded form) in every log, report and notification from now on. A list or
    mapping registers the strings it holds (not its numbers: a port would mask every such number)."""
    if isinstance(value, dict | list | tuple):
        for item in value.values() if isinstance(value, dict) else value:
            register(item, nested=True)
        return
    if value is None or isinstance(value, bool) or (nested and not isinstance(value, str)):
        return
    text = str(value)
    if len(text) < _MIN_LEN:
        return
    from urllib.parse import quote

    with _lock:
        _known.update({text, quote(text, safe="")})


def mask(text: str) -> str:
    """text with every registered secret replaced by ***."""
    if not _known or not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_tree(value: Any) -> Any:
    """A copy of a JSON-like value with every string in it (keys too) masked: unlike mask(json.dumps(...)), this
    also finds a secret that JSON would escape (a quote, a backslash, a non-ASCII character)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(key)): mask_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_tree(item) for item in value]
    return value


def holds_secret(text: str, shortest: int = 8) -> bool:
    """True when text contains a registered secret of at least `shortest` characters (a shorter one, like a
    four-letter password, would be found in ordinary paths and words)."""
    return any(len(value) >= shortest and value in text for value in list(_known))


def unset_message(where: str, name: str) -> str:
    """The one line for a ${VAR} reference whose variable is not set."""
    return f"{where}: environment variable {name} is not set (use ${{{name}:-default}} for a default)"


class Secret:
    """A value that must never be shown: str() and repr() give ***; reveal() gives the value.

    value None: the variable it comes from is not set, and reveal() says so (the failure waits until a command
    needs the value). empty_ok: an empty value is a value (a tool variable), not a missing one (a token).
    """

    def __init__(self, value: Any, source: str, where: str, empty_ok: bool = False):
        self._value = value
        self.source = source  # the environment variable it comes from, e.g. PVE_TOKEN_SECRET
        self.where = where  # file and key path, for error messages
        self.empty_ok = empty_ok
        register(value)

    @property
    def is_set(self) -> bool:
        return self._value is not None and (self.empty_ok or self._value != "")

    def reveal(self) -> Any:
        if not self.is_set:
            raise ConfigError(unset_message(self.where, self.source))
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${self.source})" if self.source else "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.source, self._value) == (other.source, other._value)

    def __hash__(self) -> int:
        return hash(self.source)


def reveal(value: Any) -> Any:
    """value itself, or a Secret's value."""
    return value.reveal() if isinstance(value, Secret) else value


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def references(text: str) -> list[str]:
    """The names of the variables text refers to with ${VAR}."""
    return [match.group(1) for match in _REF.finditer(text)]


def written_out(text: str, placeholder: str = "") -> str:
    """text with its ${VAR} and ${VAR:-default} references replaced by placeholder: what is written out in it."""
    return _REF.sub(placeholder, text)


def expand(text: str, environ: dict[str, str]) -> tuple[str | None, list[str]]:
    """Replace ${VAR} and ${VAR:-default} in text; the values of variables named like secrets are registered.

    Returns (value, names); value is None when a variable without default is unset.
    """
    names: list[str] = []
    missing = False

    def sub(match: re.Match) -> str:
        nonlocal missing
        name, default = match.group(1), match.group(2)
        names.append(name)
        value = environ.get(name, default)
        if value is None:
            missing = True
            return ""
        if looks_secret(name):
            register(value)
        return value

    value = _REF.sub(sub, text)
    return (None if missing else value), names


def credentials_digest(who: str, secret: str, salt: str | None = None) -> str:
    """A salted digest of credentials ("salt:digest"; never the credentials): what a lab server was started with."""
    salt = salt or os.urandom(16).hex()
    digest = hashlib.pbkdf2_hmac("sha256", f"{who}\0{secret}".encode(), salt.encode(), 1000).hex()
    return f"{salt}:{digest}"


def same_credentials(recorded: Path, who: str, secret: str) -> bool:
    """True when the file holds credentials_digest() of these credentials."""
    try:
        text = recorded.read_text()
    except OSError:
        return False
    return text == credentials_digest(who, secret, salt=text.split(":")[0])
