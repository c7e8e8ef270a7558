"""Stage 2, Terraform or OpenTofu: provision VMs from the template and hand off the Ansible inventory.

Steps: `init` (skipped when nothing it depends on changed), the lint gate (default `tflint --init`,
`tflint`), `plan -out` with the template id variable, `apply` of that plan (skipped when the plan
has no changes; the plan, which holds the variables' values, is removed either way), then `output -json
<output>`. Secret variables reach Terraform as TF_VAR_<name>, never in the generated .tfvars.json. The
output becomes ansible_inventory.json whether it is an object or a string holding JSON (what jsonencode()
gives). When a VM of the inventory vanished from the cluster but the plan keeps its resource, the state is
listed and the plan made again with -replace of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    inventory,
    stable_digest,
)
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.errors import HandoffError, PipelineError, ToolError
from proxpipe.base.fsutil import atomic_write, display
from proxpipe.base.schema import Field

if TYPE_CHECKING:
    from .tfbackend import PgBackend

DEFAULT_LINT = [["tflint", "--init"], ["tflint"]]


class TerraformStage(Stage):
    kind = "terraform"
    ACTION = "provision"
    description = "provision the VMs from the template"
    consumes = handoff.TEMPLATE_ID
    produces = handoff.INVENTORY
    UPSTREAM_PARAM = {"name": "template_id", "long": "template-id", "env_var": "TEMPLATE_ID",
                      "help": "provision from this template id instead of the build stage's handoff"}
    ADDED_OPTIONS = ("template_ids", "address_wait", "template_ids_by_node")
    ROLLBACK_MODES = {"destroy": "tear down what it made and remove the inventory handoff",
                      "replace": "re-create the resources listed in its `replace` option, then what depends on them"}
    CACHE_GLOBS = (".terraform", "*.tfstate", "*.tfstate.backup", ".terraform.tfstate.lock.info", "*.tfplan",
                   "crash.log", "*.tfvars.json.example")
    WANTS_PROXMOX = True
    RETRY_PATTERNS = (r"Error acquiring the state lock", r"Failed to query available provider packages",
                      r"Could not retrieve the list of available versions", r"connection reset by peer",
                      r"TLS handshake timeout", r"i/o timeout", r"timeout while waiting for plugin to start",
                      r"429 Too Many Requests", r"(?:502|503|504) (?:Bad Gateway|Service Unavailable|Gateway)",
                      # Proxmox's config lock, held by another clone of the same template (bpg#995, Telmate#173)
                      r"can't lock file '/var/lock/qemu-server/lock-\d+\.conf' - got timeout",
                      r"VM is locked \((?:clone|create)\)")
    DEFAULT_BINARY = "terraform"
    OPTIONS = {
        "binary": Field(schema.STR, "The terraform (or tofu) program: a name on PATH or a path relative to the "
                                    "project."),
        "cli_config": Field(schema.PATH, "CLI configuration (TF_CLI_CONFIG_FILE), e.g. a provider mirror, "
                                         "relative to pipeline.yaml.", relative_to="project"),
        "lint": Field(schema.LIST, "The lint gate: commands run in dir before plan; {binary} is the program "
                                   "above. [] turns the gate off.", items=Field(schema.COMMAND)),
        "vars": Field(schema.VARS, "Terraform variables, passed in a generated .tfvars.json; secrets (named like "
                                   "one, taken from a variable named like one, or declared `sensitive = true`) go "
                                   "in TF_VAR_<name> instead (see README)."),
        "var_files": Field(schema.LIST, "-var-file files, relative to dir.", items=Field(schema.FILE)),
        "template_id_var": Field(schema.STR, "The variable that receives the template id.", default="template_id"),
        "template_ids": Field(schema.MAP, "When it needs several builds: build stage -> the variable that receives "
                                          "its template id.", values=Field(schema.STR)),
        "output": Field(schema.STR, "The output that holds the Ansible inventory.", default="ansible_inventory"),
        "replace": Field(schema.LIST, "Resource addresses that `doit rollback --stage provision --mode replace` "
                                      "re-creates.", items=Field(schema.STR)),
        "init_args": Field(schema.LIST, "More arguments for `init`, e.g. -backend-config=...",
                           items=Field(schema.STR)),
        "parallelism": Field(schema.INT, "Resources that plan and apply work on at once (-parallelism). Default: "
                                         "Terraform's own, 10; more VMs than that are made in rounds.", minimum=1),
        "max_parallel_clones": Field(schema.INT, "Clones of one node's templates Terraform starts at once, per node "
                                                 "its VMs land on, when parallelism is not set: Proxmox's config lock "
                                                 "times out under more (its timeouts are retried either way).",
                                     minimum=1),
        "address_wait": Field(schema.NUMBER, "Seconds to wait for the guest agent to report the address of a VM the "
                                             "inventory output gives none (or dhcp).", default=300, minimum=1),
        "template_ids_by_node": Field(schema.STR, "A variable that receives {node: template id}: the build's template "
                                                  "and its copies on other nodes (the build stage's nodes: option), so "
                                                  "each VM clones the one on its own node."),
        "nodes": Field(schema.LIST, "The Proxmox nodes its VMs land on, where its variables do not say (a `node`, "
                                    "`node_name` or `target_node` variable, or such a key per VM); checked before any "
                                    "tool runs. Default: those, else proxmox.node.", items=Field(schema.STR)),
    }

    @classmethod
    def check_sources(cls, options: dict[str, Any], sources: list[str]) -> str | None:
        """Several builds: each one's template id goes to the variable template_ids names for it."""
        named = options.get("template_ids") or {}
        missing = [name for name in sources if name not in named]
        if missing:
            example = ", ".join(f"{name}: {name.replace('-', '_')}_template_id" for name in missing)
            return (f"it needs {len(sources)} builds ({', '.join(sources)}): name the variable each one's template id "
                    f"goes to, e.g. template_ids: {{{example}}}")
        extra = sorted(set(named) - set(sources))
        return f"template_ids names {', '.join(extra)}, which it does not need" if extra else None

    @classmethod
    def check_dir(cls, path: Path) -> str | None:
        if not any(path.glob("*.tf")) and not any(path.glob("*.tf.json")):
            return f"is not a {cls.kind.capitalize()} project: it has no .tf files"
        return None

    # ------------------------------------------------------------------ paths and environment

    @property
    def binary_name(self) -> str:
        return self.options["binary"] or self.DEFAULT_BINARY

    @property
    def data_dir(self) -> Path:
        return self.pipeline.state_dir / self.name / "data"

    @property
    def vars_file(self) -> Path:
        return self.pipeline.state_dir / self.name / "pipeline.tfvars.json"

    @property
    def plan_file(self) -> Path:
        return self.pipeline.state_dir / self.name / "plan.tfplan"

    @cached_property
    def pg_backend(self) -> PgBackend | None:
        """The shared state's database, when the project declares `backend "pg" {}` (see stages.tfbackend)."""
        from .tfbackend import pg_backend

        return pg_backend(self.dir, self.pipeline.store, self.name, self.hcl_cache)

    def tool_env(self) -> dict[str, str]:
        env = {"TF_DATA_DIR": str(self.data_dir), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
               **(self.pg_backend.environ if self.pg_backend else {})}
        if self.options["cli_config"]:
            if not self.options["cli_config"].is_file():
                raise ToolError(f"{self.config.where}.cli_config: {display(self.options['cli_config'])} "
                                "does not exist; ./doitw writes the lab's (with its provider mirror)")
            env["TF_CLI_CONFIG_FILE"] = str(self.options["cli_config"])
        return env

    def tool_writes(self) -> list[Exclude]:
        """Terraform's data directory and local state, where a run by hand or a local backend puts them (the
        pipeline's own data directory is under the state directory)."""
        rules = anchored(self.dir, os.environ.get("TF_DATA_DIR") or ".terraform", "Terraform's data directory")
        rules += anchored(self.dir, "terraform.tfstate.d", "Terraform's local state of workspaces")
        for path in self.hcl_facts["local_state"]:
            rules += anchored(self.dir, path, 'Terraform\'s local state (backend "local")')
        return rules

    def binary(self) -> str:
        from proxpipe.api import toolrunner as tools  # only when a tool runs

        return tools.require(self.binary_name, self.pipeline.root,
                             f"install it (see `doit doctor`) or set {self.config.where}.binary")

    def tools(self) -> list[ToolSpec]:
        specs = [ToolSpec(self.binary_name, ("version",), r"v(\d+\.\d+\.\d+)", "1.0.0",
                          "https://developer.hashicorp.com/terraform/install (or ./doitw for the lab's 1.0.3)",
                          "binary")]
        for command in self.lint_commands():
            if command[0] != self.binary_name and command[0] not in [s.program for s in specs]:
                specs.append(ToolSpec(command[0], ("--version",), r"(\d+\.\d+\.\d+)", "",
                                      "see https://github.com/terraform-linters/tflint#installation", "lint"))
        return specs

    def docs_facts(self) -> dict[str, Any]:
        return {"lint": self.lint_commands()}

    def lint_commands(self) -> list[list[str]]:
        lint = self.options["lint"]
        commands = DEFAULT_LINT if lint is None else lint
        return [[arg.replace("{binary}", self.binary_name) for arg in command] for command in commands]

    def step(self, job: StageJob, argv: list[str], step: str, with_vars: bool = False, **kwargs):
        """One tool step in dir; with_vars: it reads the variables, so it gets the secret ones (TF_VAR_<name>)."""
        env = {**self.tool_env(), **(self.secret_env() if with_vars else {})}
        return job.runner.run(argv, step, env=env, **kwargs)

    @cached_property
    def hcl_facts(self) -> dict:
        """What the project's sources declare (see proxpipe.domain.hcl), read once per process."""
        return hcl.facts(self.dir, hcl.TERRAFORM, self.hcl_cache)

    def sensitive_vars(self) -> set[str]:
        return self.declared_sensitive(lambda: set(self.hcl_facts["sensitive"]))

    def secret_env(self) -> dict[str, str]:
        """TF_VAR_<name> of the secret variables: never in the generated .tfvars.json, never on a command line."""
        return {f"TF_VAR_{name}": env_text(value) for name, value in self.tool_vars()[1].items()}

    # ------------------------------------------------------------------ up to date

    def fingerprint(self) -> dict[str, Any]:
        """parallelism says how fast and nodes where to check placement, not what is made: setting them (or a
        pipeline.yaml from before them) leaves provision up to date."""
        found = super().fingerprint()
        for option in ("parallelism", "nodes", "max_parallel_clones"):
            found["options"].pop(option, None)
        return found

    def missing_vms(self, max_age: float = 0.0) -> list[inventory.Host] | None:
        """Hosts of the inventory handoff whose VM (host variable vm_id) no longer exists; None: cannot tell."""
        proxmox = self.pipeline.proxmox
        value = self.handoff_value() if proxmox is not None else None
        if value is None:
            return None
        hosts = inventory.parse(value)
        ids = {int(vm["vmid"]) for vm in proxmox.vms(max_age)}
        return sorted((h for h in hosts.values() if h.vm_id and h.vm_id not in ids), key=lambda h: h.name)

    def remote_check(self) -> tuple[bool | None, str]:
        proxmox = self.pipeline.proxmox
        missing = self.missing_vms(max_age=proxmox.check_age) if proxmox is not None else None
        if missing is None:
            return None, ""
        if missing:
            names = ", ".join(f"{h.name} (VM {h.vm_id})" for h in missing)
            return False, f"{names} no longer exist{'s' if len(missing) == 1 else ''} on the cluster"
        return True, f"its VMs exist on the cluster{proxmox.answered()}"

    def _repairs(self, job: StageJob, binary: str, planned: str) -> list[str]:
        """-replace for the `replace` resources of hosts whose VM vanished while the plan keeps them: a
        provider that cannot see a VM disappear (like the lab's null_resource) would keep it for ever. Asks
        for the state only then; a plan that already re-creates them needs nothing."""
        missing = [host.name for host in self.missing_vms(max_age=5) or []]
        if not missing or not self.options["replace"]:
            return []
        remade = [a for a in re.findall(_REMADE, planned) if self._replaceable(a)]
        kept = [name for name in missing if not _owned_by(remade, [name])]
        chosen = _owned_by(self.replace_instances(job, binary), kept) if kept else []
        job.notes["repaired"] = chosen
        return [f"-replace={a}" for a in chosen]

    # ------------------------------------------------------------------ before any tool

    def preflight(self, upstream: Any, job: StageJob) -> None:
        """Every template it would clone is not revoked in the template registry, exists, is a template, and can be
        cloned on each node its VMs land on, asked before Terraform starts: a missing template id would have
        Terraform destroy the VMs and then fail on the clone."""
        if upstream is None:
            return
        given = f"--{self.UPSTREAM_PARAM['long']}" if job.upstream_path is None else display(job.upstream_path)
        revoked = self._revoked(upstream)
        if revoked:
            raise PipelineError(f"{self.name}: {revoked} (from {given}); no tool was started")
        if self.pipeline.proxmox is None:
            return
        problems = self.placement_problems(upstream)
        if problems:
            raise PipelineError(f"{self.name}: {problems[0]} (from {given}); no tool was started")

    def _revoked(self, upstream: Any) -> str | None:
        """Why the template registry refuses a template it would clone (revoked), or None."""
        from proxpipe.api import registry

        data = registry.load(self.pipeline.store)
        ids = upstream.values() if isinstance(upstream, dict) else [upstream]
        return next((why for vmid in ids if (why := registry.refusal(data, int(vmid)))), None)

    def placement_problems(self, upstream: Any) -> list[str]:
        """What stops its VMs being cloned where they land, from the cluster's answers: each template it would clone
        (per build, or per node with template_ids_by_node) on each node its VMs land on. One line each."""
        from proxpipe.api import placement

        proxmox = self.pipeline.require_proxmox("check where the VMs can be cloned")
        cluster, nodes = proxmox.cluster(), self.target_nodes()
        by_node = self._by_node(upstream) if self.options["template_ids_by_node"] and isinstance(upstream, int) else {}
        plans = ({node: [by_node.get(node, upstream)] for node in nodes} if by_node else
                 {node: sorted({int(v) for v in (upstream.values() if isinstance(upstream, dict) else [upstream])})
                  for node in nodes})
        found: list[str] = []
        for vmid in sorted({vmid for ids in plans.values() for vmid in ids}):
            targets = [node for node, ids in plans.items() if vmid in ids]
            found += [f"{problem} (template {vmid})" if str(vmid) not in problem else problem
                      for problem in placement.problems(cluster, vmid, proxmox.template_location(vmid), targets)]
        return found

    def _by_node(self, template_id: int) -> dict[str, int]:
        """node -> the template VMs on that node clone: the build's copies, or the template on its own node."""
        from proxpipe.stages.templates import copies

        found = copies(self.pipeline, template_id)
        if not found and self.pipeline.proxmox is not None:
            entry = self.pipeline.proxmox.vm(template_id)
            found = {str(entry["node"]): template_id} if entry else {}
        return found

    def target_nodes(self) -> list[str]:
        """The nodes its VMs land on: the nodes option, else what its variables name, else proxmox.node."""
        if self.options["nodes"]:
            return list(self.options["nodes"])
        named = {str(value[key]) for value in _dicts(self.tool_vars()[0]) for key in _NODE_KEYS
                 if isinstance(value.get(key), str) and value[key]}
        default = self.pipeline.env.proxmox.node if self.pipeline.env.proxmox else None
        return sorted(named) or ([default] if default else [])

    # ------------------------------------------------------------------ run

    def run(self, upstream: Any, job: StageJob) -> Any:
        binary = self.binary()
        self.note_version(job, binary, self.binary_name.rsplit("/", 1)[-1])
        self.init(job, binary)
        if job.options.get("plan_file"):  # `doit apply`: exactly the reviewed plan
            self.step(job, [binary, "apply", "-input=false", "-no-color", "-auto-approve", *self.parallelism_args(),
                            str(job.options["plan_file"])], f"{self.binary_name} apply (plan {job.options['plan_id']})")
            job.notes.update(plan=f"applied plan {job.options['plan_id']}", changed_resources=True)
            return self.inventory(job, binary)
        self.write_vars(upstream)
        try:
            # The lint gate runs beside `plan`, which changes nothing; `apply` waits for both.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1) as pool:
                gate = pool.submit(self.lint, job)
                try:
                    repairs = self._repairs(job, binary, self.plan(job, binary))
                    if repairs:
                        self.plan(job, binary, repairs)
                finally:
                    gate.result()  # a failed gate wins: its message is the one to show
            if job.notes["plan"] != "no changes":
                if job.notes["replaced"]:
                    console.step(self._replacing(job.notes["replaced"], upstream))
                self.apply(job, binary)
                job.notes["changed_resources"] = job.notes["plan"] != "changes to outputs"
        finally:
            self.plan_file.unlink(missing_ok=True)  # a saved plan holds the variables' values, secrets included
        return self.inventory(job, binary)

    def preview(self, upstream: Any, job: StageJob, reasons: list[str]) -> Preview:
        """A saved `plan -out`, against the template id the deploy would use, and what it would change."""
        binary = self.binary()
        self.init(job, binary)
        self.write_vars(upstream)
        saved = self.data_dir.parent / f"preview-{job.run.id}.tfplan"
        self.lint(job)
        planned = self.plan(job, binary, out=saved)
        repairs = self._repairs(job, binary, planned)
        if repairs:
            planned = self.plan(job, binary, repairs, out=saved)
        changes = plan_changes(planned)
        return Preview(bool(changes), job.notes["plan"], tuple(changes), bool(changes), saved,
                       self.plan_facts(job))

    def plan_facts(self, job: StageJob) -> dict[str, Any]:
        """The Terraform state's serial and lineage: another apply in between moves them."""
        pulled = self.step(job, [self.binary(), "state", "pull"], f"{self.binary_name} state pull", capture=True,
                           check=False)
        try:
            state = json.loads(pulled.stdout) if pulled.returncode == 0 and pulled.stdout.strip() else {}
        except ValueError:
            state = {}
        return {"serial": state.get("serial"), "lineage": state.get("lineage")}

    def describe_facts(self, then: dict[str, Any], now: dict[str, Any]) -> str:
        if then.get("lineage") != now.get("lineage"):
            return f"the Terraform state of {self.name} was replaced since the plan (another lineage)"
        return (f"the Terraform state of {self.name} changed since the plan (serial {then.get('serial')} -> "
                f"{now.get('serial')}): another run applied changes")

    def apply(self, job: StageJob, binary: str) -> None:
        """Apply exactly the plan in plan_file, then remove it."""
        try:
            self.step(job, [binary, "apply", "-input=false", "-no-color", "-auto-approve", *self.parallelism_args(),
                            str(self.plan_file)], f"{self.binary_name} apply")
        finally:
            self.plan_file.unlink(missing_ok=True)

    def init(self, job: StageJob, binary: str) -> None:
        marker = self.data_dir.parent / "init.digest"
        digest = self._init_digest(binary)
        if self.data_dir.is_dir() and marker.is_file() and marker.read_text() == digest:
            job.notes["init"] = "skipped (nothing it depends on changed)"
            return
        backend = self.data_dir.parent / "backend.pg.tfbackend"  # no password in it; removed once init read it
        extra = [f"-backend-config={backend}", "-reconfigure"] if self.pg_backend else []
        try:
            if self.pg_backend:
                atomic_write(backend, self.pg_backend.config, 0o600)
            self.step(job, [binary, "init", "-input=false", "-no-color", *extra, *(self.options["init_args"] or [])],
                      f"{self.binary_name} init")
        finally:
            backend.unlink(missing_ok=True)
        atomic_write(marker, self._init_digest(binary))  # init may have written the lock file

    def _init_digest(self, binary: str) -> str:
        """What init depends on: the configuration's modules, providers and backend, the lock file,
        the CLI configuration and the program itself."""
        backend = self.pg_backend.config if self.pg_backend else ""
        digest = hashlib.sha256(f"{binary}\0{self.options['init_args']}\0{backend}".encode())
        for path in sorted(self.dir.glob("*.tf")) + [self.dir / ".terraform.lock.hcl"]:
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        if self.options["cli_config"]:
            digest.update(Path(self.options["cli_config"]).read_bytes())
        return digest.hexdigest()

    def lint(self, job: StageJob, cache: bool = True) -> None:
        """The lint gate. Inputs that already passed it (same files, commands and programs) are not linted
        again: the gate's verdict cannot have changed."""
        from proxpipe.api import toolrunner as tools  # only when a tool runs

        commands = self.lint_commands()
        programs = []
        for command in commands:
            program = tools.which(command[0], self.pipeline.root)
            if program is None:
                raise ToolError(f"lint gate: {command[0]} not found; install it or change the gate in "
                                f"{self.config.where}.lint")
            programs.append(program)
        marker = self.data_dir.parent / "lint.digest"
        digest = stable_digest([self.input_digests(), commands, programs])
        if cache and marker.is_file() and marker.read_text() == digest:
            job.notes["lint"] = "passed before for these inputs"
            return
        for program, command in zip(programs, commands, strict=True):
            self.step(job, [program, *command[1:]], f"lint gate: {' '.join(command)}", retryable=False)
        atomic_write(marker, digest, durable=False)

    def write_vars(self, template_id: int | dict[str, int] | None) -> None:
        """The generated .tfvars.json: the variables that are not secrets, and the template id (one per build, in the
        variables template_ids names, when it reads several builds)."""
        values = self.tool_vars()[0]
        values.update({var: int(vmid) for var, vmid in self._template_vars(template_id).items()})
        if self.options["template_ids_by_node"] and isinstance(template_id, int):
            values[self.options["template_ids_by_node"]] = self._by_node(template_id)
        atomic_write(self.vars_file, json.dumps(values, indent=2, sort_keys=True, default=str) + "\n", 0o600)

    def parallelism_args(self) -> list[str]:
        """-parallelism: the option, else max_parallel_clones per node the VMs land on, else Terraform's 10."""
        clones = self.options["max_parallel_clones"]
        parallelism = self.options["parallelism"] or (clones * len(self.target_nodes() or [None]) if clones else None)
        return [f"-parallelism={parallelism}"] if parallelism else []

    def var_args(self) -> list[str]:
        args = [f"-var-file={f}" for f in self.options["var_files"] or []]
        return args + [f"-var-file={self.vars_file}"]

    def plan(self, job: StageJob, binary: str, extra: list[str] = (), out: Path | None = None) -> str:
        """Plan into plan_file (or out); its summary goes to job.notes["plan"]; returns its output."""
        result = self.step(job, [binary, "plan", "-input=false", "-no-color", f"-out={out or self.plan_file}",
                                 *self.parallelism_args(), *self.var_args(), *extra], f"{self.binary_name} plan",
                           with_vars=True)
        job.notes["plan"] = _plan_summary(result.output)
        job.notes["replaced"] = [change[4:] for change in plan_changes(result.output) if change.startswith("-/+ ")]
        return result.output

    def _replacing(self, replaced: list[str], upstream: Any) -> str:
        """The line deploy prints before an apply replaces resources: how many, which, and the template change."""
        shown = ", ".join(replaced[:5]) + (f" and {len(replaced) - 5} more" if len(replaced) > 5 else "")
        was = sorted(inventory.by_template(self.handoff_value()))
        now = sorted({int(v) for v in (upstream.values() if isinstance(upstream, dict) else [upstream])})
        why = (f": the template changes from {', '.join(map(str, was))} to {', '.join(map(str, now))}"
               if was and now and was != now else "")
        return f"replacing {len(replaced)} resource{'s' if len(replaced) != 1 else ''} ({shown}){why}"

    def inventory(self, job: StageJob, binary: str) -> Any:
        output = self.options["output"]
        result = self.step(job, [binary, "output", "-no-color", "-json", output], f"{self.binary_name} output",
                           capture=True, check=False)
        if result.returncode != 0:
            raise ToolError(f"{self.binary_name} output: there is no output {output!r} in the state of "
                            f"{display(self.dir)}; add it or set {self.config.where}.output",
                            result.output.splitlines()[-10:], str(job.runner.log_path))
        try:
            value = handoff.parse_inventory(result.stdout, addresses=False)
        except ValueError as exc:
            raise HandoffError(f"output {output!r} of {display(self.dir)} is not a usable inventory: "
                               f"{exc}") from None
        return self._with_addresses(value)

    def _with_addresses(self, value: dict) -> dict:
        """The inventory with an address for every host: where the output has none (or a placeholder, dhcp), the
        guest agent of the host's VM (host variables vm_id and node) is asked, until it tells or the deadline."""
        waiting = {host.name: host for host in inventory.parse(value).values()
                   if not host.address or host.address in handoff.PLACEHOLDERS}
        if not waiting:
            return value
        from proxpipe.stages import addresses

        found = addresses.from_agents(self.pipeline.require_proxmox("ask the guest agents for the VMs' addresses"),
                                      list(waiting.values()), self.options["address_wait"], self.name)
        for name, address in found.items():
            inventory.set_address(value, name, address)
        return value

    # ------------------------------------------------------------------ drift

    def drift(self, upstream: Any, job: StageJob) -> list[Any]:
        """What changed outside Terraform (a refresh-only plan, read from `show -json`, which is never logged: it
        holds the variables' values), the inventory's VMs that are gone or not running (job.notes["down_hosts"]:
        a later stage does not wait for them), and the inventory handoff against the state's output."""
        binary = self.binary()
        self.init(job, binary)
        self.write_vars(upstream if upstream is not None else self._last_template_id())
        saved = self.data_dir.parent / f"drift-{job.run.id}.tfplan"
        try:
            self.step(job, [binary, "plan", "-refresh-only", "-input=false", "-no-color", f"-out={saved}",
                            *self.var_args()], f"{self.binary_name} plan -refresh-only", with_vars=True)
            shown = self.step(job, [binary, "show", "-json", str(saved)], f"{self.binary_name} show -json",
                              private=True)
        finally:
            saved.unlink(missing_ok=True)
        from proxpipe.api import tfdrift  # drift's modules: only when drift runs

        return [*tfdrift.refresh_drift(shown.stdout), *self._vm_drift(job), *self._output_drift(job, binary)]

    def _vm_drift(self, job: StageJob) -> list[Any]:
        from proxpipe.api import drift

        value = self.handoff_value()
        proxmox = self.pipeline.proxmox
        if value is None or proxmox is None:
            return []
        by_id = {int(vm["vmid"]): vm for vm in proxmox.vms()}
        items = []
        for host in sorted(inventory.parse(value).values(), key=lambda h: h.name):
            vm = by_id.get(host.vm_id) if host.vm_id else None
            if host.vm_id and (vm is None or vm.get("status") != "running"):
                state = "no longer exists" if vm is None else f"is {vm.get('status', 'in an unknown state')}"
                items.append(drift.DriftItem(drift.HOST, host.name, f"VM {host.vm_id} {state}"))
                job.notes.setdefault("down_hosts", []).append(host.name)
        return items

    def _output_drift(self, job: StageJob, binary: str) -> list[Any]:
        from proxpipe.api import drift

        value = self.handoff_value()
        result = self.step(job, [binary, "output", "-no-color", "-json", self.options["output"]],
                           f"{self.binary_name} output", capture=True, check=False)
        if value is None or result.returncode != 0:
            return []
        try:
            now = handoff.parse_inventory(result.stdout, addresses=False)
        except ValueError:
            return []
        item = drift.handoff_item(self.handoff_path.name, value, now, "differs from the state's output")
        return [item] if item else []

    # ------------------------------------------------------------------ destroy, rollback, restore

    def destroy(self, upstream: Any, job: StageJob) -> bool:
        """`terraform destroy` with the variables it provisioned with (the template id: the upstream handoff, else
        the one it last used); False when it has provisioned nothing."""
        binary = self.binary()
        self.init(job, binary)
        template_id = upstream if upstream is not None else self._last_template_id()
        if template_id is None:
            if not self.state_addresses(job, binary):
                console.info(f"  nothing to destroy: {self.name} has not provisioned anything")
                return False
            raise PipelineError(f"cannot destroy {self.name}: the template id it provisioned from is unknown (no "
                                f"{self.consumes.filename}); run `doit {self.name} --template-id N` first")
        self.write_vars(template_id)
        self.step(job, [binary, "destroy", "-input=false", "-no-color", "-auto-approve", *self.var_args()],
                  f"{self.binary_name} destroy", with_vars=True)
        return True

    def rollback(self, mode: str, to: str, upstream: Any, job: StageJob) -> Rollback:
        """--mode replace: re-create the `replace` resources (-replace of each instance), with the same variables."""
        addresses = self.options["replace"] or []
        if not addresses:
            raise PipelineError(f"{self.config.where}.replace lists no resource address to re-create")
        binary = self.binary()
        self.init(job, binary)
        instances = self.replace_instances(job, binary)
        if not instances:
            raise PipelineError(f"none of {', '.join(addresses)} is in the state of {self.name}; nothing to replace "
                                "(run `doit deploy` first)")
        console.info(f"↻ {self.name}: replacing {', '.join(instances)}")
        self.write_vars(upstream if upstream is not None else self._last_template_id())
        self.plan(job, binary, [f"-replace={a}" for a in instances])
        self.apply(job, binary)
        return Rollback(self.inventory(job, binary), f"replaced {', '.join(instances)}",
                        notes={"replaced": instances}, action="replace")

    def restore(self, kept: Any, job: StageJob) -> Any:
        """The inventory as the state's output has it: what provision last handed off, unless the state changed."""
        binary = self.binary()
        self.init(job, binary)
        return self.inventory(job, binary)

    def _template_vars(self, template_id: int | dict[str, int] | None) -> dict[str, int]:
        """variable -> template id: template_id_var's, or one per build stage (template_ids)."""
        if template_id is None:
            return {}
        named = self.options["template_ids"] or {}
        if isinstance(template_id, dict):
            return {named[name]: vmid for name, vmid in template_id.items()}
        return {next(iter(named.values())) if len(named) == 1 else self.options["template_id_var"]: template_id}

    def _last_template_id(self) -> int | dict[str, int] | None:
        """The template id(s) of the last run's generated variables, if any."""
        try:
            values = json.loads(self.vars_file.read_text())
        except (OSError, ValueError):
            return None
        if self.options["template_ids"]:
            found = {name: values.get(var) for name, var in self.options["template_ids"].items()}
            return found if all(v is not None for v in found.values()) else None
        return values.get(self.options["template_id_var"])

    def replace_instances(self, job: StageJob, binary: str) -> list[str]:
        """The instances in the state of the resources `replace` lists (the resource itself, or resource[key])."""
        return [a for a in self.state_addresses(job, binary) if self._replaceable(a)]

    def _replaceable(self, address: str) -> bool:
        return any(address == r or address.startswith(r + "[") for r in self.options["replace"] or [])

    def state_addresses(self, job: StageJob, binary: str) -> list[str]:
        result = self.step(job, [binary, "state", "list"], f"{self.binary_name} state list", capture=True,
                           check=False)
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]


