"""The lab never changes the machine it runs on outside the repository (issue 2): with HOME pointed at an
empty directory, a deploy, a validation, the docs and the doctor leave it empty."""

import pytest

pytestmark = pytest.mark.e2e


def test_nothing_is_written_to_home(lab_project, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    project = lab_project()
    for command in ("deploy", "validate", "docs", "doctor", "status"):
        project.ok(command, env={"HOME": str(home)})
    project.ok("deploy", "--force", env={"HOME": str(home)})
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
