"""The stage graph (issue 22): `needs:` as pipeline.yaml says it, every loading error in one line, handoffs read by
name (template ids per build, inventories merged), and the order stages run in."""

import json
import shutil

import pytest
import yaml

from proxpipe.base.errors import ConfigError, HandoffError
from proxpipe.domain import inventory
from proxpipe.engine.pipeline import Pipeline
from proxpipe.engine.pipeline import load_config as load
from tests.labproject import REPO


@pytest.fixture
def project(tmp_path):
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    config["environments"] = {"g": config["environments"]["lab-graph"]}
    config["default_environment"] = "g"
    return tmp_path, config


def stages(config):
    return config["environments"]["g"]["stages"]


def write(root, config):
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root / "pipeline.yaml"


def error_of(root, config) -> str:
    with pytest.raises(ConfigError) as caught:
        load(write(root, config), environ={})
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_the_lab_graph_loads_in_the_order_its_needs_give(project):
    root, config = project
    env = load(write(root, config), environ={}).environment("g")
    assert {s.name: s.needs for s in env.stages} == {
        "build-web": (), "build-db": (), "provision-web": ("build-web",), "provision-db": ("build-db",),
        "configure-base": ("provision-web", "provision-db"), "configure-web": ("configure-base",)}
    # several stages of a kind: a handoff file each, named after the stage
    assert {s.name: s.handoff for s in env.stages}["provision-db"] == "provision-db-ansible_inventory.json"


def test_without_needs_a_stage_needs_the_one_before_it(tmp_path):
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    env = load(REPO / "pipeline.yaml", environ={}).environment("lab")
    assert [s.needs for s in env.stages] == [(), ("build",), ("provision",)]
    assert [s.handoff for s in env.stages] == ["template_id.txt", "ansible_inventory.json", "configure.json"]


def test_a_stage_listed_before_what_it_needs_runs_after_it(project):
    root, config = project
    build = stages(config).pop("build-db")  # provision-db now comes first in the file, but needs build-db
    stages(config)["build-db"] = build
    names = [s.name for s in load(write(root, config), environ={}).environment("g").stages]
    assert names.index("build-db") < names.index("provision-db")


@pytest.mark.parametrize("change, problem", [
    (lambda s: s["provision-web"].update(needs=["build-nope"]),
     "stages.provision-web.needs: no stage named 'build-nope' (stages: build-web, build-db,"),
    (lambda s: s["provision-web"].update(needs=["provision-web"]), "stages.provision-web.needs: a stage cannot need "
                                                                   "itself"),
    (lambda s: s["build-web"].update(needs=["configure-web"]), "a cycle: build-web -> configure-web -> configure-base "
                                                               "-> provision-web -> build-web"),
    (lambda s: s["configure-base"].update(needs=["build-web"]),
     "stages.configure-base: kind ansible takes an inventory, but none of the stages it needs hands one off "
     "(build-web hands off a template id)"),
    (lambda s: s["provision-web"].update(needs=["build-web", "build-db"]),
     "stages.provision-web: it needs 2 builds (build-web, build-db): name the variable each one's template id goes to, "
     "e.g. template_ids: {build-web: build_web_template_id, build-db: build_db_template_id}"),
    (lambda s: s["provision-web"].update(needs=["build-web", "build-db"], template_ids={"build-web": "a", "x": "b"}),
     "stages.provision-web: it needs 2 builds (build-web, build-db): name the variable each one's template id goes to,"
     " e.g. template_ids: {build-db: build_db_template_id}"),
    (lambda s: s["provision-db"].update(handoff="provision-web-ansible_inventory.json"),
     "stages.provision-db.handoff: provision-web-ansible_inventory.json is already the handoff of stage "
     "provision-web"),
])
def test_every_loading_error_of_the_graph_is_one_line(project, change, problem):
    root, config = project
    change(stages(config))
    assert problem in error_of(root, config)


def test_a_plugin_kind_that_takes_one_handoff_refuses_several(project):
    from proxpipe.api.stage import Stage
    from proxpipe.domain import handoff

    class One(Stage):
        consumes = handoff.CONFIGURE

        def run(self, upstream, job):
            return None

    assert One.check_sources({}, ["a", "b"]) == ("its kind takes one play recap, but it needs 2 stages that hand one "
                                                 "off (a, b); keep one in its needs")


def test_inventories_are_merged_and_one_host_with_two_addresses_is_refused():
    web = {"all": {"children": {"web_hosts": {"hosts": {"web-01": {"ansible_host": "10.0.0.1"}}},
                                "linux": {"vars": {"os": "debian"}, "hosts": {"web-01": {}}}}}}
    db = {"all": {"children": {"db_hosts": {"hosts": {"db-01": {"ansible_host": "10.0.0.2"}}},
                               "linux": {"hosts": {"db-01": {}}}}}}
    merged = inventory.merge({"provision-web": web, "provision-db": db})
    hosts = inventory.parse(merged)
    assert sorted(hosts) == ["db-01", "web-01"]
    assert hosts["db-01"].groups >= {"linux", "db_hosts"} and hosts["db-01"].vars["os"] == "debian"
    clash = {"all": {"hosts": {"web-01": {"ansible_host": "10.0.0.9"}}}}
    with pytest.raises(inventory.InventoryError, match="host web-01 is 10.0.0.1 in the inventory of provision-web but "
                                                       "10.0.0.9 in that of provision-dns"):
        inventory.merge({"provision-web": web, "provision-dns": clash})


