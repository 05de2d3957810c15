"""Errors that reach an operator as one clear line (the CLI prints ``str(exc)`` and exits 1)."""

from __future__ import annotations


class HemsError(RuntimeError):
    """Base class: the message is complete and meant for a person."""


class ServiceUnavailable(HemsError):
    """A service could not be reached: names the service, its address and the fix."""

    def __init__(self, service: str, address: str, fix: str, cause: object | None = None) -> None:
        self.service, self.address, self.fix = service, address, fix
        detail = f" ({cause})" if cause else ""
        super().__init__(f"{service} is not reachable at {address}{detail}: {fix}")
