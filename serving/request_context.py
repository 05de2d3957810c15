"""The request id of the request being served, for anything that reports on it (logs, problems)."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
