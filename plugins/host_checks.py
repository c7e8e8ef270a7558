"""Built-in checks of the hosts: each accepts SSH with the inventory's user and key, and answers Ansible's ping."""

from __future__ import annotations

import re
import tempfile

from proxpipe.api import inventory
from proxpipe.api.checks import Check, Skip, failed, passed
from proxpipe.api.hookspecs import hookimpl


def ssh(ctx):
    """Every inventory host accepts SSH with its user and key within the configured timeout."""
    from proxpipe.api import sshwait  # sockets and processes: only when validate runs

    timeout = ctx.settings.ssh_timeout
    for host in ctx.hosts().values():
        problem = sshwait.ssh_banner(host, timeout)
        if problem is None:
            code, output = sshwait.run_ssh(host, "true", timeout, limit=timeout + 10)
            if code != 0:
                problem = f"login as {host.user or 'the default user'} failed: {output.splitlines()[-1:] or code}"
        label = f"{host.name} ({host.address}:{host.port})"
        yield failed(label, problem) if problem else passed(label, f"logged in as {host.user or 'default user'}")


_LINE = r"^(\S+) \| (SUCCESS|UNREACHABLE!|FAILED!)"


def ansible_ping(ctx):
    """`ansible -m ping` against the inventory's validation group (the seed's jump_hosts)."""
    stage = ctx.stage()
    group = ctx.settings.group
    hosts = inventory.in_group(ctx.hosts(), group)
    if not hosts:
        raise Skip(f"group {group!r} has no host in the inventory (set validate.group in pipeline.yaml)")
    playbook = stage.options["binary"]
    binary = playbook[: -len("-playbook")] if playbook.endswith("ansible-playbook") else "ansible"
    from proxpipe.api import toolrunner

    env = stage.tool_env(len(hosts))
    _inventory, inventory_file = ctx.inventory()
    with tempfile.TemporaryDirectory() as scratch:
        # A scratch control path: a persisted connection from the last deploy must not answer for a dead sshd.
        env = {**env, "ANSIBLE_LOCAL_TEMP": scratch, "ANSIBLE_SSH_CONTROL_PATH_DIR": scratch}
        runner = toolrunner.ToolRunner(ctx.log_dir / "ansible-ping.log", stage.dir, env, 120, stage.config.retry,
                                       stage.config.where, stage.config.stop_grace, stage.INTERRUPT_AGAIN)
        result = runner.run([binary, "-i", str(inventory_file), group, "-m", "ansible.builtin.ping",
                             "-o", "-T", str(int(ctx.settings.ssh_timeout))], "ansible ping", check=False,
                            retryable=False, env={"ANSIBLE_STDOUT_CALLBACK": "oneline"})
    seen = {}
    for line in result.output.splitlines():
        found = re.match(_LINE, line)
        if found:
            seen[found.group(1)] = (found.group(2), line.split("|", 2)[-1].strip())
    for name in hosts:
        status, detail = seen.get(name, ("missing", "no answer in ansible's output"))
        if status == "SUCCESS":
            yield passed(name, "pong")
        else:
            yield failed(name, f"{status.rstrip('!').lower()}: {detail[:200]}")


@hookimpl
def register_checks(register):
    register(Check("ssh", "every inventory host accepts SSH with the inventory's user and key", "configure", ssh))
    register(Check("ansible-ping", "`ansible -m ping` answers for every host of the validation group",
                   "configure", ansible_ping, ("ansible",)))
