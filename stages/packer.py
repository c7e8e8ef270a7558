"""Stage 1, Packer: build a golden template and hand off its VMID in template_id.txt.

Packer runs once, with -machine-readable. The id is, in order: the artifact id of the
`artifact,0,id` line when it is an integer (the Proxmox builders report the VMID there); else
the manifest post-processor's artifact_id or custom_data.template_id of its last run; else the id
the pipeline allocated and passed in. An allocated id that differs from the reported one is an
error, and with a Proxmox API the id must exist on the node and be a template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxpipe.api import (
    Exclude,
    Preview,
    Rollback,
    Stage,
    StageJob,
    ToolSpec,
    anchored,
    env_text,
    handoff,
    hcl,
    history_note,
)
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.errors import HandoffError, PipelineError, ToolError
from proxpipe.base.schema import Field
from proxpipe.stages import galaxy, galaxy_step, lineage, templates

COMMA = "%!(PACKER_COMMA)"


def parse_machine_readable(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(target, type, data) per machine-readable line; commas and newlines in data unescaped."""
    out = []
    for line in lines:
        fields = line.rstrip("\n").split(",")
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        data = [f.replace(COMMA, ",").replace("\\n", "\n").replace("\\r", "\r") for f in fields[3:]]
        out.append((fields[1], fields[2], data))
    return out


def artifact_id(records: list[tuple[str, str, list[str]]]) -> str | None:
    """The id of the first artifact (`artifact,0,id,<id>`), or None."""
    for _target, kind, data in records:
        if kind == "artifact" and len(data) >= 3 and data[0] == "0" and data[1] == "id":
            return data[2]
    return None


