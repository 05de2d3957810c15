"""Prometheus metrics of the ingest worker: received, written, rejected by reason, batch size,
write latency, spool depth and end-to-end lag.

Why a registry per instance: tests and the benchmark create several workers in one process, and
prometheus-client refuses to register the same metric name twice in one registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BATCH_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 50_000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0, 86_400.0)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("hems_ingest_messages_received", "Messages received", ["kind"], registry=r)
        self.readings = Counter("hems_ingest_readings", "Readings seen in messages", registry=r)
        self.written = Counter(
            "hems_ingest_readings_written", "Readings written to the raw store", registry=r
        )
        self.rejected = Counter(
            "hems_ingest_readings_rejected", "Readings quarantined, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "hems_ingest_duplicates", "Readings de-duplicated within a batch", registry=r
        )
        self.unknown_fields = Counter(
            "hems_ingest_unknown_fields", "Unknown payload fields ignored", registry=r
        )
        self.batch_size = Histogram(
            "hems_ingest_batch_messages", "Messages per batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.write_latency = Histogram(
            "hems_ingest_write_seconds",
            "Raw store write time per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "hems_ingest_lag_seconds",
            "Arrival minus reading timestamp (a sample of each batch)",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.spool_files = Gauge("hems_ingest_spool_files", "Batches waiting in the spool", registry=r)
        self.spool_bytes = Gauge("hems_ingest_spool_bytes", "Bytes waiting in the spool", registry=r)
        self.spooled = Counter("hems_ingest_batches_spooled", "Batches written to the spool", registry=r)
        self.acked = Counter("hems_ingest_messages_acked", "Messages acknowledged to the broker", registry=r)
        self.queue_depth = Gauge("hems_ingest_queue_depth", "Messages waiting for a batch", registry=r)

    def observe_batch(self, stats: Any, written: int, write_s: float) -> None:
        self.readings.inc(stats.readings)
        self.written.inc(written)
        self.duplicates.inc(stats.duplicates)
        if stats.unknown_fields:
            self.unknown_fields.inc(sum(stats.unknown_fields.values()))
        for reason, n in stats.rejected_by_reason.items():
            self.rejected.labels(reason=reason).inc(n)
        self.batch_size.observe(stats.messages)
        self.write_latency.observe(write_s)
        for lag in stats.lag_sample_s:
            self.lag.observe(max(lag, 0.0))

    def set_spool(self, files: int, size: int) -> None:
        self.spool_files.set(files)
        self.spool_bytes.set(size)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose /metrics on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)
