"""pipeline.yaml parsed strictly and within bounds: a duplicate key at any level is an error naming both lines, and
a file too large, nested too deep or expanding too far through its aliases (an alias bomb) is refused before anything
is built from it (the JSON cache of the parsed file, the configuration).

    pipeline.yaml: line 14: duplicate key 'default_environment' (first at line 6)

YAML merge keys (`<<: *anchor`) work as usual: a key given next to a merge overrides the merged one.
"""

from __future__ import annotations

from typing import Any

from proxpipe.base.errors import ConfigError

MAX_BYTES = 1 << 20  # a pipeline of hundreds of stages and VMs is a few hundred kilobytes
MAX_VALUES = 200_000  # every mapping, list, key and scalar, counted once per alias that reaches it
MAX_CHARS = 16_000_000  # about the size of its JSON cache, expanded
MAX_DEPTH = 64  # mappings and lists inside each other, through aliases; the repository's own reaches 8

_MERGE = "tag:yaml.org,2002:merge"


class _Duplicate(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


def load(name: str, raw: bytes) -> Any:
    """The parsed file, checked for duplicate keys and for its bounds; ConfigError (one line) otherwise."""
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{name}: {len(raw)} bytes, more than the {MAX_BYTES} a pipeline definition may have; "
                          "is it the right file?")
    data = _parse(name, raw.decode(errors="replace"))
    check_bounds(name, data)
    return data


def _parse(name: str, text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except RecursionError:
        raise _too_deep(name) from None
    except _Duplicate as dup:
        raise ConfigError(f"{name}: line {dup.line}: duplicate key {dup.key!r} (first at line {dup.first}); "
                          "keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "syntax"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}: {where}: invalid YAML: {problem}") from None


_LOADER = None


def _loader() -> type:
    """The safe loader (libyaml's when there is one) that refuses duplicate keys and merges keys right."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            def flatten_mapping(self, node):
                # Every mapping is flattened before it is built, and a mapping merged elsewhere may be flattened
                # before its own turn: the duplicate check is here, once per node, while the node still holds only
                # the keys written in it.
                done = self.__dict__.setdefault("_flattened", set())
                if id(node) not in done:
                    done.add(id(node))
                    _check_duplicates(self, node)
                    self.__dict__.setdefault("_flattening", set()).add(id(node))
                    _flatten(self, node)
                    self._flattening.discard(id(node))

        _LOADER = StrictLoader
    return _LOADER


def _check_duplicates(loader: Any, node: Any) -> None:
    import yaml

    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a list or mapping as a key: the constructor refuses it
        key = "<<" if key_node.tag == _MERGE else loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _Duplicate(str(key_node.value), line, seen[key])
        seen[key] = line


def _flatten(loader: Any, node: Any) -> None:
    """The merge keys of node replaced by the pairs they merge, one pair per key: of the merged mappings the first
    that has a key wins (the YAML merge key spec), and a key written in node overrides them in the merged key's
    place, as a dict keeps it. PyYAML's own version tells keys apart by the identity of their text, so the override
    inside a merged mapping that merges in turn could be lost; one pair per key also keeps merges of merges from
    growing exponentially."""
    import yaml

    def key_of(key_node: Any) -> Any:
        return loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else ("node", id(key_node))

    merged: dict[Any, tuple] = {}
    own: dict[Any, tuple] = {}
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            if key_node.tag == "tag:yaml.org,2002:value":
                key_node.tag = "tag:yaml.org,2002:str"
            own[key_of(key_node)] = (key_node, value_node)
            continue
        for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"expected a mapping to merge, found {source.id}",
                                                        source.start_mark)
            if id(source) in loader._flattening:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        "it merges a mapping it is part of", source.start_mark)
            loader.flatten_mapping(source)
            for pair in source.value:
                merged.setdefault(key_of(pair[0]), pair)
    if merged:
        node.value = [own.pop(key, pair) for key, pair in merged.items()] + list(own.values())


def check_bounds(name: str, data: Any) -> None:
    """ConfigError when data, expanded through its aliases, holds more than MAX_VALUES values or MAX_CHARS
    characters, or nests deeper than MAX_DEPTH. Aliases make one object appear in many places: each is measured once
    (memoised by id), so the check costs as much as the file, not as much as its expansion."""
    measured: dict[int, tuple[int, int, int]] = {}  # id -> (values, characters, height)
    active: set[int] = set()

    def measure(value: Any, depth: int) -> tuple[int, int, int]:
        if not isinstance(value, dict | list):
            return 1, (len(value) + 3 if isinstance(value, str) else 8), 0
        if depth > MAX_DEPTH:
            raise _too_deep(name)
        known = measured.get(id(value))
        if known is None:
            if id(value) in active:
                raise ConfigError(f"{name}: an alias refers to a mapping or list that holds it; write it out")
            active.add(id(value))
            values, chars, height = 1, 2, 0
            for item in [*value.keys(), *value.values()] if isinstance(value, dict) else value:
                more = measure(item, depth + 1)
                values, chars, height = values + more[0], chars + more[1], max(height, more[2] + 1)
                if values > MAX_VALUES or chars > MAX_CHARS:
                    raise ConfigError(f"{name}: more than {MAX_VALUES} values or {MAX_CHARS // 1_000_000} MB once "
                                      "its aliases are expanded (an alias bomb?); write the repeated parts out, or "
                                      "repeat them fewer times")
            active.discard(id(value))
            known = measured[id(value)] = (values, chars, height)
        if depth + known[2] > MAX_DEPTH:
            raise _too_deep(name)
        return known

    measure(data, 0)


def _too_deep(name: str) -> ConfigError:
    return ConfigError(f"{name}: nested more than {MAX_DEPTH} levels deep (counting what aliases refer to); flatten it")
