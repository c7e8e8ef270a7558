"""Expected failures. Each ends the run with one clear line and a non-zero exit, never a traceback."""


class PipelineError(Exception):
    """An expected failure; str() is the one line shown to the user."""


class ConfigError(PipelineError):
    """pipeline.yaml (or a value it refers to) is wrong."""


class HandoffError(PipelineError):
    """A handoff file is missing, malformed or fails its checks."""


class DamagedHandoff(HandoffError):
    """A handoff file exists but cannot be read or fails its checks: damage, not "never made"."""

    def __init__(self, message: str, path, problem: str):
        super().__init__(message)
        self.path = path
        self.problem = problem


class ToolError(PipelineError):
    """A tool (packer, terraform, ansible-playbook, ...) failed or is missing.

    tail holds the last lines of its output, log the path of the full log.
    """

    def __init__(self, message: str, tail: list[str] | None = None, log: str | None = None):
        super().__init__(message)
        self.tail = tail or []
        self.log = log


class ProxmoxError(PipelineError):
    """A Proxmox API call failed after its retries. refused: the API turned the credentials down (401/403)."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class LockedError(PipelineError):
    """Another process holds the environment's lock."""


class CheckFailed(PipelineError):
    """A validation check found a problem."""


class StateError(PipelineError):
    """The environment's shared state cannot be read or written (its database is unreachable, or another writer
    moved it)."""


class Unsupported(PipelineError):
    """A stage kind does not implement a verb (destroy, rollback, restore): nothing was done."""


class FileError(PipelineError, OSError):
    """A file of the pipeline's own (the state directory, a log, the console) cannot be read or written. Also an
    OSError, so code that gives up quietly on a cache still does; str() is the one line, naming the path and the
    errno's meaning: ``.pipeline/lab/history.jsonl: cannot write: No space left on device``."""

    def __init__(self, message: str, errno: int | None, path: str):
        import os

        OSError.__init__(self, errno, os.strerror(errno) if errno else message, path)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.message, self.errno, self.filename)