class TofuStage(TerraformStage):
    kind = "tofu"
    DEFAULT_BINARY = "tofu"

    def tools(self) -> list[ToolSpec]:
        specs = super().tools()
        specs[0] = ToolSpec(self.binary_name, ("version",), r"v(\d+\.\d+\.\d+)", "1.6.0",
                            "https://opentofu.org/docs/intro/install/", "binary")
        return specs


_NODE_KEYS = ("node", "node_name", "target_node")


def _dicts(value: Any) -> list[dict]:
    """value and every mapping inside it (a variable per VM: vms = {name: {node: ...}})."""
    if isinstance(value, dict):
        return [value, *(d for item in value.values() for d in _dicts(item))]
    if isinstance(value, list):
        return [d for item in value for d in _dicts(item)]
    return []


_PLAN = r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy"
_REMADE = r"(?m)^\s*# (\S+) (?:will be created|must be replaced)"


def _owned_by(addresses: list[str], hosts: list[str]) -> list[str]:
    """The instance addresses that belong to these hosts: keyed by host name, or for one host the only
    instance there is when it has no name key (a single resource, or count)."""
    owned = [a for a in addresses if any(f'["{host}"]' in a for host in hosts)]
    unnamed = len(addresses) == 1 and len(hosts) == 1 and '["' not in addresses[0]
    return owned or (addresses if unnamed else [])


