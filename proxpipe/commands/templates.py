"""`doit templates`, `promote`, `revoke`, `restore-template`: the template registry (proxpipe.domain.registry).

templates lists every template a build stage made, newest first, with the channels that point at it and the VMs of
the inventories cloned from it. promote moves a channel, under the environment's approval rule (a request, then
another `promote --approve`, as plans are approved); revoke marks a template and its children revoked, which every
provision then refuses; restore-template lifts that. Each change is one line in the history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command, Param
from proxpipe.base.console import console, table
from proxpipe.base.errors import PipelineError
from proxpipe.base.ids import who
from proxpipe.domain import registry

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def vms_by_template(pipeline: Pipeline) -> dict[int, list[str]]:
    """template id -> the hosts of this environment's inventories cloned from it (host variable template_id)."""
    from proxpipe.domain import inventory

    found: dict[int, list[str]] = {}
    for stage in pipeline.producers("inventory"):
        for vmid, hosts in inventory.by_template(stage.handoff_value()).items():
            found.setdefault(vmid, []).extend(hosts)
    return found


def rows(pipeline: Pipeline) -> list[dict]:
    """The registry's templates, newest first, as `templates --json` gives them."""
    data, vms = registry.load(pipeline.store), vms_by_template(pipeline)
    out = []
    for entry in registry.newest_first(data):
        gone = entry["status"] == registry.DELETED  # its VMID may be another template's now
        made = [entry["vmid"], *(entry.get("copies") or {}).values()]
        out.append({**{key: entry.get(key) for key in _FIELDS},
                    "channels": [] if gone else registry.channels_of(data, entry["vmid"]),
                    "vms": [] if gone else sorted(name for vmid in made for name in vms.get(int(vmid), []))})
    return out


_FIELDS = ("vmid", "stage", "environment", "node", "copies", "storages", "commit", "inputs", "base", "parent", "packer",
           "built_by", "built_at", "status", "revoked", "deleted_at")


def show(pipeline: Pipeline, json: bool = False) -> None:
    listed = rows(pipeline)
    if json:
        channels = registry.load(pipeline.store)["channels"]
        console.json({"format_version": 1, "environment": pipeline.env.name, "state": pipeline.store.where,
                      "templates": listed,
                      "channels": {name: {k: c.get(k) for k in ("vmid", "by", "at", "why")}
                                   for name, c in sorted(channels.items())}})
        return
    if not listed:
        console.out("no template in the registry yet: a build stage's first build adds one")
        return
    console.out(table([[str(r["vmid"]), r["stage"] or "-", r["environment"] or "-", _where(r), r["status"],
                        ", ".join(r["channels"]) or "-", f"{r['built_at'] or '?'} by {r['built_by'] or '?'}",
                        (r["commit"] or "-")[:10], ", ".join(r["vms"]) or "-"] for r in listed],
                      ["template", "stage", "env", "where", "status", "channels", "built", "commit", "VMs"]))


def _where(row: dict) -> str:
    copies = "".join(f", {node}: {vmid}" for node, vmid in (row["copies"] or {}).items())
    return f"{row['node'] or '?'}{copies}"


def promote(pipeline: Pipeline, template: int | None = None, channel: str = "", source: str = "",
            reason: str = "", approve: bool = False, by: str = "") -> None:
    """Point a channel at a template (or at what another channel points at), under the approval rule."""
    person, rule = who(by), pipeline.env.approval
    if not channel:
        raise PipelineError("promote needs --channel NAME (the channel to move)")
    if approve:
        return _approve(pipeline, channel, person, rule)
    vmid = _chosen(registry.load(pipeline.store), template, source)
    if rule != "none":
        registry.update(pipeline.store, lambda d: registry.request(d, channel, vmid, person, registry.now(), reason))
        _record(pipeline, "promotion requested", vmid, channel=channel, by=person, why=reason,
                message=f"{person} asks to move channel {channel} to {vmid}" + (f": {reason}" if reason else ""))
        other = "another person" if rule == "second-person" else "someone"
        console.out(f"promotion of template {vmid} to channel {channel} requested by {person}; environment "
                    f"{pipeline.env.name} requires approval ({rule}): {other} runs `doit promote --channel {channel} "
                    "--approve`")
        return
    _move(pipeline, channel, vmid, person, reason)


def _approve(pipeline: Pipeline, channel: str, person: str, rule: str) -> None:
    request = registry.load(pipeline.store)["requests"].get(channel)
    if request is None:
        raise PipelineError(f"no promotion to channel {channel} is waiting for approval; request one with `doit "
                            f"promote --template ID --channel {channel}`")
    if rule == "second-person" and person == request["by"]:
        raise PipelineError(f"the promotion of template {request['vmid']} to channel {channel} was requested by "
                            f"{person}, who may not approve it (approval: second-person): another person must")
    _move(pipeline, channel, int(request["vmid"]), person, request.get("why", ""), requested_by=request["by"])


