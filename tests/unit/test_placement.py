"""proxpipe.domain.placement: can VMs on given nodes be cloned from a template, judged from the cluster's answers
(issue 24). One line per problem, naming the template, the nodes and the storage, with the fixes."""

from proxpipe.domain.cluster import Cluster, Node, Storage, TemplateLocation
from proxpipe.domain.placement import copy_problem, copy_storage, problems, reaches


def storage(name, shared=False, nodes=None, content="images,rootdir", disabled=False):
    return Storage(name, "nfs" if shared else "lvmthin", shared, frozenset(nodes) if nodes else None,
                   frozenset(content.split(",")), disabled)


def cluster(offline=(), extra=()):
    nodes = tuple(Node(name, name not in offline) for name in ("pve1", "pve2", "pve3"))
    return Cluster(nodes, (storage("local", content="iso,backup"), storage("local-pve1", nodes=["pve1"]),
                           storage("local-pve2", nodes=["pve2"]), storage("shared", shared=True),
                           storage("nfs-12", shared=True, nodes=["pve1", "pve2"]), *extra))


def template(node="pve1", *storages, vmid=9101, is_template=True):
    disks = tuple((f"scsi{n}", name) for n, name in enumerate(storages or ("local-pve1",)))
    return TemplateLocation(vmid, node, "golden", is_template, disks)


def test_vms_on_the_templates_own_node_need_nothing():
    assert problems(cluster(), 9101, template(), ["pve1"]) == []


def test_a_template_on_shared_storage_enabled_everywhere_reaches_every_node():
    assert problems(cluster(), 9101, template("pve1", "shared"), ["pve1", "pve2", "pve3"]) == []
    assert reaches(cluster(), template("pve1", "shared"), "pve3")


def test_a_template_only_on_another_nodes_local_storage():
    assert problems(cluster(), 9101, template(), ["pve1", "pve2"]) == [
        "template 9101 is on pve1's local storage local-pve1; VMs on pve2 cannot clone it: put it on shared storage "
        "(enabled on pve2), or copy it to pve2 with the build stage's nodes: [pve1, pve2] (or replicate: auto)"]
    assert not reaches(cluster(), template(), "pve2")


def test_several_nodes_are_named_in_one_line():
    found = problems(cluster(), 9101, template("pve2", "local-pve2"), ["pve3", "pve1", "pve2", "pve1"])
    assert found == ["template 9101 is on pve2's local storage local-pve2; VMs on pve1 and pve3 cannot clone it: put "
                     "it on shared storage (enabled on pve1 and pve3), or copy it to pve1 and pve3 with the build "
                     "stage's nodes: [pve1, pve2, pve3] (or replicate: auto)"]


def test_shared_storage_not_enabled_on_the_target_node():
    found = problems(cluster(), 9101, template("pve1", "nfs-12"), ["pve2", "pve3"])
    assert found == ["template 9101 is on shared storage nfs-12, which is not enabled on pve3; VMs on pve3 cannot "
                     "clone it: enable nfs-12 on pve3 (or put it on shared storage enabled on pve3), or copy it to "
                     "pve3 with the build stage's nodes: [pve1, pve3] (or replicate: auto)"]
    assert reaches(cluster(), template("pve1", "nfs-12"), "pve2") and not reaches(cluster(), template("pve1", "nfs-12"),
                                                                                   "pve3")


def test_a_disabled_shared_storage_is_enabled_nowhere():
    off = storage("off", shared=True, disabled=True)
    found = problems(cluster(extra=(off,)), 9101, template("pve1", "off"), ["pve2"])
    assert len(found) == 1 and "shared storage off, which is not enabled on pve2" in found[0]


def test_every_disk_counts_one_line_per_storage():
    found = problems(cluster(), 9101, template("pve1", "shared", "local-pve1", "local"), ["pve2"])
    assert [line.split(";")[0] for line in found] == ["template 9101 is on pve1's local storage local",
                                                      "template 9101 is on pve1's local storage local-pve1"]


def test_an_offline_target_node():
    found = problems(cluster(offline=["pve3"]), 9101, template("pve1", "shared"), ["pve1", "pve3"])
    assert found == ["node pve3 is offline: VMs on pve3 cannot be cloned from template 9101: bring pve3 back online, "
                     "or place the VMs on another node"]


def test_an_offline_node_is_not_also_told_to_get_the_template():
    found = problems(cluster(offline=["pve2", "pve3"]), 9101, template(), ["pve2", "pve3"])
    assert found == ["nodes pve2 and pve3 are offline: VMs on pve2 and pve3 cannot be cloned from template 9101: "
                     "bring pve2 and pve3 back online, or place the VMs on another node"]


def test_the_templates_own_node_offline():
    found = problems(cluster(offline=["pve1"]), 9101, template("pve1", "shared"), ["pve2"])
    assert found == ["template 9101 is on pve1, which is offline: no VM can be cloned from it: bring pve1 back "
                     "online, or build the template on another node"]


def test_a_node_the_cluster_does_not_have():
    found = problems(cluster(), 9101, template(), ["pve9"])
    assert found == ["node pve9 is not a node of the cluster (pve1, pve2, pve3): check where the VMs are placed"]


def test_a_template_that_does_not_exist():
    assert problems(cluster(), 9101, None, ["pve1"]) == [
        "template 9101 does not exist on the cluster: build it (doit build), or point the provision stage at a "
        "template that exists"]


def test_a_vm_that_is_not_a_template():
    assert problems(cluster(), 9101, template(is_template=False), ["pve1"]) == [
        "VM 9101 on pve1 is not a template: VMs are cloned from a template the build made"]


def test_a_disk_on_a_storage_the_cluster_does_not_list():
    found = problems(cluster(), 9101, template("pve1", "gone"), ["pve2"])
    assert found == ["template 9101 has a disk on storage gone, which the cluster does not list: check the "
                     "template's config (qm config 9101)"]
    assert problems(cluster(), 9101, template("pve1", "gone"), ["pve1"]) == []


def test_copy_problems():
    ok = cluster()
    assert copy_problem(ok, 9101, template(), "pve2", "local-pve2") is None
    assert copy_problem(ok, 9101, template(), "pve1", "shared") is None
    assert copy_problem(ok, 9101, template(), "pve2", "local-pve1") == (
        "storage local-pve1 is not enabled on pve2: template 9101 cannot be copied there; choose a storage enabled "
        "on pve2, or enable local-pve1 on pve2")
    assert copy_problem(ok, 9101, template(), "pve2", "local").startswith("storage local does not hold VM disks")
    assert copy_problem(ok, 9101, template(), "pve2", "nope").startswith("storage nope does not exist")
    assert copy_problem(cluster(offline=["pve2"]), 9101, template(), "pve2", "local-pve2") == (
        "node pve2 is offline: template 9101 cannot be copied to pve2: bring pve2 back online")
    assert copy_problem(ok, 9101, None, "pve2", "local-pve2").startswith("template 9101 does not exist")
    assert copy_problem(ok, 9101, template(), "pve7", "shared").startswith("node pve7 is not a node of the cluster")


def test_the_storage_a_copy_goes_to():
    ok = cluster()
    assert copy_storage(ok, "pve2") == "local-pve2"  # the node's own
    assert copy_storage(ok, "pve2", prefer="shared") == "shared"
    assert copy_storage(ok, "pve2", prefer="local-pve1") == "local-pve2"  # not enabled there
    assert copy_storage(ok, "pve3") == "shared"  # no local storage for disks
    assert copy_storage(Cluster(ok.nodes, (storage("local", content="iso"),)), "pve3") is None
