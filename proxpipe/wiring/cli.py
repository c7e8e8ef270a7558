"""The `proxpipe` command: doit's command line on proxpipe's own task loader, plus `proxpipe init`.

    proxpipe deploy | validate | status | ... [env=NAME]     every task of the pipeline, as with `doit`
    proxpipe list | info | help | forget                     doit's own commands
    proxpipe init [--dry-run] [--example lab]                start a pipeline.yaml in this repository
"""

from __future__ import annotations

import os
import sys

from doit.doit_cmd import DoitMain

EXIT_USAGE = 3  # doit's code for errors before any task runs


class ProxpipeMain(DoitMain):
    BIN_NAME = "proxpipe"

    def print_version(self) -> None:
        from proxpipe import __version__

        print(f"proxpipe {__version__}")
        super().print_version()


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
    problem = empty_argument(argv)
    if problem:
        print(f"ERROR: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if argv[:1] == ["init"]:
        from proxpipe.commands import init

        return init.main(argv[1:])
    from proxpipe.base.console import console
    from proxpipe.wiring.loader import PipelineLoader

    code = ProxpipeMain(PipelineLoader(), config_filenames=()).run(loader_options_first(argv))
    return code or (1 if "stdout" in console.lost else 0)  # what it had to say was lost (a full disk)


def loader_options_first(argv: list[str]) -> list[str]:
    """doit reads its loader's options only before the command and task names; `proxpipe deploy --wait-lock 30`
    reads better, so such options move to the front."""
    front, rest, index = [], [], 0
    while index < len(argv):
        if argv[index] == "--wait-lock" and index + 1 < len(argv):
            front += argv[index:index + 2]
            index += 2
            continue
        if argv[index].startswith("--wait-lock="):
            front.append(argv[index])
        else:
            rest.append(argv[index])
        index += 1
    return front + rest


if __name__ == "__main__":
    sys.exit(main())
