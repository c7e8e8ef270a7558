"""The template id from real `packer build -machine-readable` output: Proxmox builders and the null builder."""

import json

from proxpipe.stages.packer import artifact_id, manifest_template_id, parse_machine_readable

# What the proxmox-clone builder prints (packer-plugin-proxmox: Artifact.Id() is the template's VMID).
PROXMOX_LINES = """\
1732012345,,ui,say,==> proxmox-clone.ubuntu: Creating VM
1732012399,,ui,say,==> proxmox-clone.ubuntu: Converting VM to template
1732012400,proxmox-clone.ubuntu,artifact-count,1
1732012400,proxmox-clone.ubuntu,artifact,0,builder-id,proxmox.clone
1732012400,proxmox-clone.ubuntu,artifact,0,id,8025
1732012400,proxmox-clone.ubuntu,artifact,0,string,A template was created: 8025
1732012400,proxmox-clone.ubuntu,artifact,0,files-count,0
1732012400,proxmox-clone.ubuntu,artifact,0,end
""".splitlines()

# What Debian's packer 1.6.6 prints for the lab's null builder (captured from a real run).
NULL_LINES = """\
1795752125,,ui,say,==> null.lab: Running local shell script: /tmp/packer-shell2188994666
1795752125,,ui,message,    null.lab: registering 9100%!(PACKER_COMMA) with comma
1795752125,null.lab,artifact-count,2
1795752125,null.lab,artifact,0,builder-id,fnoeding.null
1795752125,null.lab,artifact,0,id,Null
1795752125,null.lab,artifact,0,string,Did not export anything. This is the null builder
1795752125,null.lab,artifact,0,files-count,0
1795752125,null.lab,artifact,0,end
""".splitlines()


def test_the_proxmox_builder_reports_the_vmid_as_artifact_id():
    assert artifact_id(parse_machine_readable(PROXMOX_LINES)) == "8025"


def test_the_null_builder_reports_no_vmid():
    records = parse_machine_readable(NULL_LINES)
    assert artifact_id(records) == "Null"
    assert ("", "ui", ["message", "    null.lab: registering 9100, with comma"]) in records


def test_commas_and_newlines_in_data_are_unescaped():
    (record,) = parse_machine_readable(["1,,ui,say,a%!(PACKER_COMMA)b\\nc"])
    assert record == ("", "ui", ["say", "a,b\nc"])


def test_the_manifest_entry_of_the_last_run(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"builds": [
        {"packer_run_uuid": "old", "artifact_id": "Null", "custom_data": {"template_id": "9100"}},
        {"packer_run_uuid": "new", "artifact_id": "Null", "custom_data": {"template_id": "9101"}},
        {"packer_run_uuid": "older", "artifact_id": "8000"},
    ], "last_run_uuid": "new"}))
    assert manifest_template_id(manifest) == "9101"


def test_a_manifest_artifact_id_that_is_a_vmid_wins(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"builds": [
        {"packer_run_uuid": "r", "artifact_id": "8030", "custom_data": {"template_id": "1"}}],
        "last_run_uuid": "r"}))
    assert manifest_template_id(manifest) == "8030"


def test_no_manifest(tmp_path):
    assert manifest_template_id(tmp_path / "nope.json") is None
