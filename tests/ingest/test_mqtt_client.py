"""The worker's lean paho client (ingest.mqtt._FastClient) against a real Mosquitto.

Its buffered reader decodes PUBLISH packets itself and its ``ack_many`` sends a batch's PUBACKs as
one write; these tests check that every message arrives intact (QoS 0 and 1, payloads from empty to
larger than the 64 KiB read buffer, so packets straddle reads), that acknowledged messages are not
re-delivered to the persistent session and unacknowledged ones are.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.broker import PrivateBroker
from ingest.mqtt import _BufferedSocket, _FastClient

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("broker")
    with PrivateBroker(path) as b:
        yield b


class Receiver:
    """A persistent-session _FastClient that records what its fast hook (or paho's path) gets."""

    def __init__(self, port: int, client_id: str) -> None:
        self.got: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = _FastClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self.client.on_fast_message = self._fast
        self.client.on_message = lambda c, u, m: self._fast(m.topic, m.payload, m.mid, m.qos, m.timestamp)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("t/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _fast(self, topic: str, payload: bytes, mid: int, qos: int, at: float) -> None:
        assert isinstance(payload, bytes) and isinstance(at, float)
        with self.lock:
            self.got.append((topic, payload, mid, qos))

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[str, bytes, int, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return list(self.got)
            time.sleep(0.02)
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, messages: list[tuple[str, bytes, int]]) -> None:
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=q) for t, p, q in messages]
    for info in infos:
        info.wait_for_publish(20)
    pub.disconnect()
    pub.loop_stop()


def sample_messages(n: int) -> list[tuple[str, bytes, int]]:
    sizes = [0, 1, 100, 126, 127, 128, 16_383, 16_384, 70_000, 200_000]
    out = []
    for i in range(n):
        size = sizes[i % len(sizes)] if i % 7 == 0 else 40 + i % 300
        payload = (f"{i}:".encode() + bytes(range(256)) * (size // 256 + 1))[:size]
        topic = f"t/dev-{i % 13}/é{i % 3}/telemetry"
        out.append((topic, payload, 0 if i % 5 == 0 else 1))
    return out


def test_fast_client_receives_every_message_intact_and_acks(broker: PrivateBroker) -> None:
    cid = f"fast-{uuid.uuid4().hex[:6]}"
    rx = Receiver(broker.port, cid)
    sent = sample_messages(2_000)
    publish_all(broker.port, sent)
    got = rx.wait_for(len(sent))
    # nothing lost or altered (the broker may interleave QoS 0 and QoS 1 differently)
    assert sorted((t, p, q) for t, p, _, q in got) == sorted(sent)
    acked = got[:1000]
    rx.client.ack_many([mid for _, _, mid, q in acked if q == 1])  # acknowledge the first 1,000 only
    time.sleep(0.5)
    rx.close()
    # the persistent session gets back exactly the QoS 1 messages that were not acknowledged
    rx2 = Receiver(broker.port, cid)
    expected = sorted((t, p) for t, p, _, q in got[1000:] if q == 1)
    again = rx2.wait_for(len(expected))
    time.sleep(0.5)
    assert sorted((t, p) for t, p, _, _ in rx2.got) == expected
    rx2.client.ack_many([mid for _, _, mid, _ in again])
    time.sleep(0.3)
    rx2.close()
    rx3 = Receiver(broker.port, cid)
    time.sleep(1.0)
    assert rx3.got == []  # everything acknowledged: nothing re-delivered
    rx3.close()


def test_take_publishes_stops_at_partial_and_foreign_packets() -> None:
    def publish_packet(topic: bytes, payload: bytes, mid: int | None) -> bytes:
        var = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if mid is not None else b"")
        n, rem = len(var) + len(payload), b""
        while True:
            n, b = divmod(n, 128)
            rem += bytes([b | (0x80 if n else 0)])
            if not n:
                break
        return bytes([0x32 if mid is not None else 0x30]) + rem + var + payload

    a = publish_packet(b"x/1", b"hello", 7)
    b = publish_packet(b"x/2", b"z" * 300, None)  # QoS 0, two-byte remaining length
    pingresp = b"\xd0\x00"
    c = publish_packet(b"x/3", b"tail", 9)
    sock = _BufferedSocket(None)
    sock._buf = a + b + pingresp + c[:5]
    got: list[tuple[str, bytes, int, int]] = []
    assert sock.take_publishes(lambda t, p, m, q, at: got.append((t, p, m, q))) == 2
    assert got == [("x/1", b"hello", 7, 1), ("x/2", b"z" * 300, 0, 0)]
    assert sock.buffered() == len(pingresp) + 5  # the PINGRESP and the partial packet are paho's
    assert sock.recv(2) == pingresp
    assert sock.take_publishes(lambda *a: got.append(a)) == 0  # partial: left for paho's reader
    assert sock.buffered() == 5
