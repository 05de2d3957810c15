"""The MQTT ingest worker: at-least-once from the broker into the raw store.

How the guarantee is kept (DESIGN §6):

* MQTT 3.1.1 persistent session (``clean_session=False``, stable client id), QoS 1, so the broker
  queues messages while the worker is down and re-sends unacknowledged ones after a reconnect;
* paho's ``manual_ack``: the network callback only enqueues; a batcher thread batches by size and
  time and prepares (parses, validates) each batch; a writer thread takes the prepared batches in
  order through a one-slot hand-off, so batch N+1 is prepared while batch N is written, and sends
  each PUBACK only once its batch is durable — written to the raw store (and rejects to
  quarantine), or to the on-disk spool when a store is down;
* an ack is only sent on the connection the message came in on: after a reconnect the broker
  re-sends what was not acknowledged, and acking an old packet id on a new connection could ack a
  different message;
* when the spool is full the worker stops acknowledging; the broker holds the messages.

Status topics (``online``/``offline``, a device's last will) go to the ``on_status`` hook.
Scale out by running N workers with ``shared_group`` set: ``$share/<group>/...`` splits the load.
Scale in with :func:`retire_worker`: Mosquitto keeps handing a stopped member of a shared group its
share of the messages (queued in its persistent session), so a worker taken away for good must
unsubscribe, drain that queue and end its session, or its share waits for it until the session
expires.
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import polars as pl
from paho.mqtt.enums import CallbackAPIVersion

from hems.errors import HemsError, ServiceUnavailable
from hems.settings import Settings, get_settings
from ingest.metrics import IngestMetrics
from ingest.pipeline import IngestPipeline, IngestSettings, Message, Prepared
from ingest.spool import Replayer, Spool

log = logging.getLogger(__name__)

StatusHook = Callable[[str, str, str, datetime], None]
STATUSES = frozenset({"online", "offline"})


@dataclass
class WorkerStats:
    received: int = 0
    acked: int = 0
    batches: int = 0
    written: int = 0
    rejected: int = 0
    spooled_batches: int = 0
    status_messages: int = 0
    connects: int = 0


#: a message waiting for its batch: (topic, payload, packet id, qos, arrival on time.monotonic(),
#: the connection epoch it arrived on)
_Item = tuple[str, bytes, int, int, float, int]


@dataclass(slots=True)
class _Batch:
    """Telemetry of a batch as parallel columns (arrival as epoch seconds)."""

    topics: list[str]
    payloads: list[bytes]
    received_s: list[float]

    def messages(self) -> list[Message]:
        """As Message objects (the spool and the retry path take those)."""
        return [
            Message(t, p, datetime.fromtimestamp(r, UTC))
            for t, p, r in zip(self.topics, self.payloads, self.received_s, strict=True)
        ]


#: a batch on its way from the batcher to the writer: (all items, telemetry, prepared telemetry)
_Job = tuple[list[_Item], _Batch, Prepared | None]

#: PUBACK = 0x40, remaining length 2, packet id (big-endian): one uint32 per acknowledged message
_PUBACK_BASE = 0x40020000


class _BufferedSocket:
    """The broker socket read in 64 KiB chunks.

    paho reads each packet with two or three ``recv`` calls (the command byte, the length bytes,
    the rest) after a ``select`` per packet: at 20k messages/s those syscalls were most of the
    network thread's time.  This wrapper serves the small reads from memory; ``pending()`` (which
    paho's loop asks of TLS sockets) makes paho skip the wait while bytes are buffered, and
    :meth:`_FastClient.loop_read` handles every buffered packet in one go.  Everything else is the
    wrapped socket's (TLS and WebSocket transports included)."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            data = self._sock.recv(max(n, 65536))  # BlockingIOError when nothing is there
            if len(data) <= n:
                self._buf, self._pos = b"", 0
                return data
            self._buf, self._pos = data, n
            return data[:n]
        end = pos + n
        self._pos = end
        return buf[pos:end]

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def take_publishes(self, hook: FastMessageHook) -> int:
        """Hand every complete QoS 0/1 PUBLISH at the front of the buffer to ``hook``; stop at the
        first other packet (or a partial one), which paho's own reader then takes."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        now = time.monotonic()
        n = 0
        while pos + 2 <= end:
            header = buf[pos]
            qos = (header >> 1) & 3
            if header >> 4 != 3 or qos > 1:  # not a PUBLISH, or QoS 2: paho's path
                break
            length, mult, i = 0, 1, pos + 1
            while i < end and i - pos <= 4:
                b = buf[i]
                length += (b & 127) * mult
                mult <<= 7
                i += 1
                if not b & 128:
                    break
            else:
                break  # length incomplete (or malformed: paho reports it)
            stop = i + length
            if stop > end or length < 2:
                break
            tlen = (buf[i] << 8) | buf[i + 1]
            p = i + 2 + tlen
            if qos:
                p += 2
            if tlen == 0 or p > stop:
                break  # malformed: paho reports it
            mid = ((buf[p - 2] << 8) | buf[p - 1]) if qos else 0
            hook(buf[i + 2 : i + 2 + tlen].decode("utf-8", "replace"), buf[p:stop], mid, qos, now)
            pos = stop
            n += 1
        self._pos = pos
        return n

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


#: fast receive hook: (topic, payload, packet id, qos, arrival on time.monotonic())
FastMessageHook = Callable[[str, bytes, int, int, float], None]


class _FastClient(mqtt.Client):
    """paho's client with a lean receive path and acknowledgements sent as one write per batch.

    Measured on the worker at 20k messages/s, paho spent ~25 µs of Python per QoS 1 message: a
    ``select`` and three ``recv`` calls, an ``MQTTMessage`` with its own ``threading.Condition``,
    topic-filter matching, a lock around the callback; and one ``ack`` is a queued packet, a wake-up
    byte and a ``send``.  This subclass keeps paho for everything else (connect, persistent session,
    subscribe, keepalive, reconnect, QoS 2, MQTT 5) and changes three things:

    * reads go through :class:`_BufferedSocket` and :meth:`loop_read` handles every buffered packet;
    * with ``on_fast_message`` set, an MQTT 3.1.1 QoS 0/1 PUBLISH is decoded here (the same fields
      paho's ``decode_publish`` takes) and handed to it as plain values; anything else goes through
      paho's own ``_handle_publish`` (and ``on_message``);
    * :meth:`ack_many` queues a batch's PUBACKs as one buffer: the bytes on the wire are exactly
      those of one ``ack(mid, 1)`` per message, in the same order.

    It overrides paho internals (``_create_socket``, ``_handle_publish``, ``_packet_queue``);
    paho-mqtt is pinned in uv.lock and tests/ingest run the real broker through this class.
    """

    on_fast_message: FastMessageHook | None = None
    _can_batch_acks = hasattr(mqtt.Client, "_packet_queue")

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        hook = self.on_fast_message
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if hook is None or qos == 2 or self._protocol == mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        tlen = (packet[0] << 8) | packet[1] if len(packet) >= 2 else 0
        pos = 2 + tlen + (2 if qos else 0)
        if tlen == 0 or len(packet) < pos:
            return super()._handle_publish()  # paho's own error for a malformed packet
        mid = (packet[pos - 2] << 8) | packet[pos - 1] if qos else 0
        topic = packet[2 : 2 + tlen].decode("utf-8", "replace")  # a broker forwards only UTF-8
        hook(topic, bytes(packet[pos:]), mid, qos, time.monotonic())
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return mqtt.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho reads one packet (and fills the buffer); then every buffered PUBLISH is handled here
        and any other packet by paho, until the buffer is empty."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        hook = self.on_fast_message
        fast = hook is not None and self._manual_ack and self._protocol != mqtt.MQTTv5
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(sock, _BufferedSocket) and sock.buffered():
            if fast and self._in_packet["command"] == 0 and sock.take_publishes(hook):  # type: ignore[arg-type]
                with self._msgtime_mutex:
                    self._last_bytes_received = time.monotonic()
                if not sock.buffered():
                    break
            rc = super().loop_read(max_packets)
            if self._sock is not sock:
                break
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages (manual-ack mode), in this order."""
        if not mids:
            return
        if not self._can_batch_acks:
            for mid in mids:
                self.ack(mid, 1)
            return
        packet = struct.pack(f"!{len(mids)}I", *[_PUBACK_BASE | mid for mid in mids])
        self._packet_queue(mqtt.PUBACK, packet, 0, 0)


class MqttWorker:
    """Subscribe, batch, write, acknowledge. :meth:`start` then :meth:`stop` (or :func:`run_worker`)."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        spool: Spool,
        *,
        settings: Settings | None = None,
        ingest_settings: IngestSettings | None = None,
        metrics: IngestMetrics | None = None,
        on_status: StatusHook | None = None,
        client_id: str | None = None,
        retire: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        self.ingest = ingest_settings or pipeline.ingest
        self.pipeline = pipeline
        self.spool = spool
        self.metrics = metrics
        self.on_status = on_status
        self.stats = WorkerStats()
        m = self.settings.mqtt
        self.prefix = m.topic_prefix.strip("/")
        share = f"$share/{self.ingest.shared_group}/" if self.ingest.shared_group else ""
        self.subscriptions: list[tuple[str, int]] = [
            (f"{share}{self.prefix}/+/+/telemetry", m.qos),
            (f"{share}{self.prefix}/+/+/status", m.qos),
        ]
        self.client_id = client_id or m.client_id
        #: retiring: on connect, unsubscribe instead of subscribing; the session's queue still comes
        self.retire = retire
        self._unsubscribed = threading.Event()
        #: whether the broker still held this client id's session when the worker first connected
        self.session_present = False
        # per connection epoch: messages that arrived (written by the network thread only) and that
        # were acknowledged (by the writer thread only); the last arrival, ack or (re)connect
        self._arrived: dict[int, int] = {0: 0}
        self._acked: dict[int, int] = {}
        self._last_activity = time.monotonic()
        self.client = _FastClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if m.username:
            self.client.username_pw_set(m.username, m.password.get_secret_value() or None)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_message = self._on_message  # paho's path: QoS 2 (and MQTT 5)
        self.client.on_fast_message = self._on_fast_message
        self._queue: deque[_Item] = deque()
        self._epoch = 0
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._batcher = threading.Thread(target=self._batch_loop, name="ingest-batcher", daemon=True)
        # one prepared batch waits while the previous one is written; None tells the writer to stop
        self._handoff: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self.replayer = Replayer(spool, self._replay, on_replayed=self._replayed)
        self._down_logged = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> MqttWorker:
        m = self.settings.mqtt
        self.client.connect_async(m.host, m.port, keepalive=30)
        self.client.loop_start()
        self._writer.start()
        self._batcher.start()
        self.replayer.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued batch (acknowledging it), then disconnect; later messages are re-sent."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._batcher.join(timeout)
        self._writer.join(max(0.0, deadline - time.monotonic()))
        self.replayer.stop()
        self.client.disconnect()
        self.client.loop_stop()

    # --- network thread: enqueue only --------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        self._epoch += 1
        self._arrived[self._epoch] = 0
        self._last_activity = time.monotonic()
        self.stats.connects += 1
        if self.stats.connects == 1:
            self.session_present = bool(getattr(flags, "session_present", False))
        if self.retire:
            client.unsubscribe([t for t, _ in self.subscriptions])
        else:
            client.subscribe(self.subscriptions)
        self._connected.set()
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            getattr(flags, "session_present", "?"),
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self._connected.clear()
        self._unsubscribed.clear()  # a retiring worker unsubscribes again on the next connection
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        log.info("unsubscribed (retiring): no new messages will be assigned to %s", self.client_id)
        self._unsubscribed.set()

    def _on_fast_message(self, topic: str, payload: bytes, mid: int, qos: int, at: float) -> None:
        q = self._queue
        epoch = self._epoch
        q.append((topic, payload, mid, qos, at, epoch))
        self._arrived[epoch] += 1
        self._last_activity = at
        if len(q) > self.ingest.queue_max:  # backpressure: the broker's in-flight window is too large
            while len(q) > self.ingest.queue_max and not self._stop.is_set():
                time.sleep(0.01)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_fast_message(msg.topic, msg.payload, msg.mid, msg.qos, msg.timestamp)

    # --- batcher thread -------------------------------------------------------------------------
    def _take(self) -> list[_Item]:
        """Up to batch_size messages (or batch_max_bytes of payload), waiting at most batch_max_wait_s."""
        q, size, max_bytes = self._queue, self.ingest.batch_size, self.ingest.batch_max_bytes
        deadline = time.monotonic() + self.ingest.batch_max_wait_s
        while len(q) < size and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.005)
        out: list[_Item] = []
        total = 0
        while q and len(out) < size and total < max_bytes:
            it = q.popleft()
            out.append(it)
            total += len(it[1])
        return out

    def _batch_loop(self) -> None:
        """Take and prepare batches; hand them to the writer in arrival order."""
        while True:
            stopping = self._stop.is_set()
            items = self._take()
            if items:
                try:
                    self._handoff.put(self._prepare(items))
                except Exception:  # never die on a batch; it stays unacknowledged and is re-sent
                    log.exception("ingest batch failed; its messages will be re-delivered")
            if self.metrics is not None:
                self.metrics.queue_depth.set(len(self._queue))
            if stopping and not items:
                self._handoff.put(None)
                return

    def _write_loop(self) -> None:
        """Make each prepared batch durable, then acknowledge it; one batch at a time, in order."""
        while True:
            job = self._handoff.get()
            if job is None:
                return
            try:
                self._handle(job)
            except Exception:  # never die on a batch; it stays unacknowledged and is re-sent
                log.exception("ingest batch failed; its messages will be re-delivered")

    def _prepare(self, items: list[_Item]) -> _Job:
        # arrival is stamped with time.monotonic(); one offset makes it wall-clock time
        offset = time.time() - time.monotonic()
        telemetry = items
        if any(it[0].endswith("/status") for it in items):
            telemetry = []
            for it in items:
                if it[0].endswith("/status"):
                    self._status(it[0], it[1], datetime.fromtimestamp(it[4] + offset, UTC))
                else:
                    telemetry.append(it)
        batch = _Batch(
            [it[0] for it in telemetry], [it[1] for it in telemetry], [it[4] + offset for it in telemetry]
        )
        self.stats.received += len(items)
        if self.metrics is not None:
            self.metrics.received.labels(kind="telemetry").inc(len(telemetry))
            self.metrics.received.labels(kind="status").inc(len(items) - len(telemetry))
        prepared: Prepared | None = None
        if telemetry:
            try:
                prepared = self.pipeline.prepare_columns(batch.topics, batch.payloads, batch.received_s)
            except Exception:  # the writer runs the whole pipeline again (and spools on failure)
                log.exception("preparing a batch failed; retrying it in the writer")
        return items, batch, prepared

    def _handle(self, job: _Job) -> None:
        items, telemetry, prepared = job
        if telemetry.topics and not self._persist(telemetry, prepared):
            return  # stopping while the spool is full: not acknowledged, the broker re-sends
        self.stats.batches += 1
        self._ack(items)

    # --- retiring ----------------------------------------------------------------------------
    def all_acked(self) -> bool:
        """Every message that came on the current connection is durable and acknowledged (those of
        an earlier connection were not acked there: the broker re-sends them on this one)."""
        e = self._epoch
        return self._acked.get(e, 0) >= self._arrived.get(e, 0)

    def drained(self, idle_s: float) -> bool:
        """Connected and unsubscribed on this connection, every message that came acknowledged,
        nothing come for ``idle_s`` since the last message *or acknowledgement* (the broker sends
        at most ``max_inflight_messages`` unacknowledged and refills the window as acks come back:
        a window with room and nothing sent for ``idle_s`` means its queue for this client is
        empty), and the spool replayed."""
        return (
            self._connected.is_set()
            and self._unsubscribed.is_set()
            and self.all_acked()
            and time.monotonic() - self._last_activity >= idle_s
            and len(self.spool) == 0
        )

    def _persist(self, batch: _Batch, prepared: Prepared | None = None) -> bool:
        """Make a batch durable: write it, or spool it; wait while the spool is full."""
        messages: list[Message] | None = None
        while True:
            with self.spool.lock:
                direct = len(self.spool) == 0
                if not direct:
                    messages = messages or batch.messages()
                    if self._spool(messages):
                        return True
            if direct:
                try:
                    if prepared is not None:
                        result = self.pipeline.process_prepared(prepared, "mqtt")
                    else:
                        messages = messages or batch.messages()
                        result = self.pipeline.process_messages(messages)
                    self.stats.written += result.written
                    self.stats.rejected += result.rejected
                    if self._down_logged:
                        log.info("raw store reachable again")
                        self._down_logged = False
                    return True
                except ServiceUnavailable as exc:
                    if not self._down_logged:
                        log.warning("store unavailable, spooling batches: %s", exc)
                        self._down_logged = True
                except Exception:
                    log.exception("unexpected failure writing a batch; spooling it for replay")
                with self.spool.lock:
                    messages = messages or batch.messages()
                    if self._spool(messages):
                        return True
            if self._stop.is_set():
                return False
            self._stop.wait(0.5)

    def _spool(self, messages: list[Message]) -> bool:
        ok = self.spool.append(messages)
        if ok:
            self.stats.spooled_batches += 1
            self.replayer.wake()
            if self.metrics is not None:
                self.metrics.spooled.inc()
                d = self.spool.depth()
                self.metrics.set_spool(d.files, d.bytes)
        return ok

    def _replay(self, messages: list[Message]) -> object:
        result = self.pipeline.process_messages(messages)
        self.stats.written += result.written
        self.stats.rejected += result.rejected
        return result

    def _replayed(self, n: int) -> None:
        if self.metrics is not None:
            d = self.spool.depth()
            self.metrics.set_spool(d.files, d.bytes)

    def _ack(self, items: list[_Item]) -> None:
        epoch = self._epoch
        current = [it for it in items if it[5] == epoch]  # the rest came on an earlier connection
        mids = [it[2] for it in current if it[3] == 1]
        self.client.ack_many(mids)
        acked = len(mids)
        if self.settings.mqtt.qos > 1:  # QoS 2 subscriptions: PUBCOMP one by one
            for it in current:
                if it[3] == 2:
                    self.client.ack(it[2], 2)
                    acked += 1
        self.stats.acked += acked
        self._acked[epoch] = self._acked.get(epoch, 0) + len(current)  # QoS 0 ones need no ack
        self._last_activity = time.monotonic()
        if self.metrics is not None:
            self.metrics.acked.inc(acked)

    def _status(self, topic: str, payload: bytes, at: datetime) -> None:
        self.stats.status_messages += 1
        parts = topic.split("/")
        n = len(self.prefix.split("/")) if self.prefix else 0
        if len(parts) != n + 3:
            return
        status = _status_value(payload)
        if status is None:
            log.debug("ignoring status payload %r on %s", payload[:50], topic)
            if self.metrics is not None:
                self.metrics.rejected.labels(reason="invalid_status").inc()
            return
        if self.on_status is not None:
            try:
                self.on_status(parts[n], parts[n + 1], status, at)
            except Exception:
                log.exception("on_status hook failed")


def _status_value(payload: bytes) -> str | None:
    text = payload.strip().lower()
    if text in (b"online", b"offline"):
        return text.decode()
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value = body.get("status") if isinstance(body, dict) else body
    return value if isinstance(value, str) and value in STATUSES else None


# ----------------------------------------------------------------------------- entry point


def build_worker(
    settings: Settings | None = None,
    *,
    ingest_settings: IngestSettings | None = None,
    metrics: IngestMetrics | None = None,
    on_status: StatusHook | None = None,
    on_valid: Callable[[pl.DataFrame], None] | None = None,
    client_id: str | None = None,
    retire: bool = False,
) -> MqttWorker:
    """A worker wired to the configured raw store, quarantine (app database) and spool."""
    from hems.stores import appdb
    from hems.stores.raw_store import get_raw_store
    from ingest.quarantine import Quarantine

    settings = settings or get_settings()
    ingest = ingest_settings or settings.ingest
    raw = get_raw_store(settings)
    try:
        raw.ensure()
    except ServiceUnavailable as exc:  # the spool absorbs the outage; start anyway
        log.warning("raw store not reachable at start (%s); batches will be spooled", exc)
    appdb.migrate(settings.app_database_url)
    quarantine = Quarantine(settings.app_database_url)
    pipeline = IngestPipeline(
        raw, quarantine, settings=settings, ingest_settings=ingest, on_valid=on_valid, metrics=metrics
    )
    spool_dir = Path(ingest.spool_dir) if ingest.spool_dir else settings.data_dir / "ingest-spool"
    spool = Spool(spool_dir, max_bytes=ingest.spool_max_bytes, max_files=ingest.spool_max_files)
    return MqttWorker(
        pipeline,
        spool,
        settings=settings,
        ingest_settings=ingest,
        metrics=metrics,
        on_status=on_status,
        client_id=client_id,
        retire=retire,
    )


def end_session(settings: Settings, client_id: str) -> None:
    """Discard the broker's persistent session of ``client_id``: connect with a clean session (the
    broker drops the old one, its subscriptions and queue), disconnect."""
    m = settings.mqtt
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if m.username:
        client.username_pw_set(m.username, m.password.get_secret_value() or None)
    answered: list[bool] = []
    client.on_connect = lambda c, u, flags, rc, p: answered.append(not rc.is_failure)
    client.connect(m.host, m.port, keepalive=30)
    deadline = time.monotonic() + 10
    while not answered and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    if not answered or not answered[0]:
        raise ServiceUnavailable(f"MQTT broker {m.host}:{m.port} did not accept the session end")


#: how long a retiring worker must see nothing (no message, no ack of its own) before it trusts
#: that the broker holds nothing more for it: well above a batch's write, below any patience limit
RETIRE_IDLE_S = 5.0


def retire_worker(
    worker: MqttWorker,
    *,
    idle_s: float = RETIRE_IDLE_S,
    timeout_s: float = 600.0,
    stop_event: threading.Event | None = None,
) -> bool:
    """Take a started, retiring worker out of its shared group for good: it has unsubscribed on
    connect (no new messages come to it), takes what its session still holds until
    :meth:`MqttWorker.drained`, stops, and ends the session. False, with the session kept (nothing
    lost: what is left stays queued for this client id), when it did not drain within
    ``timeout_s``, was interrupted, or something came in while it stopped."""
    deadline = time.monotonic() + timeout_s
    while not worker.drained(idle_s):
        interrupted = stop_event is not None and stop_event.is_set()
        if interrupted or time.monotonic() > deadline:
            worker.stop()
            log.error(
                "%s; the session is kept (nothing is lost): run the retire again",
                "interrupted" if interrupted else f"not drained within {timeout_s:.0f} s",
            )
            return False
        time.sleep(0.2)
    worker.stop()
    if not worker.all_acked():  # came while stopping: unacknowledged, so still the broker's
        log.error("messages came in while stopping; the session is kept: run the retire again")
        return False
    end_session(worker.settings, worker.client_id)
    if not worker.session_present:
        log.warning("the broker held no session for %s: nothing was queued for it", worker.client_id)
    log.info("retired %s: %d messages drained, session ended", worker.client_id, worker.stats.received)
    return True


def run_worker(
    settings: Settings | None = None,
    *,
    stop_event: threading.Event | None = None,
    metrics_port: int | None = None,
    on_status: StatusHook | None = None,
    on_valid: Callable[[pl.DataFrame], None] | None = None,
    ingest_settings: IngestSettings | None = None,
    client_id: str | None = None,
    retire: bool = False,
    retire_timeout_s: float = 600.0,
) -> WorkerStats:
    """Run the worker until ``stop_event`` is set (or SIGTERM/SIGINT in the main thread); with
    ``retire``, until it has left its shared group for good (:func:`retire_worker`)."""
    settings = settings or get_settings()
    group = (ingest_settings or settings.ingest).shared_group
    if retire and not group:
        raise HemsError(
            "retire needs a shared group (HEMS_INGEST__SHARED_GROUP): without one this worker is "
            "the only subscriber of its messages, and unsubscribing it would drop what devices "
            "publish from then on"
        )
    # a batch allocates ~100k short-lived dicts; with the default gen-0 threshold (700) the cyclic
    # collector runs over a hundred times per batch (measured: ~20% of prepare's time). Set here so
    # `hems ingest mqtt` and `python -m ingest.mqtt` run the same.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    stop_event = stop_event or threading.Event()
    metrics = IngestMetrics()
    if metrics_port:
        metrics.serve(metrics_port)
    worker = build_worker(
        settings,
        ingest_settings=ingest_settings,
        metrics=metrics,
        on_status=on_status,
        on_valid=on_valid,
        client_id=client_id,
        retire=retire,
    )
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_event.set())
    worker.start()
    s = worker.settings.mqtt
    log.info("ingest worker connecting to %s:%s as %s", s.host, s.port, client_id or s.client_id)
    if retire:
        log.info("retiring %s from shared group %s", worker.client_id, group)
        try:
            retired = retire_worker(worker, timeout_s=retire_timeout_s, stop_event=stop_event)
        except (OSError, ServiceUnavailable) as exc:  # the session end could not reach the broker
            raise HemsError(f"{worker.client_id} drained, but its session was not ended: {exc}") from exc
        if not retired:
            raise HemsError(f"{worker.client_id} was not retired; its session is kept (see the log)")
        return worker.stats
    try:
        while not stop_event.wait(1.0):
            pass
    finally:
        worker.stop()
    log.info("ingest worker stopped: %s", worker.stats)
    return worker.stats


if __name__ == "__main__":  # `python -m ingest.mqtt` (tests run the worker as a subprocess this way)
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ingest.mqtt")
    ap.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics here")
    ap.add_argument("--client-id", default=None, help="MQTT client id (default HEMS_MQTT__CLIENT_ID)")
    ap.add_argument(
        "--retire",
        action="store_true",
        help="leave the shared group for good: unsubscribe, drain the session's queue, end it, exit",
    )
    cli = ap.parse_args()
    logging.basicConfig(
        level=get_settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run_worker(metrics_port=cli.metrics_port, client_id=cli.client_id, retire=cli.retire)
    except HemsError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