def _move(pipeline: Pipeline, channel: str, vmid: int, person: str, reason: str, requested_by: str = "") -> None:
    when = registry.now()
    before = registry.update(pipeline.store, lambda d: registry.move_channel(d, channel, vmid, person, when, reason))
    asked = (f" (asked by {requested_by})" if requested_by else "") + (f": {reason}" if reason else "")
    _record(pipeline, "promote", vmid, channel=channel, by=person, why=reason, previous=before,
            message=f"channel {channel} {before or 'none'} -> {vmid} by {person}{asked}",
            **({"requested_by": requested_by} if requested_by else {}))
    moved = f"from {before} " if before is not None and before != vmid else ""
    console.out(f"channel {channel} moved {moved}to template {vmid} by {person}")


def _chosen(data: dict, template: int | None, source: str) -> int:
    if (template is None) == (not source):
        raise PipelineError("promote takes a template: --template ID, or --from CHANNEL (what that channel points at)")
    if source:
        vmid = registry.channel(data, source)
        if vmid is None:
            raise PipelineError(f"--from {source}: that channel points at no template")
        return vmid
    return int(template)


def revoke(pipeline: Pipeline, template: int | None = None, reason: str = "", by: str = "") -> None:
    person = who(by)
    if template is None or not reason:
        raise PipelineError("revoke needs --template ID and --reason TEXT (what is wrong with it, for the history "
                            "and for every refusal)")
    done = registry.update(pipeline.store, lambda d: registry.revoke(d, int(template), reason, person, registry.now()))
    if not done:
        raise PipelineError(f"template {template} is revoked already")
    _record(pipeline, "revoke", int(template), by=person, why=reason, revoked=done,
            message=f"{', '.join(map(str, done))} revoked by {person}: {reason}")
    children = f", and its children {', '.join(map(str, done[1:]))}" if done[1:] else ""
    console.out(f"revoked template {template}{children}: no provision clones {'them' if children else 'it'} again")


def restore_template(pipeline: Pipeline, template: int | None = None, by: str = "") -> None:
    person = who(by)
    if template is None:
        raise PipelineError("restore-template needs --template ID")
    done = registry.update(pipeline.store, lambda d: registry.restore(d, int(template)))
    _record(pipeline, "restore-template", int(template), by=person, restored=done,
            message=f"{', '.join(map(str, done))} active again ({person})")
    console.out(f"template{'s' if len(done) > 1 else ''} {', '.join(map(str, done))} active again")


def _record(pipeline: Pipeline, action: str, vmid: int, **fields) -> None:
    found = registry.entry(registry.load(pipeline.store), vmid) or {}
    pipeline.history.append({"run": None, "stage": found.get("stage"), "kind": "registry", "action": action,
                             "template_id": vmid, "outcome": "ok", **fields})


_TEMPLATE = Param("template", "template", int, None, "the template's VMID (`proxpipe CMD ID` gives it too)",
                  metavar="ID", positional=True)
_BY = Param("by", "by", str, "", "who does it (default: the CI's user, else yours)", metavar="NAME")

COMMANDS = (
    Command("templates", "every template the build stages made: lineage, status, channels, VMs", show, (JSON,),
            group="look", description="Lists the template registry newest first: where each template is, its "
                                      "build (stage, environment, commit, inputs, base, Packer, who and when), its "
                                      "status (active, revoked, deleted), the channels on it and the VMs of the "
                                      "inventories cloned from it. On shared state, every environment's.",
            example="doit templates --json"),
    Command("promote", "point a channel at a template (under the approval rule)", promote,
            (_TEMPLATE, Param("channel", "channel", str, "", "the channel to move (e.g. production)", metavar="NAME"),
             Param("source", "from", str, "", "promote what this channel points at instead of --template",
                   metavar="CHANNEL"),
             Param("reason", "reason", str, "", "why, for the history", metavar="TEXT"),
             Param("approve", "approve", bool, False, "approve the promotion waiting on --channel"), _BY),
            lock=True, group="run", arguments="[ID]",
            description="Moves a channel of the template registry to an active template. Where the environment "
                        "requires approval it records a request; another `promote --channel NAME --approve` moves "
                        "the channel (approval: second-person refuses the requester's own).",
            example="proxpipe promote 9105 --channel production --reason 'tested in staging'"),
    Command("revoke", "mark a template (and its children) revoked: no provision clones it again", revoke,
            (_TEMPLATE, Param("reason", "reason", str, "", "what is wrong with it", metavar="TEXT"), _BY),
            lock=True, group="recover", arguments="[ID]",
            description="Marks a template of the registry, and every template built from it, revoked: deploy, "
                        "plan, apply and a provision run by hand refuse it before any tool starts, a channel may "
                        "not move to it, and `validate` flags the VMs still on it.",
            example="proxpipe revoke 9105 --reason 'CVE-2026-1234 in openssl'"),
    Command("restore-template", "lift a template's revocation (and its children's)", restore_template,
            (_TEMPLATE, _BY), lock=True, group="recover", arguments="[ID]",
            description="Makes a revoked template active again, with the children revoked with it.",
            example="proxpipe restore-template 9105"),
)
