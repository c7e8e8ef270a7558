"""Issue 27, rule 6: the loader bounds what it expands and caches (the file's size, the values its aliases expand to,
how deep they nest) and refuses more in one line, before it writes anything: a 5.7 KB alias bomb used to write a
351 MB .pipeline/.pipeline.yaml.json."""

import pytest
import yaml

from proxpipe.base.errors import ConfigError
from proxpipe.domain import yamlfile
from tests.badinput import SeededProject, one_line


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return SeededProject(tmp_path_factory.mktemp("bounds") / "project")


def _laughs(levels: int, width: int = 9) -> str:
    """The billion laughs: each level a list of `width` aliases of the one before."""
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _with(project, prelude: str, value: str) -> str:
    """pipeline.yaml with prelude before it and value as the provision stage's variable `payload`."""
    text = yaml.safe_dump(project.config, sort_keys=False)
    anchor = "          lab_dir: '{state_dir}'\n          ssh_user"
    return prelude + text.replace(anchor, f"          payload: {value}\n{anchor}", 1)


def _bomb(project):  # the issue's: 5.7 KB of nested aliases
    return _with(project, _laughs(9), "*lol8"), "more than 200000 values or 16 MB once its aliases are expanded"


def _long_strings(project):  # few values, but each a long one, repeated
    prelude = "big: &big '" + "x" * 200_000 + "'\nmany: &many [" + ", ".join(["*big"] * 100) + "]\n"
    return _with(project, prelude, "*many"), "more than 200000 values or 16 MB once its aliases are expanded"


def _deep(project):  # nested deeper through aliases than a pipeline ever is
    prelude = "d0: &d0 [1]\n" + "".join(f"d{i}: &d{i} [[[[[[[[*d{i - 1}]]]]]]]]\n" for i in range(1, 10))
    return _with(project, prelude, "*d9"), "nested more than 64 levels deep (counting what aliases refer to)"


def _itself(project):  # a list that holds itself
    return _with(project, "", "&loop [1, *loop]"), "an alias refers to a mapping or list that holds it"


def _huge(project):  # more than a pipeline definition may have
    return _with(project, "# " + "x" * yamlfile.MAX_BYTES + "\n", "1"), "bytes, more than the 1048576"


CASES = [_bomb, _long_strings, _deep, _itself, _huge]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_what_expands_too_far_is_refused_before_anything_is_written(project, case):
    text, problem = case(project)
    project.write_text(text)
    cache = project.root / ".pipeline" / ".pipeline.yaml.json"
    cache.unlink(missing_ok=True)
    for command in ("deploy", "status"):
        result = project.doit(command)
        assert result.returncode == 3, result.stdout + result.stderr
        line = one_line(result)
        assert line.startswith("ERROR: pipeline.yaml: ") and problem in line, line
    assert not cache.exists()
    project.unchanged()


def test_the_check_costs_what_the_file_does_not_what_it_expands_to():
    # 9**60 values once expanded: measured once per alias, this is refused at once, never expanded.
    with pytest.raises(ConfigError, match="once its aliases are expanded"):
        yamlfile.load("pipeline.yaml", _laughs(60).encode())
    # A wide but shallow sharing stays within bounds: 200 references to one 100-value list.
    shared = "one: &one [" + ", ".join(["1"] * 100) + "]\nall: [" + ", ".join(["*one"] * 200) + "]\n"
    assert len(yamlfile.load("pipeline.yaml", shared.encode())["all"]) == 200


def test_a_cache_an_older_version_let_grow_is_not_read(project):
    cache = project.root / ".pipeline" / ".pipeline.yaml.json"
    project.write_config()
    cache.unlink(missing_ok=True)
    cache.write_text('{"data": ' + " " * (yamlfile.MAX_CHARS + 200) + '{}, "sha256": "x"}')
    assert project.doit("list").returncode == 0
    assert cache.stat().st_size < 100_000  # written afresh from the file
    project.unchanged()
