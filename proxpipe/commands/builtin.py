"""proxpipe's own commands, contributed through the register_commands hook like any plugin's (tox 4's internal
plugins): each command is declared in the module that implements it, in its COMMANDS."""

from proxpipe.api.hookspecs import hookimpl
from proxpipe.commands import (
    deploy,
    docs,
    doctor,
    drift,
    history,
    plan,
    rollback,
    standalone,
    statecopy,
    status,
    templates,
    validate,
)

MODULES = (deploy, plan, status, validate, drift, history, templates, rollback, statecopy, docs, doctor,
           standalone)


@hookimpl
def register_commands(register):
    for module in MODULES:
        for command in module.COMMANDS:
            register(command)
