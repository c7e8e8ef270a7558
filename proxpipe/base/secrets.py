"""Secrets from ${ENV_VAR} references, and masking of their values wherever text leaves the process."""

from __future__ import annotations

import re
import threading

from proxpipe.base.errors import ConfigError

MASK = "***"
_known: set[str] = set()
_lock = threading.Lock()
# Shorter values would mask ordinary words; real tokens and passwords are longer.
_MIN_LEN = 4


def register(value: str | None) -> None:
    """Mask this value (and its URL-encoded form) in every log, report and notification from now on."""
    if not value or len(value) < _MIN_LEN:
        return
    from urllib.parse import quote

    with _lock:
        _known.update({value, quote(value, safe="")})


def mask(text: str) -> str:
    """text with every registered secret replaced by ***."""
    if not _known or not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


class Secret:
    """A value that must never be shown: str() and repr() give ***; reveal() gives the value."""

    def __init__(self, value: str | None, source: str, where: str):
        self._value = value
        self.source = source  # the environment variable it comes from, e.g. PVE_TOKEN_SECRET
        self.where = where  # file and key path, for error messages
        register(value)

    @property
    def is_set(self) -> bool:
        return bool(self._value)

    def reveal(self) -> str:
        if not self._value:
            raise ConfigError(
                f"{self.where}: environment variable {self.source} is not set; export it or change this key"
            )
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${self.source})" if self.source else "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.source, self._value) == (other.source, other._value)

    def __hash__(self) -> int:
        return hash(self.source)


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, environ: dict[str, str]) -> tuple[str | None, list[str]]:
    """Replace ${VAR} and ${VAR:-default} in text.

    Returns (value, names); value is None when a variable without default is unset.
    """
    names: list[str] = []
    missing = False

    def sub(match: re.Match) -> str:
        nonlocal missing
        name, default = match.group(1), match.group(2)
        names.append(name)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing = True
        return ""

    value = _REF.sub(sub, text)
    return (None if missing else value), names
