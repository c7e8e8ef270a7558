"""proxpipe's command line, read before doit reads it: the global options (wherever they stand), `env=NAME`, the
command, and the command's options checked against its declaration. So an unknown command, option or variable is
one line with the closest match and exit 2, `--help` works after every command, and doit gets only what it can take.

    proxpipe [global options] COMMAND [its options] [env=NAME] [COMMAND [its options]] ...
"""

from __future__ import annotations

from typing import Any

from proxpipe.api.command import Command, Param
from proxpipe.base.errors import PipelineError
from proxpipe.domain.config import DEFAULT_FILE

EXIT_USAGE = 2  # an unknown command or option: nothing was loaded or run

# The options of the pipeline's loader (doit reads them before the command; proxpipe takes them anywhere).
LOADER_OPTIONS = (
    Param("config_file", "file", str, DEFAULT_FILE, "the pipeline definition", env_var="PROXPIPE_FILE", short="f",
          metavar="FILE"),
    Param("project_dir", "dir", str, None, "run in this project directory (relative paths in the pipeline "
                                           "definition are relative to it)", short="d", metavar="DIR"),
    Param("wait_lock", "wait-lock", float, None, "wait this many seconds for another run's lock on the environment, "
                                                 "instead of failing at once", env_var="PROXPIPE_WAIT_LOCK",
          metavar="SECONDS"),
)
OUTPUT_OPTIONS = (
    Param("quiet", "quiet", bool, False, "print only errors and the final line (no progress, no warnings)",
          short="q"),
    Param("no_color", "no-color", bool, False, "no colors (nor when NO_COLOR is set or stdout is not a terminal)"),
    Param("version", "version", bool, False, "print proxpipe's version and doit's"),
)
GLOBAL_OPTIONS = LOADER_OPTIONS + OUTPUT_OPTIONS
ENV_HELP = "the environment of pipeline.yaml (also PIPELINE_ENV)"
HELP_FLAGS = ("-h", "--help")


class UsageError(PipelineError):
    """An unknown command, option or variable: one line, exit 2."""


class Invocation:
    """A command line taken apart. args: what follows the command; for a doit task, global options taken out."""

    def __init__(self) -> None:  # a plain class: a dataclass costs every run a millisecond to make
        self.options: dict[str, Any] = {}  # global options given, by Param name
        self.env: str | None = None  # env=NAME, anywhere
        self.doit_options: list[str] = []  # doit's own run options before the command (-n 2, -v 2)
        self.command: str | None = None
        self.args: list[str] = []
        self.help = False  # --help or -h before any command

    def loader_words(self) -> list[str]:
        """The loader's options as doit reads them (before the command)."""
        words = []
        for param in LOADER_OPTIONS:
            if self.options.get(param.name) is not None:
                words += [f"--{param.long}", str(self.options[param.name])]
        return words


def option_words(param: Param) -> list[str]:
    return [f"--{param.long}", *([f"-{param.short}"] if param.short else [])]


def takes_value(param: Param) -> bool:
    return param.type is not bool


def _find(params: tuple[Param, ...] | list[Param], word: str) -> Param | None:
    name = word.split("=", 1)[0]
    return next((p for p in params if name in option_words(p)), None)


def doit_run_options() -> list[Param]:
    """doit's own options of its run command (-n, -v, -s, ...), which may stand before the command."""
    from doit.cmd_base import DoitCmdBase
    from doit.cmd_run import Run

    return [Param(o["name"], o.get("long") or "", o["type"], o.get("default"), o.get("help", ""),
                  short=o.get("short") or "") for o in (*Run.cmd_options, *DoitCmdBase.base_options) if o.get("long")]


def split(argv: list[str], standalone: tuple[str, ...] = ()) -> Invocation:
    """Global options, env= and the command; UsageError for an unknown option before the command. After a command
    in `standalone` (init, completion, help, doit) everything is left to it as it is."""
    inv = Invocation()
    index = 0
    while index < len(argv):
        word = argv[index]
        if inv.command in standalone:
            inv.args = argv[index:]
            break
        if word.startswith("-") and word != "-":
            index = _option(inv, argv, index)
            continue
        if "=" in word:
            _variable(inv, word)
        elif inv.command is None:
            inv.command = word
        else:
            inv.args.append(word)
        index += 1
    return inv


