"""Gateway duties as ASGI middleware: request ids, JSON access logs, metrics, rate limiting.

Plain ASGI classes rather than ``BaseHTTPMiddleware``: they add no task or body buffering per
request, which matters at the latency the dashboard targets (p99 ≤ 25 ms).

Order, outermost first (see :func:`install`): request context (id, log, metrics, last-resort
500) → CORS → rate limit → the app. So a 429 is logged, counted, carries the request id and
CORS headers, and a preflight ``OPTIONS`` never spends a caller's quota. Inside them all,
:mod:`serving.fast_path` answers cached dashboards without FastAPI's routing.
"""

from __future__ import annotations

import datetime as dt
import logging
import logging.handlers
import os
import queue
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hems.settings import Settings
from serving.metrics import UNMATCHED, ApiMetrics
from serving.problems import PROBLEM_JSON
from serving.rate_limit import RateLimiter, rate_limiter_for, retry_after_header
from serving.request_context import PRINCIPAL_KEY, request_id_var
from serving.security.tokens import InvalidToken, decode_access_token

access_log = logging.getLogger("hems.api.access")
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: paths probes and scrapers call: never rate limited
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: scope key where the rate limiter leaves the caller's identity for the access log
WHO_KEY = "hems.who"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _problem_body(status: int, title: str, detail: str, path: str, **extra: Any) -> bytes:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": path}
    return orjson.dumps({**body, **extra})


class RequestContextMiddleware:
    """Request id (incoming ``X-Request-ID`` if sane, else a new one) echoed in the response,
    one JSON log line per request, the latency histogram, and a problem+json 500 for crashes."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        # 32 random hex digits, like uuid4().hex without building a UUID object (a measurable cost here)
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 0
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "websocket.accept":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request %s)", request_id)
            if scope["type"] != "http" or status:
                status = status or 500
                raise
            status = 500
            body = _problem_body(
                500,
                "Internal Server Error",
                "the server failed; quote the request id",
                scope["path"],
                request_id=request_id,
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", PROBLEM_JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                        header,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            request_id_var.reset(token)
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            if scope["type"] == "http":
                self.metrics.observe(scope["method"], template, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    orjson.dumps(
                        {
                            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                            "event": "request",
                            "request_id": request_id,
                            "method": scope.get("method", "WS"),
                            "path": scope["path"],  # never the query string: it may carry a token
                            "route": template,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                            "client": (scope.get("client") or ("-",))[0],
                            "who": scope.get(WHO_KEY),
                        }
                    ).decode()
                )


class RateLimitMiddleware:
    """``limit`` requests per window per user (from a valid bearer token) or per client IP.

    The Redis limiter falls back to in-process windows when Redis fails; should a limiter raise
    anyway, the request goes through (counted in ``hems_api_rate_limit_errors``): the gateway
    must not turn a Redis outage into a total one.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, settings: Settings, metrics: ApiMetrics) -> None:
        self.app, self.limiter, self.settings, self.metrics = app, limiter, settings, metrics

    def identify(self, scope: Scope) -> str:
        auth = _header(scope, b"authorization")
        if auth and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            try:
                principal = decode_access_token(token, self.settings)
            except InvalidToken:
                pass  # a bad token counts against the address it came from
            else:
                scope[PRINCIPAL_KEY] = (token, principal)  # verified once per request
                return f"user:{principal.user_id}"
        return f"ip:{(scope.get('client') or ('unknown',))[0]}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        who = scope[WHO_KEY] = self.identify(scope)
        try:
            decision = await self.limiter.hit(who)
        except Exception as exc:  # Redis down or slow: fail open, loudly
            self.metrics.rate_limit_errors.inc()
            log.warning("rate limit check failed, request let through: %s", exc)
            await self.app(scope, receive, send)
            return
        limit_headers = [
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        ]
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            retry = retry_after_header(decision.retry_after_s)
            window_min = self.limiter.window_s / 60
            body = _problem_body(
                429,
                "Too Many Requests",
                f"more than {decision.limit} requests in {window_min:g} minutes; retry after {retry} s",
                scope["path"],
                request_id=request_id_var.get(),
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", PROBLEM_JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", retry.encode()),
                        *limit_headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_quota(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *limit_headers]
            await send(message)

        await self.app(scope, receive, send_with_quota)


class _QueueHandler(logging.handlers.QueueHandler):
    """Queues access-log records as they are: the message is already the finished JSON line (no
    arguments, no exception), so the copy and re-format the base class makes are not needed."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.args or record.exc_info or record.stack_info or not isinstance(record.msg, str):
            return super().prepare(record)
        record.message = record.msg
        return record


def start_log_writer() -> Callable[[], None] | None:
    """Write the access log (one JSON object a line) to stderr from a thread, when nothing else
    handles it (uvicorn configures only its own loggers). The request path only puts the record
    on a queue; the thread writes it. Returns the function that stops it
    (flushing what is queued), or None when the log was already handled."""
    if access_log.handlers or logging.getLogger().handlers:
        return None
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _QueueHandler(records)
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(records, writer)
    access_log.addHandler(handler)
    if access_log.level == logging.NOTSET:
        access_log.setLevel(logging.INFO)
    listener.start()

    def stop() -> None:
        access_log.removeHandler(handler)
        listener.stop()

    return stop


def install(app: FastAPI, settings: Settings, limiter: RateLimiter | None = None) -> ApiMetrics:
    """Add the gateway middleware to ``app`` in the right order; returns the app's metrics."""
    metrics = ApiMetrics()
    limiter = limiter or rate_limiter_for(settings)
    app.state.metrics, app.state.rate_limiter = metrics, limiter
    metrics.rate_limit_redis_errors.set_function(lambda: float(getattr(limiter, "errors", 0)))
    # add_middleware: the last one added is the outermost
    app.add_middleware(RateLimitMiddleware, limiter=limiter, settings=settings, metrics=metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[REQUEST_ID_HEADER, "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        allow_credentials=True,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return metrics
