"""The commands that need no pipeline and run outside doit: `proxpipe init`, `proxpipe completion`, `proxpipe help`.
Declared like every other command (their help and docs/cli.md come from here); each run(argv) returns the exit
code."""

from __future__ import annotations

from proxpipe.api.command import Command, Param


def _init(argv: list[str]) -> int:
    from proxpipe.commands import init

    return init.main(argv)


def _completion(argv: list[str]) -> int:
    from proxpipe.commands import completion

    return completion.main(argv)


def _help(argv: list[str]) -> int:
    from proxpipe.commands import usage

    return usage.main(argv)


COMMANDS = (
    Command("init", "write a pipeline.yaml (and a one-line dodo.py) for this repository, or a demo project", _init,
            (Param("dry_run", "dry-run", bool, False, "show what would be written; write nothing"),
             Param("example", "example", str, "", "write a demo project instead: lab, the local lab (no cluster "
                                                  "needed); plugins may add others", metavar="NAME"),
             Param("dir", "dir", str, ".", "the repository", metavar="DIR"),
             Param("env", "env", str, "", "the environment's name (default: guessed from the Terraform folder, "
                                          "else production)",
                   metavar="NAME")),
            group="set up", standalone=True,
            description="Finds the Packer templates, Terraform root modules and Ansible playbooks of the repository "
                        "and writes a pipeline.yaml that uses them, showing what it guessed and why. It never "
                        "overwrites a file.",
            example="proxpipe init --dry-run"),
    Command("completion", "print a completion script for bash, zsh or fish",
            _completion, group="set up", standalone=True, arguments="bash|zsh|fish",
            description="Prints a script that completes proxpipe's commands, the stages, their options, env= with "
                        "the environments of ./pipeline.yaml, plan ids after --plan and template ids after --to. "
                        "Load it from your shell's startup file (see docs/cli.md).",
            example='eval "$(proxpipe completion bash)"'),
    Command("help", "proxpipe's commands, or one command's usage, options and an example", _help,
            (Param("all", "all", bool, False, "also doit's own commands (list, info, forget, ...)"),),
            group="set up", standalone=True, arguments="[COMMAND]",
            description="Without a command: every command, grouped, and the global options. With one: what it does, "
                        "every option with its default, and an example (the same as `proxpipe COMMAND --help`).",
            example="proxpipe help rollback"),
)