_RESOURCE = (r"^\s*# (\S+) (will be created|will be updated in-place|must be replaced|will be destroyed"
             r"|will be read during apply)")
_ACTIONS = {"will be created": "+", "will be updated in-place": "~", "must be replaced": "-/+",
            "will be destroyed": "-"}
_OUTPUT = r"^\s*([+~-]) (\w+)\s*="


def plan_changes(output: str) -> list[str]:
    """One line per resource and output that `terraform plan` says it would change: "+ address", "~ output.x".
    (Read from its text, not `show -json`, whose output would carry the variables' values into the log.)"""
    changes, outputs = [], False
    for line in output.splitlines():
        found = re.match(_RESOURCE, line)
        if found and found.group(2) in _ACTIONS:
            changes.append(f"{_ACTIONS[found.group(2)]} {found.group(1)}")
        elif line.startswith("Changes to Outputs:"):
            outputs = True
        elif outputs and (output := re.match(_OUTPUT, line)):
            changes.append(f"{output.group(1)} output.{output.group(2)}")
        elif outputs and line and not line.startswith(" "):
            outputs = False
    return changes


def _plan_summary(output: str) -> str:
    if "No changes." in output:
        return "no changes"
    found = re.search(_PLAN, output)
    if found:
        return f"{found.group(1)} to add, {found.group(2)} to change, {found.group(3)} to destroy"
    return "changes to outputs"