def manifest_template_id(path: Path) -> str | None:
    """The template id the manifest post-processor recorded for its last run, or None."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    last = manifest.get("last_run_uuid")
    for build in reversed(manifest.get("builds") or []):
        if build.get("packer_run_uuid") != last:
            continue
        candidate = str(build.get("artifact_id", ""))
        if _is_id(candidate):
            return candidate
        custom = (build.get("custom_data") or {}).get("template_id")
        if custom is not None:
            return str(custom)
    return None


def _legacy(template: Path) -> bool:
    """A legacy JSON template (not HCL2's .pkr.json)."""
    return template.name.endswith(".json") and not template.name.endswith(".pkr.json")


def _is_id(text: str | None) -> bool:
    try:
        handoff.parse_template_id(text or "")
    except ValueError:
        return False
    return True


class PackerStage(Stage):
    kind = "packer"
    ACTION = "build"
    description = "build the golden VM template"
    produces = handoff.TEMPLATE_ID
    CACHE_GLOBS = ("packer_cache", "*.pkrvars.hcl.example", "crash.log")
    WANTS_PROXMOX = True
    RETRY_PATTERNS = (r"connection reset by peer", r"i/o timeout", r"TLS handshake timeout",
                      r"503 Service Unavailable", *galaxy.RETRY_PATTERNS)
    PARAMS = ({"name": "rebuild", "long": "rebuild", "type": bool, "default": False, "forces": True,
               "help": "build a new template even if the current one was built from the same inputs"},)
    ADDED_OPTIONS = ("nodes", "copy_storage", "replicate", "publish", "from_channel")
    KEEP_COPY = False  # the history has every template id; `doit rollback --stage build --to ID` restores one
    ROLLBACK_MODES = {"template": "point the handoff at an earlier template (--to ID; default: the one before) and "
                                  "re-create what depends on it"}
    OPTIONS = {
        "template": Field(schema.FILE, "The Packer template (.pkr.hcl), relative to dir.", required=True,
                          check=lambda path: None if path.name.endswith((".pkr.hcl", ".pkr.json", ".json")) else
                          f"{path.name} is not a Packer template (.pkr.hcl, .pkr.json or .json)"),
        "var_files": Field(schema.LIST, "-var-file files, relative to dir.", items=Field(schema.FILE)),
        "vars": Field(schema.VARS, "Packer variables: -var name=value, but secrets (named like one, taken from a "
                                   "variable named like one, or declared `sensitive = true` by the template) go "
                                   "in PKR_VAR_<name> (see README).", values=Field(schema.STR)),
        "template_id_var": Field(schema.STR, "The Packer variable that receives the allocated template id "
                                             "('' to pass none).", default="template_id"),
        "template_id_range": Field(schema.RANGE, "Allocate each build the lowest VMID in [low, high] that "
                                                 "the cluster does not use.",
                                   check=lambda r: None if r[0] >= handoff.VMID_MIN else
                                   f"low end {r[0]} is below the smallest VMID {handoff.VMID_MIN}"),
        "keep_templates": Field(schema.INT, "Templates built by this pipeline to keep (the current one "
                                            "included); older ones are deleted.", default=3, minimum=1),
        "nodes": Field(schema.LIST, "Proxmox nodes the new template must be on: after the build it is copied to each "
                                    "other one (a full clone to that node's storage, made a template, its VMID from "
                                    "template_id_range), for VMs placed there.", items=Field(schema.STR)),
        "replicate": Field(schema.STR, "auto: after the build, copy the new template (as nodes does) to each node "
                                       "where a provision stage that takes it places VMs and that cannot reach it "
                                       "(its disks on another node's local storage), besides the nodes listed.",
                           choices=("auto",)),
        "publish": Field(schema.STR, "A channel of the template registry (e.g. dev) that each new template of this "
                                     "stage is put on (`doit templates` lists them).", check=lineage.channel_name),
        "from_channel": Field(schema.STR, "Take the template a channel of the registry points at (e.g. staging) "
                                          "instead of building one: Packer does not run, and the stage is stale "
                                          "when the channel moves (`doit promote`).", check=lineage.channel_name),
        "copy_storage": Field(schema.STR, "The storage the copies' disks go to. Default: each node's own storage "
                                          "for VM disks."),
        "manifest": Field(schema.PATH, "Where the template's manifest post-processor writes, relative to dir.",
                          default="manifest.json"),
        "init": Field(schema.STR, "Run `packer init` first: auto (when the template declares "
                                  "required_plugins), always or never.", default="auto",
                      choices=("auto", "always", "never")),
        "extra_args": Field(schema.LIST, "More arguments for `packer build`.", items=Field(schema.STR)),
        "binary": Field(schema.STR, "The packer program.", default="packer"),
        "galaxy_requirements": galaxy_step.OPTION,
    }

    def tool_writes(self) -> list[Exclude]:
        cache = self.config.env.get("PACKER_CACHE_DIR") or os.environ.get("PACKER_CACHE_DIR") or "packer_cache"
        return (anchored(self.dir, self.options["manifest"], "the output of Packer's manifest post-processor "
                                                                    "(the stage's manifest option)")
                + anchored(self.dir, cache, "Packer's download cache (PACKER_CACHE_DIR)"))

    def required_inputs(self) -> list[Path]:
        return galaxy.requirement_files(self.dir, self.options["galaxy_requirements"])

    def requirements(self) -> galaxy.Galaxy:
        """The requirements of the template's Ansible provisioner; ansible-playbook run by Packer reads the
        ansible.cfg of dir and the user's own ANSIBLE_HOME."""
        config = self.dir / "ansible.cfg"
        home = os.environ.get("ANSIBLE_HOME") or os.path.expanduser("~/.ansible")
        return galaxy_step.requirements(self, config if config.is_file() else None, home)

    def tools(self) -> list[ToolSpec]:
        specs = [ToolSpec(self.options["binary"], ("version",), r"v?(\d+\.\d+\.\d+)", "1.6.6",
                          "apt-get install packer (Debian), or https://developer.hashicorp.com/packer/install",
                          "binary")]
        return specs + ([galaxy_step.tool("ansible-galaxy")] if self.required_inputs() else [])

    # ------------------------------------------------------------------ up to date

    def remote_check(self) -> tuple[bool | None, str]:
        proxmox = self.pipeline.proxmox
        if proxmox is None or self.pipeline.handoffs.text(self) is None:
            return None, ""
        try:
            template_id = self.pipeline.handoffs.read(self)
        except HandoffError as exc:
            return False, str(exc)
        moved = (lineage.channel_moved(self, template_id) if self.options["from_channel"] else
                 lineage.revoked(self, template_id))
        if moved:
            return False, moved
        problem = proxmox.template_problem(template_id, max_age=proxmox.check_age) or self._copy_missing(template_id)
        return (False, problem) if problem else (True, f"template {template_id} exists on {proxmox.node}"
                                                       f"{proxmox.answered()}")

    def _copy_missing(self, template_id: int) -> str | None:
        """replicate: auto, and VMs now placed on a node that has no copy of the template and cannot clone it."""
        needed = self._needed_nodes(template_id)  # [] at once without replicate: auto (every no-op asks)
        made = templates.copies(self.pipeline, template_id) if needed else {}
        missing = [node for node in needed if node not in made]
        return (f"VMs on {', '.join(missing)} need a copy of template {template_id}, which it cannot clone from "
                f"(replicate: auto)") if missing else None

    def _needed_nodes(self, template_id: int) -> list[str]:
        """replicate: auto: the nodes where the provision stages that take this template place VMs, and from which
        it cannot be cloned where it is (none without replicate: auto)."""
        if self.options["replicate"] != "auto":
            return []
        from proxpipe.api import placement

        from .terraform import TerraformStage

        pipeline, proxmox = self.pipeline, self.pipeline.proxmox
        takers = [other for other in pipeline.stages if isinstance(other, TerraformStage)
                  and self in pipeline.sources(other)]
        wanted = {node for other in takers for node in other.target_nodes()}
        cluster, location = proxmox.cluster(), proxmox.template_location(template_id)
        return sorted(node for node in wanted if location is None or not placement.reaches(cluster, location, node))

    def drift(self, upstream: Any, job: StageJob) -> list[Any]:
        """The template: still there, still a template, its config as the build left it (memory, CPUs, disks,
        cloud-init drive, NICs)."""
        from proxpipe.api import template_drift  # drift's modules: only when drift runs

        current = self.handoff_value()
        if current is None:
            return []
        config = self.pipeline.require_proxmox("read the template's config").vm_config(current)
        build = next((e for e in self.pipeline.history.builds(self.name) if e["template_id"] == current), {})
        then = build.get("template_config") or {**template_drift.snapshot(config or {}), "template": 1}
        return template_drift.template_drift(then, config, current)

    def restore_advice(self, last: dict | None, kept: bool) -> tuple[str, str | None]:
        if not last or not last.get("template_id"):
            return super().restore_advice(last, kept)
        template_id, note = int(last["template_id"]), history_note(last)
        restore = f"doit rollback --stage {self.name} --to {template_id}"
        proxmox = self.pipeline.proxmox
        if proxmox is None:
            return f"template {template_id} ({note})", restore
        try:
            problem = proxmox.template_problem(template_id)
        except PipelineError as exc:
            return f"template {template_id} ({note}; not checked on the cluster: {exc})", restore
        if problem:
            return f"template {template_id} ({note}; {problem})", None
        return f"template {template_id} ({note}, still on {proxmox.node})", restore

    # ------------------------------------------------------------------ run

    def run(self, upstream: Any, job: StageJob) -> int:
        opts = self.options
        if opts["from_channel"]:
            return lineage.take_from_channel(self, job)
        from proxpipe.api import toolrunner as tools  # only when a tool runs

        binary = tools.require(opts["binary"], self.pipeline.root,
                               f"install packer (apt-get install packer) or set {self.config.where}.binary")
        reused = None if job.options.get("rebuild") else self._reusable()
        if reused is not None:
            console.step(f"template {reused} was built from these very inputs and still exists; keeping it "
                         f"(`doit {self.name} --rebuild` builds a new one)")
            job.notes.update(template_id=reused, reused=True)
            proxmox = self.pipeline.proxmox
            if proxmox is not None:  # its copies, and any a node needs now, in this run's record
                made = templates.copies(self.pipeline, reused)
                job.notes.update(templates.copy_to_nodes(self, proxmox, reused, made, self._needed_nodes(reused)))
            return reused
        self.note_version(job, binary, "packer")
        plain, secret = self.tool_vars()
        allocated = self._allocate()
        try:
            return self._build(job, binary, plain, secret, allocated)
        finally:
            self._release(allocated)

    def _build(self, job: StageJob, binary: str, plain: dict[str, Any], secret: dict[str, Any],
               allocated: int | None) -> int:
        opts = self.options
        template = str(opts["template"].relative_to(self.dir))
        if opts["init"] == "always" or (opts["init"] == "auto" and "required_plugins" in opts["template"].read_text()):
            job.runner.run([binary, "init", template], "packer init")
        requirements = self.requirements()
        lines: list[str] = []
        with self._secret_inputs(secret) as (secret_args, env):
            args = self._var_args(plain, allocated) + secret_args
            job.runner.run([binary, "validate", *args, template], "packer validate", retryable=False, env=env)
            galaxy_step.install(self, job, requirements, "ansible-galaxy", self.pipeline.state_dir / "ansible")
            job.runner.run([binary, "build", "-machine-readable", *args, *(opts["extra_args"] or []), template],
                           "packer build", on_line=lambda line: self._progress(line, lines),
                           env={**requirements.env(), **env})
        template_id = self._template_id(parse_machine_readable(lines), allocated)
        job.notes.update(template_id=template_id, allocated=allocated, previous=self.handoff_value())
        proxmox = self.pipeline.proxmox
        if proxmox is not None:
            problem = proxmox.template_problem(template_id)
            if problem:
                raise PipelineError(f"packer reported template {template_id}, but {problem}")
            job.notes["template_name"] = (proxmox.vm(template_id, max_age=5) or {}).get("name")
            from proxpipe.api import template_drift

            job.notes["template_config"] = template_drift.snapshot(proxmox.vm_config(template_id) or {})
            needed = self._needed_nodes(template_id)
            job.notes.update(templates.copy_to_nodes(self, proxmox, template_id, needed=needed))
        return template_id

    def preview(self, upstream: Any, job: StageJob, reasons: list[str]) -> Preview:
        """No tool runs: whether a new template would be built (and why), or which one is kept; from a channel:
        whether the channel moved."""
        if self.options["from_channel"]:
            current = self.handoff_value()
            moved = lineage.channel_moved(self, current)
            return Preview(bool(moved), moved + lineage.recreates(self, current) if moved else
                           f"keeps template {current}: channel {self.options['from_channel']} points at it",
                           changes_handoff=bool(moved))
        reused = None if job.options.get("rebuild") else self._reusable()
        if reused is not None:
            return Preview(False, f"keeps template {reused}: built from these very inputs, still on the cluster",
                           changes_handoff=False)
        low_high = self.options["template_id_range"]
        where = f" with the lowest free VMID in [{low_high[0]}, {low_high[1]}]" if low_high else ""
        return Preview(True, "builds a new template" + (f": {'; '.join(reasons)}" if reasons else "")
                       + lineage.recreates(self, self.handoff_value()), (f"+ a new template{where}",), True)

    def after_handoff(self, value: int, job: StageJob) -> None:
        """The new template in the registry (and on its channel), then retention, which keeps every template a
        channel points at. A stage that takes its template from a channel built nothing: it deletes nothing."""
        if self.options["from_channel"]:
            return
        proxmox = self.pipeline.proxmox
        lineage.register(self, value, job, proxmox)
        if proxmox is None:
            return
        in_use = {vmid for stage in self.pipeline.producers("inventory")
                  for vmid in templates.templates_in_use(stage.handoff_value())}
        current = {stage.handoff_value() for stage in self.pipeline.producers("template_id")}  # other builds' too
        kept = in_use | current | {value} | lineage.pointed(self)
        deleted = templates.apply_retention(self.pipeline, self.name, self.options["keep_templates"], kept,
                                            lambda **fields: self.pipeline.record(self, "retention", outcome="ok",
                                                                                  **fields))
        if deleted:
            lineage.mark_deleted(self, deleted)

    def rollback(self, mode: str, to: str, upstream: Any, job: StageJob) -> Rollback:
        """Point the handoff at an earlier template this pipeline built; what depends on it is re-created."""
        current = self.handoff_value()
        chosen = templates.rollback_target(self.pipeline, self.name, current, to)
        damaged = "damaged" if self.pipeline.handoffs.text(self) is not None else "none"
        return Rollback(chosen, f"{self.handoff_path.name} now {chosen} (was {current or damaged}); re-creating the "
                                "VMs from it", notes={"template_id": chosen, "from": current})

    def _progress(self, line: str, lines: list[str]) -> None:
        lines.append(line)
        for _target, kind, data in parse_machine_readable([line]):
            if kind == "ui" and data and data[0] in ("say", "error") and len(data) > 1:
                text = data[1].strip()
                if (text.startswith("==>") and ":" in text) or data[0] == "error":  # a builder's steps
                    console.step(text.lstrip("=> ").strip())

    def _allocate(self, for_copy: bool = False) -> int | None:
        low_high = self.options["template_id_range"]
        if not low_high or not (self.options["template_id_var"] or for_copy):
            return None
        proxmox = self.pipeline.require_proxmox("allocate a template id from template_id_range")
        low, high = low_high
        # Reserved in the state store until the build ends, so that builds running at once (other checkouts, other
        # environments on the same cluster) get different ids.
        chosen = self.pipeline.store.allocate_template_id(self._id_scope(), low, high, proxmox.used_ids)
        if chosen is not None:
            return chosen
        raise PipelineError(f"{self.config.where}.template_id_range: no free VMID in [{low}, {high}]: all "
                            f"{high - low + 1} are in use on the cluster; widen the range, lower "
                            "keep_templates, or delete templates the pipeline no longer needs")

    def _id_scope(self) -> str:
        """VMIDs are unique across a Proxmox cluster: reservations are per API."""
        return self.pipeline.require_proxmox("allocate a template id").cfg.url

    def _release(self, allocated: int | None) -> None:
        if allocated is None:
            return
        try:
            self.pipeline.store.release_template_id(self._id_scope(), allocated)
        except PipelineError as exc:  # the reservation ends with this process anyway
            console.warn(f"{self.name}: template id {allocated} stays reserved until this run ends: {exc}")

    def sensitive_vars(self) -> set[str]:
        """Declared in the template's directory (the template itself, or a legacy template's
        "sensitive-variables")."""
        template = self.options["template"]
        if _legacy(template):
            return self.declared_sensitive(lambda: {name for name, var in hcl.legacy_packer_variables(template)
                                                    .items() if var["sensitive"]})
        return self.declared_sensitive(lambda: hcl.sensitive(template.parent, hcl.PACKER, self.hcl_cache))

    @contextmanager
    def _secret_inputs(self, secret: dict[str, Any]) -> Iterator[tuple[list[str], dict[str, str]]]:
        """(arguments, environment) that hand Packer the secret variables: PKR_VAR_<name> for an HCL2 template; a
        legacy JSON template reads no PKR_VAR_, so it gets a -var-file that only this user can read, removed
        when the build ends."""
        if secret and _legacy(self.options["template"]):
            with self.private_vars_file(secret) as path:
                yield [f"-var-file={path}"], {}
            return
        yield [], {f"PKR_VAR_{name}": env_text(value) for name, value in secret.items()}

    def _var_args(self, plain: dict[str, Any], allocated: int | None) -> list[str]:
        args = [f"-var-file={Path(f).relative_to(self.dir) if Path(f).is_relative_to(self.dir) else f}"
                for f in self.options["var_files"] or []]
        for name, value in plain.items():
            args += ["-var", f"{name}={value}"]
        if allocated is not None:
            args += ["-var", f"{self.options['template_id_var']}={allocated}"]
        return args

    def _template_id(self, records, allocated: int | None) -> int:
        reported = artifact_id(records)
        source = "artifact id"
        if not _is_id(reported):
            reported = manifest_template_id(self.options["manifest"])
            source = f"manifest {self.options['manifest'].name}"
        if reported is None:
            if allocated is None:
                raise ToolError("packer build succeeded but reported no template id: the artifact id is not "
                                "a VMID and there is no manifest entry; add a manifest post-processor with "
                                "custom_data.template_id, or set template_id_range")
            return allocated
        try:
            template_id = handoff.parse_template_id(reported)
        except ValueError as exc:
            raise ToolError(f"packer reported a bad template id in its {source}: {exc}") from None
        if allocated is not None and template_id != allocated:
            raise ToolError(f"packer built template {template_id} ({source}), but the pipeline allocated "
                            f"{allocated} and passed it as {self.options['template_id_var']}; make the template "
                            f"use var.{self.options['template_id_var']} as its vm_id")
        return template_id

    def _reusable(self) -> int | None:
        """The current template, when its build had exactly today's inputs and settings and it still exists.

        This makes the build idempotent: `doit -a deploy` on unchanged inputs changes nothing.
        """
        current = self.handoff_value()
        if current is None:
            return None
        build = next((e for e in self.pipeline.history.builds(self.name) if int(e["template_id"]) == current), None)
        if (build is None or build.get("inputs") != self.inputs_digest()
                or build.get("config") != self.config_digest() or lineage.revoked(self, current)):
            return None
        proxmox = self.pipeline.proxmox
        if proxmox is None:
            return current
        made = [current, *templates.copies(self.pipeline, current).values()]
        return current if all(proxmox.vm(vmid) for vmid in made) and proxmox.template_problem(current) is None else None
