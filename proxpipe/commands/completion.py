"""`proxpipe completion bash|zsh|fish`: a script that completes proxpipe's command line, by calling back
`proxpipe completion --complete SHELL ...` for the words: commands and stages, their options, `env=` with the
environments of ./pipeline.yaml (or -f FILE), plan ids after `apply --plan` and `approve --plan`, template ids after
`rollback --to`, stages after `--stage`. It starts no tool and asks no API: it reads pipeline.yaml and the state store.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.commands import catalog as catalog_mod
from proxpipe.commands.cliargs import GLOBAL_OPTIONS, HELP_FLAGS, UsageError, option_words, split, takes_value

if TYPE_CHECKING:
    from proxpipe.commands.catalog import Catalog

SHELLS = ("bash", "zsh", "fish")

BASH = r'''# proxpipe's bash completion. Load it from ~/.bashrc:
#   eval "$(proxpipe completion bash)"
_proxpipe_complete() {
    local IFS=$'\n'
    COMPREPLY=($(PROXPIPE_COMP_WORDBREAKS="$COMP_WORDBREAKS" "${COMP_WORDS[0]}" completion --complete bash \
        --line "${COMP_LINE:0:COMP_POINT}" 2>/dev/null))
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -o bashdefault -o default -F _proxpipe_complete proxpipe
'''

ZSH = r'''#compdef proxpipe
# proxpipe's zsh completion. Load it from ~/.zshrc, after compinit:
#   eval "$(proxpipe completion zsh)"
_proxpipe() {
    local -a found plain equals
    found=("${(@f)$(${words[1]} completion --complete zsh -- "${(@)words[1,CURRENT-1]}" "$PREFIX" 2>/dev/null)}")
    found=(${found:#})
    if (( ${#found} == 0 )); then
        _files
        return
    fi
    plain=(${found:#*=})
    equals=(${(M)found:#*=})
    (( ${#plain} )) && compadd -Q -- "${plain[@]}"
    (( ${#equals} )) && compadd -Q -S '' -- "${equals[@]}"
}
compdef _proxpipe proxpipe
'''

FISH = r'''# proxpipe's fish completion. Install it:
#   proxpipe completion fish > ~/.config/fish/completions/proxpipe.fish
function __proxpipe_complete
    set -l current (commandline -ct)
    set -l found (proxpipe completion --complete fish -- (commandline -opc) "$current" 2>/dev/null)
    if test (count $found) -eq 0
        __fish_complete_path "$current"
    else
        printf '%s\n' $found
    end
end
complete -c proxpipe -f -a '(__proxpipe_complete)'
'''

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def main(argv: list[str]) -> int:
    from proxpipe.base.console import console

    if argv[:1] == ["--complete"]:
        words = _words(argv[1:])
        for word in shell_form(candidates(words), words[-1], argv[1:2] == ["bash"]):
            print(word)
        return 0
    if len(argv) != 1 or argv[0] not in SHELLS:
        console.error(f"usage: proxpipe completion {'|'.join(SHELLS)} (the shell to print a completion script for)")
        return 2
    sys.stdout.write(SCRIPTS[argv[0]])
    return 0


def _words(argv: list[str]) -> list[str]:
    """The words up to the cursor, the last one the word being completed: `SHELL --line LINE` (bash: split here)
    or `SHELL -- WORD ... CURRENT`."""
    rest = argv[1:]
    if rest[:1] == ["--line"]:
        return split_line(rest[1] if len(rest) > 1 else "")
    return (rest[1:] if rest[:1] == ["--"] else rest) or [""]


def split_line(line: str) -> list[str]:
    """A command line as the shell would split it, an unfinished quote closed; "" last when it ends in a space."""
    for closing in ("", '"', "'"):
        try:
            words = shlex.split(line + closing)
            break
        except ValueError:
            continue
    else:
        words = line.split()
    if not line or line[-1].isspace():
        words.append("")
    return words or [""]


def shell_form(found: list[str], current: str, bash: bool) -> list[str]:
    """bash replaces only what follows the last of its COMP_WORDBREAKS in the word (`env=` splits at the `=`)."""
    if not bash:
        return found
    breaks = os.environ.get("PROXPIPE_COMP_WORDBREAKS", "\"'><=;|&(:")
    cut = max((current.rfind(char) for char in breaks if char not in " \t\n\"'"), default=-1) + 1
    return [word[cut:] for word in found]


# ----------------------------------------------------------------------------- what completes a word


def candidates(words: list[str]) -> list[str]:
    """What may stand in the word being completed (words[-1]), words[0] being the program."""
    current, before = words[-1], words[1:-1]
    found = _Lazy(before)
    if current.startswith("env="):
        return _starting(current, [f"env={name}" for name in found().environments])
    previous = before[-1] if before else ""
    if any(previous in option_words(p) for p in GLOBAL_OPTIONS if takes_value(p)):
        return []  # a file, a folder or seconds: the shell's own completion
    try:
        inv = split(before, standalone=found().standalone + ("doit",))
    except UsageError:
        return []
    if inv.command is None:
        return _starting(current, _global_words() if current.startswith("-") else
                         [*(c.name for c in found().visible()), "env="])
    return _starting(current, _after_command(found(), inv.command, inv.args, current))


def _after_command(found: Catalog, command: str, args: list[str], current: str) -> list[str]:
    if command == "help":
        return [c.name for c in found.visible()] + ["--all"]
    if command == "completion":
        return list(SHELLS)
    if command not in found.commands:
        return []
    task = _current_task(found, command, args)
    params = found.commands[task].params
    previous = args[-1] if args else ""
    wanting = next((p for p in params if previous in option_words(p) and takes_value(p)), None)
    if wanting is not None:
        return _values(found, task, wanting.long, args)
    if current.startswith("-"):
        return [w for p in params for w in option_words(p)[:1]] + ["--help"] + (
            [] if found.commands[task].standalone else _global_words())
    if found.commands[task].standalone:
        return []
    return [*(c.name for c in found.visible() if not c.standalone), "env="]


def _current_task(found: Catalog, command: str, args: list[str]) -> str:
    """The task the last words belong to (`proxpipe build provision --force`: provision), option values skipped."""
    task, index = command, 0
    while index < len(args):
        word = args[index]
        param = next((p for p in found.commands[task].params if word in option_words(p)), None)
        if param is not None and takes_value(param):
            index += 2
            continue
        if word in found.tasks:
            task = word
        index += 1
    return task


def _values(found: Catalog, task: str, option: str, args: list[str]) -> list[str]:
    """The values of `--option` of task that the project knows (empty: the shell completes files)."""
    pipeline = found.pipeline
    if pipeline is None:
        return []
    stages = [s.name for s in pipeline.stages]
    chosen = _option_value(args, "--stage")
    sources: dict[tuple[str, str], Callable[[], list[str]]] = {
        ("apply", "plan"): lambda: _plan_ids(pipeline), ("approve", "plan"): lambda: _plan_ids(pipeline),
        ("rollback", "stage"): lambda: stages,
        ("rollback", "to"): lambda: _template_ids(pipeline) if chosen in (None, *_builds(pipeline)) else [],
        ("rollback", "mode"): lambda: _modes(pipeline, chosen),
        ("status", "inputs"): lambda: [*stages, "all"],
        ("validate", "check"): lambda: [c.id for c in pipeline.plugins.checks()],
    }
    source = sources.get((task, option))
    return source() if source else []


def _plan_ids(pipeline) -> list[str]:
    """The plans still to approve or apply, newest first."""
    from proxpipe.commands.plan import plans
    from proxpipe.domain.plan import PLANNED

    return [p.id for p in reversed(plans(pipeline)) if p.status == PLANNED]


def _template_ids(pipeline) -> list[str]:
    return [str(entry["template_id"]) for entry in pipeline.history.templates()]


def _builds(pipeline) -> list[str]:
    return [s.name for s in pipeline.producers("template_id")]


def _modes(pipeline, stage: str | None) -> list[str]:
    from proxpipe.commands.rollback import modes

    chosen = [s for s in pipeline.stages if stage in (None, s.name)]
    return list(dict.fromkeys(mode for s in chosen for mode in modes(s)))


def _option_value(args: list[str], option: str) -> str | None:
    for index, word in enumerate(args):
        if word == option and index + 1 < len(args):
            return args[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _global_words() -> list[str]:
    return [option_words(p)[0] for p in GLOBAL_OPTIONS] + [HELP_FLAGS[1]]


def _starting(prefix: str, words: list[str]) -> list[str]:
    return list(dict.fromkeys(w for w in words if w.startswith(prefix)))


class _Lazy:
    """The catalog of the pipeline the words name (-f FILE, env=NAME), loaded once and only when needed."""

    def __init__(self, before: list[str]):
        self.before = before
        self.found: Catalog | None = None

    def __call__(self) -> Catalog:
        if self.found is None:
            name = _option_value(self.before, "-f") or _option_value(self.before, "--file") or \
                os.environ.get("PROXPIPE_FILE") or catalog_mod.DEFAULT_FILE
            folder = _option_value(self.before, "-d") or _option_value(self.before, "--dir") or "."
            env = next((w[4:] for w in reversed(self.before) if w.startswith("env=")), None)
            self.found = catalog_mod.load(Path(folder) / name, env or None)
        return self.found