def test_handoffs_by_name_template_ids_per_build_and_one_merged_inventory(project):
    root, config = project
    stages(config)["provision-web"].update(needs=["build-web", "build-db"],
                                          template_ids={"build-web": "web_template", "build-db": "db_template"})
    pipeline = Pipeline.load(write(root, config), "g", environ={})
    state = pipeline.state_dir
    state.mkdir(parents=True)
    (state / "build-web-template_id.txt").write_text("9200\n")
    (state / "build-db-template_id.txt").write_text("9250\n")
    provision = pipeline.stage("provision-web")
    value, path = pipeline.handoffs.upstream(provision, pipeline.sources(provision), None)
    assert value == {"build-web": 9200, "build-db": 9250} and path is None
    given, _ = pipeline.handoffs.upstream(provision, pipeline.sources(provision), "build-db=9251")
    assert given == {"build-web": 9200, "build-db": 9251}
    with pytest.raises(HandoffError, match="takes one per build, as NAME=ID"):
        pipeline.handoffs.upstream(provision, pipeline.sources(provision), "9251")
    assert provision._template_vars(value) == {"web_template": 9200, "db_template": 9250}

    for name, host, address in (("provision-web", "web-01", "127.0.0.5"), ("provision-db", "db-01", "127.0.0.6")):
        (state / f"{name}-ansible_inventory.json").write_text(json.dumps({"all": {"hosts": {host: {
            "ansible_host": address}}}}))
    web = pipeline.stage("configure-web")  # after configure-base, on the same merged inventory
    assert [s.name for s in pipeline.sources(web)] == ["provision-web", "provision-db"]
    merged, path = pipeline.handoffs.upstream(web, pipeline.sources(web), None)
    assert sorted(inventory.parse(merged)) == ["db-01", "web-01"] and json.loads(path.read_text()) == merged


def test_the_downstream_of_a_stage_and_what_could_run_at_once(project):
    root, config = project
    pipeline = Pipeline.load(write(root, config), "g", environ={})
    assert [s.name for s in pipeline.downstream(pipeline.stage("build-db"))] == [
        "provision-db", "configure-base", "configure-web"]
    assert pipeline.graph.width({s.name for s in pipeline.stages}) > 1
    assert pipeline.graph.width({"build-web", "provision-web", "configure-base"}) == 1


def test_status_as_json_is_one_document_that_its_schema_accepts(tmp_path):
    import jsonschema

    from tests.unit.test_plugins import ShellProject

    shell = ShellProject(tmp_path)
    shell.config["environments"]["local"]["stages"]["lower"] = {
        "kind": "shell", "dir": "work", "handoff": "lower.txt", "needs": ["make"],
        "command": "tr A-Z a-z < $PIPELINE_INPUT > $PIPELINE_OUTPUT"}
    shell.write()
    assert shell.doit("deploy").returncode == 0
    result = shell.doit("status", "--json", "--inputs", "make")
    document = json.loads(result.stdout)  # nothing else on stdout
    jsonschema.validate(document, json.loads((REPO / "schemas" / "status.schema.json").read_text()))
    assert [(s["stage"], s["needs"], s["state"]) for s in document["stages"]] == [
        ("make", [], "up to date"), ("upper", ["make"], "up to date"), ("lower", ["make"], "up to date")]
    assert document["stages"][0]["inputs"] == [] and "inputs" not in document["stages"][1]
    tree = shell.doit("status").stdout  # not a chain: drawn as a tree, with what each stage needs
    assert "└─ upper" in tree and "└─ lower" in tree and "needs" in tree.splitlines()[1]


# What the code before the graph (stop 19, 47f2cae) recorded as each stage's settings digest for this repository's
# pipeline.yaml: today's records of those stages must still match, so nothing is stale after an upgrade.
RECORDED_BEFORE = {
    "lab": {"build": "9f8fdc6af7e5", "provision": "a562f08f86b3", "configure": "f48947600f39"},
    "production": {"build": "305be4c872b3", "provision": "25eee703cdfe", "configure": "59ef906477c2"},
}


@pytest.mark.parametrize("env", list(RECORDED_BEFORE))
def test_settings_digests_recorded_before_the_graph_still_match(env):
    pipeline = Pipeline.load(REPO / "pipeline.yaml", env, environ={"PROXMOX_TOKEN_SECRET": "x"})
    assert {s.name: s.config_digest()[:12] for s in pipeline.stages} == RECORDED_BEFORE[env]
