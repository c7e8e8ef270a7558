"""The `proxpipe` command: proxpipe's own help and checks of the command line, then doit on proxpipe's task loader.

    proxpipe                                   the help (never runs anything); also --help, -h, help
    proxpipe COMMAND [options] [env=NAME]      a command of the pipeline (deploy, status, ...) or a stage
    proxpipe COMMAND --help                    that command's usage, options and an example
    proxpipe init | completion | help          the commands that need no pipeline
    proxpipe doit ...                          doit's own command line, as it is (list, info, forget, ...)

The command line is read before doit reads it (proxpipe.commands.cliargs): an unknown command or option is one line
with the closest match and exit 2; `-q`, `--no-color` and the loader's options (`-f`, `-d`, `--wait-lock`) may
stand anywhere.
"""

from __future__ import annotations

import os
import sys

from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidDodoFile

from proxpipe.commands.cliargs import (
    EXIT_USAGE,
    HELP_FLAGS,
    Invocation,
    UsageError,
    check_task_args,
    split,
    unknown_command,
)

EXIT_CONFIG = 3  # doit's code for errors before any task runs
BUILTIN_STANDALONE = ("init", "completion", "help")  # proxpipe.commands.standalone; `doit` passes through


class ProxpipeMain(DoitMain):
    BIN_NAME = "proxpipe"

    def __init__(self, task_loader=None, invocation: Invocation | None = None, **kwargs):
        super().__init__(task_loader, **kwargs)
        self.invocation = invocation  # the command line as proxpipe read it; None: doit's own, unchecked

    @staticmethod
    def print_version() -> None:
        from proxpipe import __version__

        print(f"proxpipe {__version__}")
        DoitMain.print_version()

    def run(self, all_args: list[str]) -> int:
        """The command and its options checked against the pipeline's commands (loaded once, for doit too)."""
        _scan_entry_points_once()
        inv = self.invocation
        if inv is None:
            return super().run(all_args)
        from proxpipe.base.console import console
        from proxpipe.commands import catalog

        try:
            pipeline = self.task_loader.preload(inv.options, inv.env)
        except InvalidDodoFile as exc:
            known = catalog.without_pipeline(str(exc))
            if inv.command not in known.commands:
                raise unknown_command(inv.command, known.names(), str(exc)) from None
            if any(word in HELP_FLAGS for word in inv.args):  # a command's help needs no pipeline
                return _command_help(known, inv.command)
            console.out(f"ERROR: {exc}", sys.stderr)
            return EXIT_CONFIG
        found = catalog.of_pipeline(pipeline)
        command = found.commands.get(inv.command)
        if command is None:
            raise unknown_command(inv.command, found.names())
        if command.standalone:  # a plugin's
            return command.run(inv.args)
        help_for, args = check_task_args(inv, found.tasks)
        if help_for is not None:
            return _command_help(found, help_for)
        if "--json" in inv.args:
            console.json_mode = True
        before = all_args[:len(all_args) - len(inv.args)]  # the global options, env= and the command
        return super().run([*before, *args])


def _scan_entry_points_once() -> None:
    """doit reads every installed distribution's entry points once per kind of plugin it looks for (commands,
    backends, reporters), a few milliseconds each in a large virtualenv; doit.plugin asks entry_points_impl() for
    the reader each time, so one reading can serve all of them."""
    from importlib.metadata import entry_points

    import doit.plugin

    found = entry_points()
    doit.plugin.entry_points_impl = lambda: found.select


def _command_help(found, name: str) -> int:
    from proxpipe.base.console import console
    from proxpipe.commands import usage

    console.out(usage.command_help(found.commands[name], found.default_environment).rstrip("\n"))
    return 0


def empty_argument(argv: list[str]) -> str | None:
    """The one-line error for an empty argument (an unset shell variable, say), which doit's own parser cannot
    take: it fails with a traceback before any project code runs."""
    for index, arg in enumerate(argv):
        if arg == "":
            after = f" (the value of {argv[index - 1]})" if index and argv[index - 1].startswith("-") else ""
            return (f"argument {index + 1} is empty{after}; give it a value or leave it out "
                    "(is a shell variable unset?)")
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:  # Ctrl-C while Python loads, before the pipeline's own handling is in place
        print("interrupted while starting; nothing was run", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `proxpipe list | head`, `proxpipe init --dry-run | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(argv: list[str]) -> int:
    from proxpipe.base.console import console

    problem = empty_argument(argv) if argv[:2] != ["completion", "--complete"] else None  # "": the word at the cursor
    if problem:
        print(f"ERROR: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        inv = split(argv, standalone=(*BUILTIN_STANDALONE, "doit"))
        _output_options(inv)
        if inv.options.get("version"):
            ProxpipeMain.print_version()
            return 0
        code = _dispatch(inv)
    except UsageError as exc:
        console.error(str(exc))
        return EXIT_USAGE
    return code or (1 if "stdout" in console.lost else 0)  # what it had to say was lost (a full disk)


def _output_options(inv: Invocation) -> None:
    from proxpipe.base.console import console

    if inv.options.get("no_color"):
        os.environ["NO_COLOR"] = "1"  # for the tools too
    if inv.options.get("quiet"):
        console.quiet = True


def _dispatch(inv: Invocation) -> int:
    from proxpipe.commands import catalog
    from proxpipe.wiring.loader import PipelineLoader

    shared = [*inv.loader_words(), *([f"env={inv.env}"] if inv.env is not None else [])]
    if inv.help or inv.command is None:  # bare `proxpipe` only says how to use it
        return _standalone("help", shared)
    if inv.command == "doit":
        return ProxpipeMain(PipelineLoader(), config_filenames=()).run([*inv.loader_words(), *inv.args])
    if inv.command in BUILTIN_STANDALONE:
        asks_help = inv.args[:1] != ["--complete"] and any(word in HELP_FLAGS for word in inv.args)
        if inv.command != "help" and asks_help:
            return _standalone("help", [inv.command, *shared])
        if inv.options.get("project_dir") and inv.command == "init":
            inv.args = ["--dir", str(inv.options["project_dir"]), *inv.args]
        return _standalone(inv.command, inv.args + (shared if inv.command == "help" else []))
    doit_argv = [*shared, *inv.doit_options, inv.command, *inv.args]
    if inv.command in catalog.DOIT_COMMANDS:
        return ProxpipeMain(PipelineLoader(), config_filenames=()).run(doit_argv)
    return ProxpipeMain(PipelineLoader(), inv, config_filenames=()).run(doit_argv)


def _standalone(name: str, argv: list[str]) -> int:
    from proxpipe.commands import standalone

    command = next(c for c in standalone.COMMANDS if c.name == name)
    return command.run(argv)


if __name__ == "__main__":
    sys.exit(main())