def _option(inv: Invocation, argv: list[str], index: int) -> int:
    """Reads the option at argv[index] into inv; the index after it (and its value)."""
    word = argv[index]
    param = _find(GLOBAL_OPTIONS, word)
    if param is not None:
        value, index = _value(param, argv, index)
        inv.options[param.name] = value
        return index
    if inv.command is not None:  # the command's own option: checked once its declaration is known
        inv.args.append(word)
        return index + 1
    if word in HELP_FLAGS:
        inv.help = True
        return index + 1
    doit = _find(doit_run_options(), word)
    if doit is None:
        known = [w for p in [*GLOBAL_OPTIONS, *doit_run_options()] for w in option_words(p)] + list(HELP_FLAGS)
        raise UsageError(f"unknown option {word.split('=', 1)[0]}{_closest(word.split('=', 1)[0], known)} "
                         "(`proxpipe --help` lists the global options)")
    inv.doit_options.append(word)
    if takes_value(doit) and "=" not in word and index + 1 < len(argv):
        inv.doit_options.append(argv[index + 1])
        return index + 2
    return index + 1


def _value(param: Param, argv: list[str], index: int) -> tuple[Any, int]:
    word = argv[index]
    if not takes_value(param):
        if "=" in word:
            raise UsageError(f"{word.split('=', 1)[0]} takes no value")
        return True, index + 1
    if "=" in word and word.startswith("--"):
        return word.split("=", 1)[1], index + 1
    if index + 1 >= len(argv):
        raise UsageError(f"{word} needs a value ({param.metavar or param.long.upper()}: {param.help})")
    return argv[index + 1], index + 2


def _variable(inv: Invocation, word: str) -> None:
    name, value = word.split("=", 1)
    if name != "env":
        raise UsageError(f"unknown variable {name}={value}{_closest(name + '=', ['env='])} (the one variable is "
                         "env=NAME, the environment)")
    inv.env = value


def check_task_args(inv: Invocation, tasks: dict[str, Command]) -> tuple[str | None, list[str]]:
    """The command's arguments checked against the declarations of the doit tasks: (the task whose --help was
    asked for, or None; the arguments for doit, a positional value as its option). UsageError names the closest
    option or command."""
    current, out, args, index, filled = inv.command, [], inv.args, 0, set()
    while index < len(args):
        word = args[index]
        if word in HELP_FLAGS:
            return current, out
        if word.startswith("-") and word != "-":
            param = _find(tasks[current].params, word)
            if param is None:
                known = [w for p in tasks[current].params for w in option_words(p)] + ["--help"]
                raise UsageError(f"`proxpipe {current}` has no option {word.split('=', 1)[0]}"
                                 f"{_closest(word.split('=', 1)[0], known)} (`proxpipe {current} --help` lists its "
                                 "options)")
            if takes_value(param) and "=" not in word:
                if index + 1 >= len(args):
                    raise UsageError(f"`proxpipe {current}`: {word} needs a value ({param.help})")
                out += [word, args[index + 1]]
                index += 2
                continue
            if not takes_value(param) and "=" in word:
                raise UsageError(f"`proxpipe {current}`: {word.split('=', 1)[0]} takes no value")
            out.append(word)
        elif word in tasks:
            current, filled = word, set()
            out.append(word)
        elif (spot := next((p for p in tasks[current].params if p.positional and p.name not in filled), None)):
            filled.add(spot.name)
            out += [f"--{spot.long}", word]
        else:
            raise unknown_command(word, list(tasks))
        index += 1
    return None, out


def unknown_command(word: str, names: list[str], problem: str = "") -> UsageError:
    """problem: why there are no stage commands (no pipeline.yaml), said when no command is close."""
    hint = _closest(word, names) or (f"; {problem}" if problem else "")
    return UsageError(f"unknown command `{word}`{hint} (`proxpipe help` lists the commands)")


def _closest(word: str, names: list[str]) -> str:
    import difflib

    found = difflib.get_close_matches(word, names, n=1, cutoff=0.5)
    return f"; did you mean `{found[0]}`?" if found else ""
