"""Lasting Proxmox API failures fail at once (issue 12): a host name that does not resolve, a TLS certificate that
does not verify. One line naming the cause, no retry, no back-off sleep, through both API clients (the standard
library's and proxmoxer's) and on the command line. Passing failures are still retried (test_reliability)."""

import certifi
import pytest

from proxpipe.base.errors import ProxmoxError
from proxpipe.base.secrets import Secret
from proxpipe.domain import proxmox
from proxpipe.domain.config import ProxmoxConfig, Retry
from tests.labproject import LabProject

pytestmark = pytest.mark.e2e

NOWHERE = "https://pve.proxpipe-test.invalid:8006"  # .invalid never resolves (RFC 2606)
CAUSES = {"dns": "the host name does not resolve", "tls": "its TLS certificate does not verify"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    project = LabProject(tmp_path_factory.mktemp("api") / "project")
    project.ok("doctor")  # starts the lab's API
    yield project
    project.stop()


def where(case, lab):
    """(url, CA file): nowhere, or the lab's API checked against the public CAs, which did not sign its cert."""
    return (NOWHERE, None) if case == "dns" else (lab.env["proxmox"]["url"], certifi.where())


@pytest.mark.parametrize("client", ["light", "proxmoxer"])
@pytest.mark.parametrize("case", ["dns", "tls"])
def test_a_lasting_failure_is_not_retried(lab, case, client, monkeypatch):
    url, ca_file = where(case, lab)
    cfg = ProxmoxConfig(url, "pve1", "root@pam!pipeline", Secret("lab-only-token", "T", "test"), None, None,
                        ca_file, True, 5, Retry(6, 60))
    notes, sleeps = [], []
    monkeypatch.setattr(proxmox.time, "sleep", sleeps.append)
    api = proxmox.Proxmox(cfg, notify=notes.append, prefer_light=client == "light")
    with pytest.raises(ProxmoxError) as caught:
        api.vms() if client == "light" else api.version()
    message = str(caught.value)
    assert message.startswith(f"Proxmox API {url} GET /") and CAUSES[case] in message and "\n" not in message
    assert "attempts" not in message and notes == [] and sleeps == []  # tried once


@pytest.mark.parametrize("case", ["dns", "tls"])
def test_on_the_command_line(lab, case):
    url, ca_file = where(case, lab)
    remote = {key: value for key, value in lab.env.items() if key != "lab"}
    remote["proxmox"] = {**lab.env["proxmox"], "url": url, **({"ca_file": ca_file} if ca_file else {})}
    lab.config["environments"]["remote"] = remote
    lab.write_config()
    result = lab.doit("build", "env=remote")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output and "retrying" not in output, output
    failed = [line for line in output.splitlines() if "✗" in line]
    assert len(failed) == 1 and f"Proxmox API {url} GET /cluster/resources failed: {CAUSES[case]}" in failed[0]
