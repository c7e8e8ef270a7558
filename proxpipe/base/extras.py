"""proxpipe's optional extras (pyproject.toml's optional-dependencies): which are installed, and the one line that
names the missing one with its exact install command, instead of a ModuleNotFoundError deep in a run."""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

from proxpipe.base.errors import ConfigError


class Extra(NamedTuple):
    name: str
    modules: tuple[str, ...]  # what it brings that proxpipe imports (or runs, as ansible-playbook)
    purpose: str

    @property
    def install(self) -> str:
        return f"pip install 'proxpipe[{self.name}]'"


EXTRAS = (
    Extra("lab", ("fakepve", "aiohttp", "cryptography", "ansible"), "the local lab: its Proxmox stand-in (fakepve) "
                                                                 "and Ansible"),
    Extra("postgres", ("psycopg",), "shared state in PostgreSQL (an environment's state: url)"),
)


def extra(name: str) -> Extra:
    return next(e for e in EXTRAS if e.name == name)


def missing(name: str) -> list[str]:
    """The extra's modules that cannot be imported here (none: it is installed). Finds them without importing."""
    absent = []
    for module in extra(name).modules:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            absent.append(module)
    return absent


def require(name: str, needed_for: str) -> None:
    """ConfigError, one line with the install command, when the extra is not installed."""
    absent = missing(name)
    if absent:
        raise ConfigError(f"{needed_for} needs proxpipe's {name} extra, which is not installed (no module "
                          f"{', '.join(absent)}): {extra(name).install}")
