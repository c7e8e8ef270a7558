import pytest

from tests.labproject import LabProject


@pytest.fixture
def lab_project(tmp_path):
    """A fresh lab project; its lab is stopped afterwards."""
    projects = []

    def make(**kwargs) -> LabProject:
        project = LabProject(tmp_path / f"project{len(projects)}", **kwargs)
        projects.append(project)
        return project

    yield make
    for project in projects:
        project.stop()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """One lab project shared by a module's tests, deployed once; each test leaves it deployed."""
    project = LabProject(tmp_path_factory.mktemp("deployed") / "project")
    project.ok("deploy")
    yield project
    project.stop()
