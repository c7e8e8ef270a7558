"""`proxpipe init` in a repository with several templates, root modules and playbooks: the graph it writes (a stage
each, what each needs, which build each template-id variable takes and why, the base playbook first), the notes for
what is missing (an inventory output, as HCL), and that one of each is still exactly the three-stage chain."""

import shutil
import subprocess
import textwrap

import pytest
import yaml

from proxpipe.commands import init as init_command
from proxpipe.commands import inventorynote, playorder
from proxpipe.domain.config import RESERVED_NAMES
from proxpipe.engine.pipeline import load_config
from tests.labproject import REPO
from tests.unit.test_init import EXAMPLE, init

TERRAFORM = REPO / ".tools" / "bin" / "terraform"

UBUNTU = """\
    variable "template_id" {
      type = number
    }
    variable "template_name" {
      type    = string
      default = "ubuntu-2404-golden"
    }
    source "proxmox-clone" "ubuntu" {
      node          = "pve"
      clone_vm      = "ubuntu-2404-cloudinit"
      vm_id         = var.template_id
      template_name = var.template_name
      ssh_username  = "ubuntu"
    }
    build {
      sources = ["source.proxmox-clone.ubuntu"]
      provisioner "ansible" {
        playbook_file = "${path.root}/ansible/harden.yml"
      }
    }
    """
DEBIAN = """\
    variable "vmid" {
      type = number
    }
    source "proxmox-clone" "golden" {
      node         = "pve"
      clone_vm_id  = 9001
      vm_id        = var.vmid
      vm_name      = "debian-12-golden"
      ssh_username = "debian"
    }
    build {
      sources = ["source.proxmox-clone.golden"]
    }
    """
NETWORK = """\
    terraform {
      backend "local" {}
    }
    provider "proxmox" {}
    resource "proxmox_virtual_environment_network_linux_bridge" "lab" {
      node_name = "pve"
      name      = "vmbr1"
    }
    """
VMS = """\
    provider "proxmox" {}
    variable "ubuntu_template_id" {
      type        = number
      description = "VMID of the golden template the web servers clone"
    }
    variable "debian_template_id" {
      type        = number
      description = "VMID of the template for the database"
    }
    resource "proxmox_virtual_environment_vm" "web" {
      count     = 2
      name      = "web-${count.index}"
      node_name = "pve"
      clone {
        vm_id = var.ubuntu_template_id
      }
      initialization {
        ip_config {
          ipv4 {
            address = "10.0.0.${10 + count.index}/24"
          }
        }
      }
    }
    resource "proxmox_virtual_environment_vm" "db" {
      name      = "db-0"
      node_name = "pve"
      clone {
        vm_id = var.debian_template_id
      }
    }
    """
DNS = """\
    provider "dns" {}
    resource "dns_a_record_set" "web" {
      zone      = "lab.example."
      name      = "web"
      addresses = ["10.0.0.10", "10.0.0.11"]
    }
    """
PLAY = "- hosts: {hosts}\n  tasks:\n    - ansible.builtin.ping:\n"


