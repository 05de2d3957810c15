"""The request id of the request being served, for anything that reports on it (logs, problems)."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

#: ASGI scope key where the rate limiter leaves ``(token, principal)`` once it has verified the
#: bearer token, so ``serving.deps.current_user`` does not verify the same token again
PRINCIPAL_KEY = "hems.principal"
