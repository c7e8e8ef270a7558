"""proxpipe's help, from the commands' own declarations: `proxpipe` / `--help` / `help` list the commands by group
with the global options; `proxpipe help COMMAND` / `proxpipe COMMAND --help` give one command's usage, what it
does, every option with its default, and an example. docs/cli.md is made from the same pieces (cliref)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from proxpipe.api.command import Command, Param
from proxpipe.commands import catalog as catalog_mod
from proxpipe.commands.catalog import Catalog
from proxpipe.commands.cliargs import ENV_HELP, GLOBAL_OPTIONS, UsageError, split, unknown_command

WIDTH = 100
PROGRAM = "proxpipe"
SUMMARY = "a Make-like pipeline for Proxmox VE: Packer → Terraform → Ansible, with checked handoffs between them"
DOCS = ("docs: docs/cli.md (every command) and README.md in proxpipe's repository; `proxpipe docs` writes this "
        "project's deployment guides")


# ----------------------------------------------------------------------------- pieces (also for docs/cli.md)


def metavar(param: Param) -> str:
    return param.metavar or param.long.upper().replace("-", "_")


def flag(param: Param) -> str:
    """`-f FILE, --file FILE`, `--force`."""
    value = "" if param.type is bool else f" {metavar(param)}"
    return ", ".join([*([f"-{param.short}{value}"] if param.short else []), f"--{param.long}{value}"])


def default(param: Param) -> str:
    if param.type is bool:
        text = "on" if param.default else "off"
    elif param.default in (None, "", [], ()):
        text = "none"
    else:
        text = str(param.default)
    if param.type is list:
        text += "; repeatable"
    return text + (f"; also ${param.env_var}" if param.env_var else "")


def example(command: Command) -> str:
    """The command's example as a proxpipe command line (declarations may say `doit ...`: the same command)."""
    text = command.example or f"{PROGRAM} {command.name}"
    return f"{PROGRAM} {text[5:]}" if text.startswith("doit ") else text


def usage_line(command: Command) -> str:
    options = " ".join(f"[{flag(p).split(', ')[-1]}]" for p in command.params)
    parts = [PROGRAM, command.name, options, command.arguments, "" if command.standalone else "[env=NAME]"]
    return " ".join(part for part in parts if part)


def option_rows(command: Command, environment: str = "") -> list[tuple[str, str, str]]:
    """(flag, default, meaning) of every option the command takes, the shared ones after its own; no default where
    the meaning says it. environment: the default one."""
    rows = [(flag(p), "" if "default" in p.help else default(p), p.help) for p in command.params]
    if not command.standalone:
        rows.append(("env=NAME", environment or "the pipeline's default_environment", ENV_HELP))
    if command.lock:
        wait = next(p for p in GLOBAL_OPTIONS if p.name == "wait_lock")
        rows.append((flag(wait), "0: fail at once; also $PROXPIPE_WAIT_LOCK", wait.help))
    rows.append(("-h, --help", "", "this help"))
    return rows


def summary(command: Command) -> str:
    """The command's doc as one line of the command list."""
    return command.doc


# ----------------------------------------------------------------------------- the texts


def main_help(found: Catalog, show_all: bool = False) -> str:
    lines = [f"{PROGRAM}: {SUMMARY}", "", f"usage: {PROGRAM} [global options] COMMAND [options] [env=NAME]", ""]
    width = max(len(c.name) for c in found.visible()) + 2
    groups = found.grouped()
    if found.pipeline is None:  # where the stages would be: why there are none
        order = catalog_mod.GROUPS
        at = next((i for i, (group, _) in enumerate(groups)
                   if group not in order or order.index(group) > order.index("stages")), len(groups))
        groups.insert(at, ("stages", []))
    for group, commands in groups:
        title = f"{group} (environment {found.environment})" if group == "stages" and found.pipeline else group
        lines.append(f"{title}:")
        lines += [_row(c.name, summary(c), width) for c in commands] or [_row("", f"none: {found.problem}", 0)]
        lines.append("")
    lines.append("global options (before or after the command):")
    env_default = f"; default: {found.default_environment}" if found.default_environment else ""
    rows = [("env=NAME", f"{ENV_HELP}{env_default}")] + [(flag(p), p.help + (f" (also ${p.env_var})"
                                                                               if p.env_var else ""))
                                                       for p in GLOBAL_OPTIONS]
    option_width = max(len(name) for name, _ in rows) + 2
    lines += [_row(name, text, option_width) for name, text in rows]
    lines += ["", f"`{PROGRAM} help COMMAND` or `{PROGRAM} COMMAND --help`: a command's options, defaults and an "
                  "example."]
    if show_all:
        lines += ["", f"doit's own commands (also as `{PROGRAM} doit COMMAND ...`; `{PROGRAM} doit help COMMAND` "
                      "for each):", _row("", ", ".join(catalog_mod.DOIT_COMMANDS), 2)]
    else:
        lines.append(f"`{PROGRAM} help --all`: also doit's own commands (list, info, forget, ...).")
    lines += textwrap.wrap(DOCS, WIDTH)
    return "\n".join(lines) + "\n"


def command_help(command: Command, environment: str = "") -> str:
    lines = [f"usage: {usage_line(command)}", ""]
    lines += textwrap.wrap(command.doc, WIDTH)
    if command.description:
        lines += textwrap.wrap(command.description, WIDTH)
    rows = option_rows(command, environment)
    width = max(len(name) for name, _, _ in rows) + 2
    lines += ["", "options:"]
    for name, value, meaning in rows:
        lines.append(_row(name, meaning + (f" (default: {value})" if value else ""), width))
    lines += ["", "example:", f"  {example(command)}"]
    return "\n".join(lines) + "\n"


def _row(name: str, text: str, width: int) -> str:
    """`  name    text`, the text wrapped under itself."""
    indent = " " * (width + 2)
    return textwrap.fill(text, WIDTH, initial_indent=f"  {name:<{width}}", subsequent_indent=indent)


# ----------------------------------------------------------------------------- `proxpipe help`


def main(argv: list[str]) -> int:
    """`proxpipe help [COMMAND] [--all] [env=NAME] [-f FILE]`."""
    from proxpipe.base.console import console

    try:
        show_all = "--all" in argv
        inv = split([a for a in argv if a != "--all"])
        unknown = [a for a in inv.args if a.startswith("-")]
        if unknown:
            raise UsageError(f"`{PROGRAM} help` has no option {unknown[0]} (it takes a command name, and --all)")
        folder = Path(inv.options.get("project_dir") or ".")
        name = inv.options.get("config_file") or os.environ.get("PROXPIPE_FILE") or catalog_mod.DEFAULT_FILE
        found = catalog_mod.load(folder / name, inv.env)
        if inv.help:
            return show_command(found, "help")
        if inv.command is None:
            console.out(main_help(found, show_all).rstrip("\n"))
            return 0
        return show_command(found, inv.command)
    except UsageError as exc:
        console.error(str(exc))
        return 2


def show_command(found: Catalog, name: str) -> int:
    """One command's help; for one of doit's own, doit's help of it."""
    from proxpipe.base.console import console

    if name in found.commands:
        console.out(command_help(found.commands[name], found.default_environment).rstrip("\n"))
        return 0
    if name in catalog_mod.DOIT_COMMANDS:
        from doit.doit_cmd import DoitMain

        return DoitMain(config_filenames=()).run(["help", name])
    raise unknown_command(name, found.names(), found.problem if found.pipeline is None else "")
