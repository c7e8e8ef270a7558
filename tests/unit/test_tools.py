"""The tool runner: logs, masks secrets, keeps the tail, times out, and retries only retryable failures."""

import pytest

from proxpipe.base import secrets
from proxpipe.base.errors import ToolError
from proxpipe.base.retry import Backoff
from proxpipe.domain.config import Retry
from proxpipe.domain.toolrunner import ToolRunner


def flaky_tool(tmp_path, failures: int, message: str):
    """A tool that fails `failures` times with `message`, then succeeds."""
    counter = tmp_path / "count"
    script = tmp_path / "tool.sh"
    script.write_text(f"""#!/bin/sh
n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}
if [ $n -le {failures} ]; then echo "{message}" >&2; exit 1; fi
echo done after $n
""")
    script.chmod(0o755)
    return str(script), counter


def runner(tmp_path, patterns=("state lock",), attempts=3, timeout=30):
    return ToolRunner(tmp_path / "logs" / "stage.log", tmp_path, {}, timeout, Retry(attempts, 60, patterns), "stage")


def test_a_retryable_failure_is_retried_and_logged(tmp_path):
    tool, counter = flaky_tool(tmp_path, 2, "Error acquiring the state lock")
    result = runner(tmp_path).run([tool], "terraform apply")
    assert result.returncode == 0 and result.attempts == 3 and counter.read_text().strip() == "3"
    log = (tmp_path / "logs" / "stage.log").read_text()
    assert log.count("retrying in") == 2 and "output matched 'state lock'" in log


def test_a_non_retryable_failure_fails_at_once_with_the_tools_message(tmp_path):
    tool, counter = flaky_tool(tmp_path, 5, "Error: Unsupported argument")
    with pytest.raises(ToolError) as caught:
        runner(tmp_path).run([tool], "terraform plan")
    assert counter.read_text().strip() == "1"
    assert str(caught.value) == "terraform plan failed (exit 1): Error: Unsupported argument"
    assert caught.value.tail == ["Error: Unsupported argument"] and caught.value.log.endswith("stage.log")


def test_retries_are_bounded(tmp_path):
    tool, counter = flaky_tool(tmp_path, 10, "Error acquiring the state lock")
    with pytest.raises(ToolError, match="after 3 attempts"):
        runner(tmp_path).run([tool], "terraform apply")
    assert counter.read_text().strip() == "3"


def test_secrets_in_tool_output_are_masked(tmp_path):
    secrets.register("Sup3r-Secret-Token-Value")
    script = tmp_path / "echo.sh"
    script.write_text("#!/bin/sh\necho token=Sup3r-Secret-Token-Value\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(ToolError) as caught:
        runner(tmp_path).run([str(script)], "packer build")
    assert "Sup3r" not in str(caught.value) and caught.value.tail == ["token=***"]
    assert "Sup3r" not in (tmp_path / "logs" / "stage.log").read_text()


def test_a_hanging_tool_is_stopped_at_its_timeout(tmp_path):
    script = tmp_path / "hang.sh"
    script.write_text("#!/bin/sh\necho started\nsleep 60\n")
    script.chmod(0o755)
    with pytest.raises(ToolError, match="timed out after 1s and was stopped"):
        runner(tmp_path, timeout=1).run([str(script)], "ansible-playbook")


def test_a_missing_program(tmp_path):
    with pytest.raises(ToolError, match="cannot start /no/such/tool"):
        runner(tmp_path).run(["/no/such/tool"], "packer build")


def test_backoff_is_bounded_in_attempts_and_time():
    backoff = Backoff(attempts=4, max_seconds=60, base=1, cap=3)
    delays = [backoff.next_delay() for _ in range(5)]
    assert delays[3:] == [None, None] and all(0 < d <= 3 for d in delays[:3])
    assert Backoff(attempts=10, max_seconds=0).next_delay() is None