def write(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def homelab(tmp_path):
    """Two proxmox-clone templates, three root modules (only vms clones, from both templates, and has no inventory
    output yet), a base playbook for every host, one per service, and one that Packer runs on the image."""
    return write(tmp_path / "homelab", {
        "packer/ubuntu/ubuntu.pkr.hcl": UBUNTU, "packer/debian/debian.pkr.hcl": DEBIAN,
        "packer/ubuntu/ansible/harden.yml": PLAY.format(hosts="default"),
        "terraform/network/main.tf": NETWORK, "terraform/vms/main.tf": VMS, "terraform/dns/main.tf": DNS,
        "ansible/ansible.cfg": "[defaults]\nhost_key_checking = False\n",
        "ansible/web.yml": PLAY.format(hosts="web"), "ansible/base.yml": PLAY.format(hosts="all"),
        "ansible/db.yml": PLAY.format(hosts="db")})


def stages_of(root, env="production"):
    return yaml.safe_load((root / "pipeline.yaml").read_text())["environments"][env]["stages"]


def test_a_repository_with_several_of_each_gets_a_stage_each_and_the_graph_between_them(homelab):
    result = init(homelab)
    assert result.returncode == 0, result.stderr
    stages = stages_of(homelab)
    assert list(stages) == ["build-debian", "build-ubuntu", "provision-dns", "provision-network", "provision-vms",
                            "configure-base", "configure-db", "configure-web"]
    assert stages["build-ubuntu"] == {
        "kind": "packer", "dir": "packer/ubuntu", "template": "ubuntu.pkr.hcl", "needs": [],
        "template_id_var": "template_id", "template_id_range": [8500, 8999], "keep_templates": 3}
    assert stages["build-debian"]["template_id_var"] == "vmid" and stages["build-debian"]["template_id_range"] == [
        8000, 8499]
    # the root that clones from both templates needs both builds, each id into its own variable
    assert stages["provision-vms"]["needs"] == ["build-debian", "build-ubuntu"]
    assert stages["provision-vms"]["template_ids"] == {"build-ubuntu": "ubuntu_template_id",
                                                       "build-debian": "debian_template_id"}
    assert "template_id_var" not in stages["provision-vms"]
    for name in ("provision-network", "provision-dns"):  # no template id variable: they need no build
        assert stages[name]["needs"] == [] and "template_ids" not in stages[name] and "template_id_var" not in stages[
            name]
    # the base playbook (hosts: all, named base) after the root with VMs; the others after it, on its inventory
    assert stages["configure-base"]["needs"] == ["provision-vms"]
    assert stages["configure-web"]["needs"] == stages["configure-db"]["needs"] == ["configure-base"]
    assert stages["configure-web"] == {"kind": "ansible", "dir": "ansible", "playbook": "web.yml",
                                       "needs": ["configure-base"], "exclude": ["base.yml", "db.yml"]}
    # the playbook Packer runs on the image is no stage
    assert "harden" not in str(list(stages)) and "packer/ubuntu/ansible/harden.yml: left out, ubuntu.pkr.hcl runs " \
                                                  "it" in result.stdout
    # what was matched and why, on the console and in the file
    text = (homelab / "pipeline.yaml").read_text()
    assert "ubuntu_template_id <- build-ubuntu" in result.stdout
    assert ("# found: a clone block takes its vm_id from var.ubuntu_template_id; it takes build-ubuntu's template: "
            "its name says ubuntu, as does the file name ubuntu.pkr.hcl") in text
    assert "# found: first: its plays run on hosts: all; it is named base.yml; the other playbooks need it" in text
    assert "CHECK: other candidates" not in text and "# other candidates" not in text
    for name, stage in stages.items():  # the graph is not a chain: every stage says what it needs
        assert name.islower() and name not in RESERVED_NAMES and "needs" in stage
    config = load_config(homelab / "pipeline.yaml", environ={})  # the graph loads as written
    loaded = {s.name: s for s in config.environment().stages}
    assert loaded["provision-vms"].needs == ("build-debian", "build-ubuntu")
    assert loaded["configure-web"].needs == ("configure-base",)


def test_a_root_without_an_inventory_output_gets_the_hcl_to_add_with_its_own_resources(homelab):
    assert init(homelab).returncode == 0
    text = (homelab / "pipeline.yaml").read_text()
    vms = text[text.index("      provision-vms:"):text.index("      configure-base:")]
    assert "# add it to terraform/vms/outputs.tf, a new file" in vms
    hcl_text = "\n".join(line.split("#   ", 1)[1] for line in vms.splitlines() if "#   " in line) + "\n"
    assert "for vm in proxmox_virtual_environment_vm.web : vm.name => {" in hcl_text  # count: a list of VMs
    assert "for vm in [proxmox_virtual_environment_vm.db] : vm.name => {" in hcl_text  # one VM
    assert 'ansible_host = split("/", vm.initialization[0].ip_config[0].ipv4[0].address)[0]' in hcl_text
    assert 'ansible_host = "dhcp"' in hcl_text  # db sets no static address: the guest agent tells
    # valid HCL as terraform itself formats it, and an output as init would find it
    checked = subprocess.run([str(TERRAFORM), "fmt", "-check", "-"], input=hcl_text, capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (homelab / "terraform" / "vms" / "outputs.tf").write_text(hcl_text)
    from proxpipe.commands import discover

    found = discover.inventory_output(homelab / "terraform" / "vms")
    assert found.value == "ansible_inventory" and "jsonencode() of an object with all" in found.why
    network = text[text.index("      provision-network:"):text.index("      provision-vms:")]
    assert "# CHECK: no VM resource" in network and "the configure stages do not need it" in network


def test_one_of_each_is_exactly_the_three_stage_chain_of_before(tmp_path):
    root = tmp_path / "infra"
    for part in ("packer", "infrastructure", "ansible_collections"):
        shutil.copytree(EXAMPLE / part, root / part)
    assert init(root).returncode == 0
    written = (root / "pipeline.yaml").read_text().splitlines()
    expected = (REPO / "tests" / "unit" / "fixtures" / "init-one-of-each.pipeline.yaml").read_text().splitlines()
    assert written[1:] == expected[1:] and written[0].startswith(expected[0].split(" on DATE")[0])
    assert "needs" not in "\n".join(written)


def test_an_ambiguous_match_is_a_guess_marked_check_with_the_other_builds_as_comments(tmp_path, capsys):
    """Two Ubuntu templates: `ubuntu` is a word both share, so ubuntu_template_id tells neither apart; playbooks that
    none looks like a base for run side by side."""
    base = UBUNTU.replace('"ubuntu"', '"base"').replace("source.proxmox-clone.ubuntu", "source.proxmox-clone.base")
    root = write(tmp_path / "repo", {
        "packer/ubuntu-base.pkr.hcl": base, "packer/ubuntu-docker.pkr.hcl": base.replace('"base"', '"docker"'),
        "tf/main.tf": """\
            provider "proxmox" {}
            variable "ubuntu_template_id" {
              type = number
            }
            resource "proxmox_virtual_environment_vm" "docker" {
              name = "docker-0"
              clone {
                vm_id = var.ubuntu_template_id
              }
            }
            output "inventory" {
              value = { all = { hosts = { docker-0 = { ansible_host = "10.0.0.5" } } } }
            }
            """,
        "ansible/playbooks/web.yml": PLAY.format(hosts="web"), "ansible/playbooks/db.yml": PLAY.format(hosts="db")})
    assert init_command.init(root, None, dry_run=False) == 0
    text = (root / "pipeline.yaml").read_text()
    stages = stages_of(root)
    assert stages["provision"]["needs"] == ["build-ubuntu-base"] and stages["provision"]["template_id_var"] == \
        "ubuntu_template_id"
    assert ("# CHECK: a clone block takes its vm_id from var.ubuntu_template_id; it takes build-ubuntu-base's "
            "template: nothing in its name, default or description tells which build (the first one left)") in text
    assert "# other candidates: packer/ubuntu-docker.pkr.hcl (build-ubuntu-docker)" in text
    docker = text[text.index("      build-ubuntu-docker:"):text.index("      provision:")]
    assert "# CHECK: no root module takes its template" in docker
    assert stages["build-ubuntu-base"]["exclude"] == ["ubuntu-docker.pkr.hcl"]  # one folder, a template each
    # no base playbook: both after the provision stage, side by side, said so
    assert stages["configure-db"]["needs"] == stages["configure-web"]["needs"] == ["provision"]
    assert "# CHECK: no playbook looks like a base one" in text
    assert stages["configure-web"]["exclude"] == ["playbooks/db.yml"]
    assert "template_id <- build-ubuntu-base" in capsys.readouterr().out


def test_a_variable_is_matched_by_the_vmid_its_default_names_or_by_its_description_and_one_too_many_is_said(
        tmp_path):
    node = DEBIAN.replace("vm_id        = var.vmid", "vm_id        = 9100").replace('"golden"', '"k8s"').replace(
        "proxmox-clone.golden", "proxmox-clone.k8s").replace("debian-12-golden", "k8s-node")
    appliance = DEBIAN.replace('"golden"', '"fw"').replace("proxmox-clone.golden", "proxmox-clone.fw").replace(
        "debian-12-golden", "opnsense-appliance")
    root = write(tmp_path / "repo", {
        "packer/node.pkr.hcl": node, "packer/firewall.pkr.hcl": appliance,
        "tf/main.tf": """\
            provider "proxmox" {}
            variable "primary_template_id" {
              type    = number
              default = 9100
            }
            variable "edge_template_id" {
              type        = number
              description = "The OPNsense image"
            }
            variable "spare_template_id" {
              type = number
            }
            """})
    assert init_command.init(root, None, dry_run=False) == 0
    text = (root / "pipeline.yaml").read_text()
    assert stages_of(root)["provision"]["template_ids"] == {"build-node": "primary_template_id",
                                                           "build-firewall": "edge_template_id"}
    assert "its default 9100 is the vm_id node.pkr.hcl builds" in text
    assert "its description says opnsense, as does vm_name opnsense-appliance of firewall.pkr.hcl" in text
    # a third variable: both builds are taken, so it is left to the user, not written into template_ids
    assert ("# CHECK: variable spare_template_id is named like a template or clone id; no build is left for it: each "
            "goes to one of the root's variables: give it a value in vars") in text


def test_roots_of_another_environment_are_left_out_and_the_environment_is_named_for_its_folder(tmp_path, capsys):
    root = write(tmp_path / "repo", {"envs/environments/staging/vms/main.tf": VMS,
                                     "envs/environments/staging/network/main.tf": NETWORK,
                                     "envs/environments/prod/vms/main.tf": VMS,
                                     "packer/ubuntu.pkr.hcl": UBUNTU, "packer/debian.pkr.hcl": DEBIAN})
    assert init_command.init(root, None, dry_run=True) == 0
    shown = capsys.readouterr().out
    assert "envs/environments/staging/vms: left out, it is environment staging's" in shown
    assert "default_environment: prod" in shown and "      provision:" in shown and "provision-network" not in shown
    assert init_command.init(root, "staging", dry_run=False) == 0
    assert list(stages_of(root, "staging")) == ["build-debian", "build-ubuntu", "provision-network", "provision-vms"]


def test_the_base_playbook_is_told_by_what_it_imports_and_imported_ones_run_inside_it(tmp_path):
    plays = write(tmp_path, {"site.yml": "- import_playbook: common.yml\n- import_playbook: web.yml\n",
                             "common.yml": PLAY.format(hosts="all"), "web.yml": PLAY.format(hosts="web"),
                             "db.yml": PLAY.format(hosts="db"), "monitoring.yml": PLAY.format(hosts="all")})
    order = playorder.order([plays / name for name in ("db.yml", "monitoring.yml", "site.yml", "common.yml",
                                                       "web.yml")])
    assert [p.name for p in order.playbooks] == ["site.yml", "db.yml", "monitoring.yml"]
    assert order.base.name == "site.yml" and order.why.startswith("it imports common.yml, web.yml; it is named site")
    assert {p.name: by.name for p, by in order.imported.items()} == {"common.yml": "site.yml", "web.yml": "site.yml"}


def test_the_inventory_hcl_names_each_providers_attributes():
    lines = inventorynote.output_hcl("inventory", [inventorynote.Vm("proxmox_vm_qemu", "k3s-server", True, False)])
    text = "\n".join(lines)
    assert 'output "inventory" {' in text and "k3s_server = {" in text  # a group name Ansible takes
    assert "for vm in proxmox_vm_qemu.k3s-server : vm.name => {" in text
    assert "ansible_host = vm.default_ipv4_address" in text and "vm_id        = vm.vmid" in text
    assert "node         = vm.target_node" in text
