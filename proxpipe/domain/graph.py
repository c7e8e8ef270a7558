"""An environment's stages as a graph: each stage needs others (`needs:` in pipeline.yaml; without it, the stage
before it), runs after them, and reads the handoffs of its sources: the nearest stages it needs that hand off what
its kind consumes (through a stage that consumes the same and hands off something else, such as one playbook run
after another: both configure the hosts of the same inventory).

Checked when pipeline.yaml is loaded, one line per problem: a need that names no stage, a cycle, a stage whose
needs hand off nothing it can read, several sources where its kind takes one, two stages writing one handoff file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


class Graph:
    """The needs of named stages, with their kinds' consumes/produces (any objects with those attributes)."""

    def __init__(self, needs: Mapping[str, Sequence[str]], kinds: Mapping[str, Any]):
        self.needs = {name: tuple(wanted) for name, wanted in needs.items()}
        self.kinds = dict(kinds)  # stage name -> its kind (the Stage class)
        self._sources: dict[str, list[str]] = {}

    def order(self) -> list[str]:
        """The stages so that each comes after what it needs, and otherwise as written. ValueError naming a cycle."""
        placed: list[str] = []
        waiting = list(self.needs)
        while waiting:
            ready = next((name for name in waiting if all(need in placed for need in self.needs[name])), None)
            if ready is None:
                raise ValueError(f"a cycle: {' -> '.join(self._cycle(waiting))}")
            placed.append(ready)
            waiting.remove(ready)
        return placed

    def _cycle(self, stuck: list[str]) -> list[str]:
        """A cycle among the stages that cannot be placed: each needs another of them, so a walk meets itself."""
        path = [stuck[0]]
        while True:
            following = next(need for need in self.needs[path[-1]] if need in stuck)
            if following in path:
                return path[path.index(following):] + [following]
            path.append(following)

    def sources(self, name: str) -> list[str]:
        """The stages whose handoffs this one reads, in the order of its needs."""
        if name not in self._sources:
            wants = self.kinds[name].consumes
            found: list[str] = []
            for need in self.needs[name] if wants is not None else ():
                kind = self.kinds[need]
                through = [need] if kind.produces is wants else self.sources(need) if kind.consumes is wants else []
                found += [source for source in through if source not in found]
            self._sources[name] = found
        return self._sources[name]

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        todo = list(self.needs[name])
        while todo:
            need = todo.pop()
            if need not in found:
                found.add(need)
                todo += self.needs[need]
        return found

    def descendants(self, name: str) -> list[str]:
        """The stages that need this one, directly or not, in order."""
        return [other for other in self.order() if name in self.ancestors(other)]

    def width(self, names: set[str]) -> int:
        """How many of these stages one of them could run beside, plus one: an upper bound on how many run at once,
        1 for a chain (and only for a chain)."""
        return max((sum(1 for other in names if other != name and other not in self.ancestors(name)
                        and name not in self.ancestors(other)) + 1 for name in names), default=0)


def check(graph: Graph, handoffs: Mapping[str, str], many: Callable[[str, list[str]], str | None],
          error: Callable[[str, str], Exception], implicit: set[str] = frozenset()) -> None:
    """Raise error(where, problem) for the first problem of the graph. handoffs: stage -> its handoff file; many(name,
    sources): what is wrong with several sources for that stage, if anything; implicit: the stages that need the one
    before them because they say nothing else."""
    for name, needs in graph.needs.items():
        for need in needs:
            if need not in graph.needs:
                raise error(f"{name}.needs", f"no stage named {need!r} (stages: {', '.join(graph.needs)})")
            if need == name:
                raise error(f"{name}.needs", "a stage cannot need itself")
    try:
        graph.order()
    except ValueError as exc:
        raise error(next(iter(graph.needs)), str(exc)) from None
    writers: dict[str, str] = {}
    for name, needs in graph.needs.items():
        wants = graph.kinds[name].consumes
        sources = graph.sources(name)
        if wants is not None and needs and not sources:
            raise error(name, _nothing_to_read(graph, name, name not in implicit))
        problem = many(name, sources) if len(sources) > 1 else None
        if problem:
            raise error(name, problem)
        if handoffs[name] in writers:
            raise error(f"{name}.handoff", f"{handoffs[name]} is already the handoff of stage {writers[handoffs[name]]}"
                                           "; give this stage its own handoff file name")
        writers[handoffs[name]] = name


def _nothing_to_read(graph: Graph, name: str, said: bool) -> str:
    kind, wants = graph.kinds[name], graph.kinds[name].consumes
    if not said:
        (before,) = graph.needs[name]
        return (f"kind {kind.kind} takes {wants.title}, but the stage before it ({before}) hands off "
                f"{graph.kinds[before].produces.title}; reorder the stages, or say what it needs (needs:)")
    offered = ", ".join(f"{need} hands off {graph.kinds[need].produces.title}" for need in graph.needs[name])
    return f"kind {kind.kind} takes {wants.title}, but none of the stages it needs hands one off ({offered})"
