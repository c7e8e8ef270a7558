"""Issue 27, rule 1: a template id a provision cannot clone from is refused before Terraform starts, whichever way it
came (given by hand, from TEMPLATE_ID, in the build's handoff); the VMs and every handoff and record stay exactly as
they were. (A deploy on such a handoff builds a new template first: the build's own check finds its template gone.)"""

import pytest

from proxpipe.domain.config import Retry
from proxpipe.domain.proxmox import Proxmox

pytestmark = pytest.mark.e2e

STATE_FILES = ("template_id.txt", "ansible_inventory.json", "configure.json", "stages.json")


@pytest.fixture(scope="module")
def lab(deployed):
    """The deployed lab, with a template that lives on pve2's local storage (unreachable from pve1)."""
    from proxpipe.engine.pipeline import load_config
    from proxpipe.lab import control

    env = load_config(deployed.root / "pipeline.yaml").environment("lab")
    cfg = env.proxmox._replace(ca_file=control.ca_file(env), retry=Retry(3, 30))
    Proxmox(cfg, prefer_light=True).copy_template(9000, 9600, "pve2", "local-pve2", "elsewhere")
    return deployed


def snapshot(lab) -> dict:
    files = {name: (lab.state / name).read_bytes() for name in STATE_FILES}
    vms = {vm["vmid"]: (vm["status"], vm["config"].get("description")) for vm in lab.admin("state")["vms"]}
    return {"files": files, "vms": vms}


@pytest.mark.parametrize("template_id, problem", [
    ("9555", "template 9555 does not exist on the cluster"),
    ("201", "VM 201 on pve1 is not a template"),
    ("9600", "template 9600 is on pve2's local storage local-pve2; VMs on pve1 cannot clone it"),
])
@pytest.mark.parametrize("how", ["option", "environment", "handoff"])
def test_a_template_the_vms_cannot_be_cloned_from_starts_no_tool(lab, template_id, problem, how):
    before = snapshot(lab)
    handoff = lab.state / "template_id.txt"
    original = handoff.read_text()
    lab.reset_calls()
    try:
        if how == "option":
            results = [lab.doit("provision", "--template-id", template_id)]
        elif how == "environment":
            results = [lab.doit("provision", env={"TEMPLATE_ID": template_id})]
        else:  # a handoff that checks out but names a template the VMs cannot be cloned from
            handoff.write_text(f"{template_id}\n")
            before["files"]["template_id.txt"] = handoff.read_bytes()
            results = [lab.doit("provision")]
        for result in results:
            said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, said
            failure = [line for line in said if problem in line]
            assert len(failure) == 1 and "no tool was started" in failure[0], said
        assert not [call for call in lab.tool_calls() if call.startswith(("terraform", "ansible"))]
        assert snapshot(lab) == before  # VM 201 runs, unchanged, and the records are as they were
        status = lab.ok("status").stdout
        assert "the last run" not in status and "forgotten" not in status
    finally:
        handoff.write_text(original)
