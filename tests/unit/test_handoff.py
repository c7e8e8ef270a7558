"""Handoff files: checked on write and on read, written atomically, never replaced by an invalid one."""

import json

import pytest

from proxpipe.base.errors import HandoffError
from proxpipe.domain import handoff
from proxpipe.domain.state import LocalStore

INVENTORY = {"all": {"children": {"jump_hosts": {"hosts": {"jump-01": {"ansible_host": "10.0.0.5"}}}}}}


@pytest.mark.parametrize("text, problem", [
    ("abc", "'abc' is not a Proxmox VMID"),
    ("0", "0 is outside the Proxmox VMID range 100..999999999"),
    ("99", "99 is outside the Proxmox VMID range"),
    ("1000000000", "1000000000 is outside the Proxmox VMID range"),
    ("-5", "-5 is outside the Proxmox VMID range"),
    ("", "'' is not a Proxmox VMID"),
    ("80.25", "'80.25' is not a Proxmox VMID"),
])
def test_bad_template_ids(text, problem):
    with pytest.raises(ValueError) as caught:
        handoff.parse_template_id(text)
    assert problem in str(caught.value)


def test_a_template_id_with_blanks_around_it():
    assert handoff.parse_template_id("  8025 \n") == 8025
    assert handoff.parse_template_id("100") == 100 and handoff.parse_template_id("999999999") == 999999999


def test_an_inventory_object_and_a_json_string_holding_one():
    assert handoff.parse_inventory(json.dumps(INVENTORY)) == INVENTORY
    # what `terraform output -json` prints for a jsonencode() output
    assert handoff.parse_inventory(json.dumps(json.dumps(INVENTORY))) == INVENTORY


@pytest.mark.parametrize("text, problem", [
    ("[1, 2]", "expected an inventory object, got list"),
    ("{not json", "invalid JSON at line 1"),
    ('"just a string"', "a JSON string that does not hold JSON"),
    (json.dumps(json.dumps([1])), "expected an inventory object, got list"),
    ("{}", "the inventory has no hosts"),
    ('{"all": {"hosts": {}}}', "the inventory has no hosts"),
    ('{"all": {"hosts": {"web": {}}}}', "host web has no address (set ansible_host)"),
    ('{"all": {"hosts": ["a", "b"]}}', "group all: hosts must be a mapping"),
    ('{"all": {"hosts": {"a": {"ansible_host": "1.2.3.4"}}, "oops": 1}}', "unknown key 'oops'"),
])
def test_bad_inventories(text, problem):
    with pytest.raises(ValueError) as caught:
        handoff.parse_inventory(text)
    assert problem in str(caught.value)


def test_a_host_named_by_its_address_needs_no_ansible_host():
    assert handoff.parse_inventory('{"all": {"hosts": {"10.1.2.3": null}}}')


def write(store, kind, value):
    path = store.handoff_file(kind.filename)
    return store.write_handoff(kind.filename, handoff.checked_text(kind, value, path))


def test_write_then_read(tmp_path):
    store = LocalStore(tmp_path, "lab")
    assert write(store, handoff.TEMPLATE_ID, 8025) is True
    assert (tmp_path / "template_id.txt").read_text() == "8025\n"
    assert write(store, handoff.TEMPLATE_ID, 8025) is False  # unchanged: not rewritten
    assert handoff.read(handoff.TEMPLATE_ID, tmp_path / "template_id.txt") == 8025
    assert (tmp_path / "template_id.txt").stat().st_mode & 0o777 == 0o600


def test_an_invalid_value_never_replaces_a_good_handoff(tmp_path):
    store = LocalStore(tmp_path, "lab")
    write(store, handoff.INVENTORY, INVENTORY)
    before = (tmp_path / "ansible_inventory.json").read_bytes()
    with pytest.raises(HandoffError, match="refusing to write an invalid handoff: the inventory has no hosts"):
        write(store, handoff.INVENTORY, {"all": {}})
    assert (tmp_path / "ansible_inventory.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ansible_inventory.json"]  # no temporary file left


@pytest.mark.parametrize("content, problem", [
    ("", "is not a Proxmox VMID"), ("9100\n9101\n", "is not a Proxmox VMID"), ("ninety", "is not a Proxmox VMID"),
])
def test_reading_a_corrupted_handoff_names_the_file(tmp_path, content, problem):
    path = tmp_path / "template_id.txt"
    path.write_text(content)
    with pytest.raises(HandoffError) as caught:
        handoff.read(handoff.TEMPLATE_ID, path)
    assert "template_id.txt: " in str(caught.value) and problem in str(caught.value)


def test_reading_a_missing_handoff(tmp_path):
    with pytest.raises(HandoffError, match="ansible_inventory.json: missing"):
        handoff.read(handoff.INVENTORY, tmp_path / "ansible_inventory.json")


def test_configure_recap_must_name_a_host():
    with pytest.raises(ValueError, match="recap must name at least one host"):
        handoff.parse_configure('{"playbook": "site.yml", "recap": {}, "duration": 1, "finished": "x"}')
