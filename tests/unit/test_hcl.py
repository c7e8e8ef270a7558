"""proxpipe.domain.hcl reads the variable declarations of Packer and Terraform sources with python-hcl2."""

import json

import pytest

from proxpipe.domain import hcl
from tests.labproject import REPO


def write(folder, name, text):
    (folder / name).write_text(text)
    return folder


def test_the_labs_terraform_variables():
    found = hcl.variables(REPO / "lab" / "terraform", hcl.TERRAFORM)
    assert found["vm_salt"] == {"sensitive": True, "type": "string", "default": "", "file": "main.tf",
                                "description": "A secret the VMs are made with; the lab keeps only its sha256."}
    assert found["lab_api_key"]["sensitive"] is False
    assert found["vms"]["type"] == "map(map(string))" and "default" not in found["vms"]
    assert found["group"]["default"] == "jump_hosts" and found["sshd_delays"]["default"] == {}


def test_the_labs_packer_variables():
    found = hcl.variables(REPO / "lab" / "packer", hcl.PACKER)
    assert {name for name, var in found.items() if var["sensitive"]} == {"build_salt"}
    assert found["template_id"]["type"] == "number" and "default" not in found["template_id"]


def test_the_examples_declare_nothing_sensitive():
    examples = REPO / "examples" / "proxmox"
    assert hcl.sensitive(examples / "packer", hcl.PACKER) == set()
    production = examples / "infrastructure" / "environments" / "production"
    assert "ssh_private_key_file" in hcl.variables(production, hcl.TERRAFORM)


def test_kinds_keep_to_their_own_files(tmp_path):
    write(tmp_path, "a.tf", 'variable "tf" {\n  sensitive = true\n}\n')
    write(tmp_path, "b.pkr.hcl", 'variable "pkr" {\n  sensitive = true\n}\n')
    write(tmp_path, "values.pkrvars.hcl", 'pkr = "not a declaration"\n')
    assert set(hcl.variables(tmp_path, hcl.TERRAFORM)) == {"tf"}
    assert set(hcl.variables(tmp_path, hcl.PACKER)) == {"pkr"}
    assert set(hcl.variables(tmp_path)) == {"tf", "pkr"}


def test_the_json_syntax_and_override_files(tmp_path):
    write(tmp_path, "main.tf", 'variable "token" {\n  type = string\n}\nvariable "region" {\n  default = "eu"\n}\n')
    write(tmp_path, "extra.tf.json", json.dumps({"variable": {"db_url": {"type": "string", "sensitive": True}}}))
    write(tmp_path, "main_override.tf", 'variable "token" {\n  sensitive = true\n}\n')
    found = hcl.variables(tmp_path, hcl.TERRAFORM)
    assert found["token"]["sensitive"] is True and found["token"]["type"] == "string"  # merged with the override
    assert found["db_url"]["sensitive"] is True and found["region"] == {
        "sensitive": False, "type": None, "description": None, "default": "eu", "file": "main.tf"}


def test_a_legacy_json_packer_template(tmp_path):
    template = write(tmp_path, "old.json", json.dumps({
        "variables": {"api_token": "", "region": "eu"}, "sensitive-variables": ["api_token"]})) / "old.json"
    found = hcl.legacy_packer_variables(template)
    assert found["api_token"]["sensitive"] and not found["region"]["sensitive"]


@pytest.mark.parametrize("name, text, problem", [
    ("bad.tf", 'variable "a" {\n  type = \n}\n', "bad.tf: line 2, column 10: cannot parse its HCL"),
    ("bad.tf.json", "{nope", "bad.tf.json: invalid JSON"),
])
def test_a_file_that_cannot_be_read_is_named(tmp_path, name, text, problem):
    write(tmp_path, name, text)
    with pytest.raises(hcl.HclError) as caught:
        hcl.variables(tmp_path, hcl.TERRAFORM)
    assert str(caught.value).startswith(problem) and "\n" not in str(caught.value)


def test_sensitive_names_are_cached_by_the_files_digests(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    write(source, "main.tf", 'variable "a" {\n  sensitive = true\n}\n')
    cache = tmp_path / "state" / "hcl-variables.json"
    assert hcl.sensitive(source, hcl.TERRAFORM, cache) == {"a"}
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    parsed = []
    real = hcl.variables
    monkeypatch.setattr(hcl, "variables", lambda *args: parsed.append(args) or real(*args))
    assert hcl.sensitive(source, hcl.TERRAFORM, cache) == {"a"} and parsed == []  # from the cache
    write(source, "main.tf", 'variable "a" {}\nvariable "b" {\n  sensitive = true\n}\n')
    assert hcl.sensitive(source, hcl.TERRAFORM, cache) == {"b"} and len(parsed) == 1  # read again
    assert json.loads(cache.read_text())[f"terraform:{source.resolve()}"]["facts"]["sensitive"] == ["b"]
