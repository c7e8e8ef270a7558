"""Can the VMs be cloned where they are to land? Judged from the cluster's own answers before any tool runs.

Proxmox clones a template onto another node only when every disk of the template is on shared storage enabled
on that node (qemu-server refuses otherwise: "can't clone VM to node 'pve2' (VM uses local storage)", halfway
through `terraform apply`). Each problem is one line naming the template, the nodes and the storage, and the
fixes: put the template on shared storage enabled on those nodes, or let the build copy it to each node (the
build stage's `nodes:` option).

Pure: the caller asks the cluster (proxpipe.domain.proxmox.Proxmox.cluster() and .template_location()).
"""

from __future__ import annotations

from collections.abc import Iterable

from proxpipe.domain.cluster import Cluster, Storage, TemplateLocation


def problems(cluster: Cluster, vmid: int, template: TemplateLocation | None, nodes: Iterable[str]) -> list[str]:
    """What stops VMs on `nodes` from being cloned from template vmid (template: where it is, None when it does
    not exist); [] when nothing does. One line each."""
    targets = sorted(set(nodes))
    if template is None:
        return [f"template {vmid} does not exist on the cluster: build it (doit build), or point the provision "
                f"stage at a template that exists"]
    if not template.template:
        return [f"VM {vmid} on {template.node} is not a template: VMs are cloned from a template the build made"]
    found = [_unknown(cluster, name) for name in targets if cluster.node(name) is None]
    offline = [name for name in targets if _state(cluster, name) is False]
    if offline:
        found.append(f"{_nodes_are(offline)} offline: VMs on {_and(offline)} cannot be cloned from template {vmid}: "
                     f"bring {_and(offline)} back online, or place the VMs on another node")
    source = cluster.node(template.node)
    if source is not None and not source.online:
        found.append(f"template {vmid} is on {template.node}, which is offline: no VM can be cloned from it: bring "
                     f"{template.node} back online, or build the template on another node")
        return found
    elsewhere = [name for name in targets if name != template.node and _state(cluster, name)]
    for storage in template.storages:
        found += _storage_problems(cluster, vmid, template, storage, elsewhere)
    return found


def copy_problem(cluster: Cluster, vmid: int, template: TemplateLocation | None, node: str,
                 storage: str) -> str | None:
    """What stops a copy of template vmid to `node` with its disks on `storage` (the build stage's nodes: option);
    None when nothing does."""
    if template is None or not template.template:
        return problems(cluster, vmid, template, [node])[0]
    for name in (template.node, node):
        found = cluster.node(name)
        if found is None:
            return _unknown(cluster, name)
        if not found.online:
            return f"node {name} is offline: template {vmid} cannot be copied to {node}: bring {name} back online"
    store = cluster.storage(storage)
    if store is None:
        return (f"storage {storage} does not exist: template {vmid} cannot be copied to {node} there; "
                f"storages: {', '.join(s.name for s in cluster.storages)}")
    if not store.enabled_on(node):
        return (f"storage {storage} is not enabled on {node}: template {vmid} cannot be copied there; "
                f"choose a storage enabled on {node}, or enable {storage} on {node}")
    if not store.images:
        return f"storage {storage} does not hold VM disks (content images): template {vmid} cannot be copied there"
    return None


def copy_storage(cluster: Cluster, node: str, prefer: str | None = None) -> str | None:
    """The storage a copy of a template on `node` goes to: `prefer` when it holds VM disks and is enabled on the
    node, else the node's own (not shared) storage for VM disks, else a shared one; None when there is none."""
    usable = [store for store in cluster.storages if store.images and store.enabled_on(node)]
    chosen = next((store for store in usable if store.name == prefer), None)
    chosen = chosen or next((store for store in usable if not store.shared), None)
    chosen = chosen or next(iter(usable), None)
    return chosen.name if chosen else None


def reaches(cluster: Cluster, template: TemplateLocation, node: str) -> bool:
    """True when VMs on `node` can be cloned from the template: it is on that node, or every disk is on shared
    storage enabled there."""
    if node == template.node:
        return True
    for name in template.storages:
        store = cluster.storage(name)
        if store is None or not store.shared or not store.enabled_on(node):
            return False
    return True


def _storage_problems(cluster: Cluster, vmid: int, template: TemplateLocation, storage: str,
                      elsewhere: list[str]) -> list[str]:
    if not elsewhere:
        return []
    store = cluster.storage(storage)
    if store is None:
        return [f"template {vmid} has a disk on storage {storage}, which the cluster does not list: check the "
                f"template's config (qm config {vmid})"]
    if not store.shared:
        return [f"template {vmid} is on {template.node}'s local storage {storage}; " + _fixes(template, elsewhere)]
    missing = [name for name in elsewhere if not store.enabled_on(name)]
    if not missing:
        return []
    return [f"template {vmid} is on shared storage {storage}, which is not enabled on {_and(missing)}; "
            + _fixes(template, missing, enable=store)]


def _fixes(template: TemplateLocation, targets: list[str], enable: Storage | None = None) -> str:
    on = _and(targets)
    shared = f"enable {enable.name} on {on} (or put it on shared storage enabled on {on})" if enable else \
        f"put it on shared storage (enabled on {on})"
    every = ", ".join(sorted({template.node, *targets}))
    return (f"VMs on {on} cannot clone it: {shared}, or copy it to {on} with the build stage's nodes: [{every}] "
            "(or replicate: auto)")


def _state(cluster: Cluster, name: str) -> bool | None:
    """True: online, False: offline, None: not a node of the cluster (reported apart)."""
    node = cluster.node(name)
    return None if node is None else node.online


def _unknown(cluster: Cluster, name: str) -> str:
    known = ", ".join(node.name for node in cluster.nodes)
    return f"node {name} is not a node of the cluster ({known}): check where the VMs are placed"


def _nodes_are(names: list[str]) -> str:
    return f"node {names[0]} is" if len(names) == 1 else f"nodes {_and(names)} are"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
