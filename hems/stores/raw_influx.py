"""Stack raw store: InfluxDB over the v1 HTTP API (line protocol to /write, InfluxQL on /query).

Why the v1 API: Debian ships InfluxDB 1.6, which has no /api/v2; /write and /query are served by
1.x, by 2.x (v1 compatibility) and by 3.x alike. InfluxDB keys a point by measurement + tag set +
timestamp, so writing a key again overwrites it — the idempotency the raw store promises. Note
InfluxDB merges fields on overwrite: a rewrite that omits a field keeps its earlier value.

Line protocol is built with Polars string expressions (no per-row Python), and results are read as
CSV (``Accept: application/csv``), which Polars parses several times faster than JSON.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import polars as pl
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from hems.contracts import Measurement
from hems.errors import HemsError, ServiceUnavailable
from hems.settings import InfluxSettings
from hems.stores.raw_store import RawStore, _measurement

START_FIX = "start it with `hems services up`"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_NS, _MAX_NS = -9_223_372_036_854_775_806, 9_223_372_036_854_775_806  # InfluxDB's time range
#: transient failures worth retrying; writes are idempotent, so a retried write cannot double-count
_TRANSIENT = (
    httpx.ConnectError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.PoolTimeout,
)
#: a backslash right before a separator (or at the end) cannot be expressed in 1.x line protocol
_UNWRITABLE_TAG = r"\\([ ,=]|$)|[\n\r]"


def escape_key(name: str) -> str:
    """Escape a measurement name, tag key or field key for line protocol."""
    return name.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def influxql_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def influxql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _epoch_ns(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def _escape_tag_value(expr: pl.Expr) -> pl.Expr:
    return (
        expr.str.replace_all(",", r"\,", literal=True)
        .str.replace_all("=", r"\=", literal=True)
        .str.replace_all(" ", r"\ ", literal=True)
    )


def check_tag_values(measurement: Measurement, frame: pl.DataFrame) -> None:
    """Reject tag values 1.x line protocol cannot carry, before anything is sent."""
    bad = frame.select(
        [pl.col(t).filter(pl.col(t).str.contains(_UNWRITABLE_TAG)).first().alias(t) for t in measurement.tags]
    ).row(0, named=True)
    bad = {k: v for k, v in bad.items() if v is not None}
    if bad:
        raise ValueError(
            f"{measurement.name}: tag values InfluxDB cannot store (newline, or a backslash "
            f"before a space/comma/equals sign or at the end): {bad}"
        )


def line_protocol(measurement: Measurement, frame: pl.DataFrame) -> pl.Series:
    """One line per row that has at least one finite field; tags sorted by key, null tags omitted.

    Floats use Polars' shortest round-trip text (``0.1``, ``1e-7``), which InfluxDB parses exactly.
    """
    tag_parts = [
        pl.when(pl.col(t).is_not_null() & (pl.col(t) != ""))
        .then(pl.lit(f",{escape_key(t)}=") + _escape_tag_value(pl.col(t)))
        .otherwise(pl.lit(""))
        for t in sorted(measurement.tags)
    ]
    field_parts = [
        pl.when(pl.col(f).is_finite()).then(pl.lit(f"{escape_key(f)}=") + pl.col(f).cast(pl.String))
        for f in measurement.fields
    ]
    return (
        frame.lazy()
        .select(
            pl.concat_str([pl.lit(escape_key(measurement.name)), *tag_parts]).alias("series"),
            pl.concat_str(field_parts, separator=",", ignore_nulls=True).alias("fields"),
            pl.col("ts").dt.epoch("ms").cast(pl.String).alias("ts"),
        )
        .filter(pl.col("fields") != "")
        .select(pl.concat_str(["series", "fields", "ts"], separator=" ").alias("line"))
        .collect()
        .to_series()
    )


class InfluxRawStore(RawStore):
    name = "influxdb"
    #: "csv" (fast) or "json"; InfluxDB answers CSV from 1.1 on, and falls back to JSON otherwise
    query_format = "csv"
    #: gzip the line protocol; on loopback it costs more CPU than it saves (measured), so off
    gzip_writes = False
    #: rows per chunk of a chunked answer (50k measured fastest of 10k/50k/200k)
    chunk_size = 50_000
    #: parallel HTTP requests for large writes / long query ranges (InfluxDB uses both cores then)
    write_concurrency = 2
    query_concurrency = 2
    split_queries_from = timedelta(hours=2)

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.url = settings.url
        auth = (settings.username, settings.password.get_secret_value()) if settings.username else None
        self._client = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0)),
            # uncompressed answers: gzip of a 150 MB CSV costs InfluxDB more than loopback saves
            headers={"Accept-Encoding": "identity"},
        )
        self._ensured = False

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxRawStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP plumbing ------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """One request; transient connection errors retried briefly, then one clear line."""
        attempts = Retrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(4 if retry else 1) | stop_after_delay(3.0),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        )
        try:
            for attempt in attempts:
                with attempt:
                    return self._client.request(method, path, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise HemsError(
                f"InfluxDB at {self.url} did not answer {path} within {self.settings.timeout_s:g} s "
                "(raise HEMS_INFLUX__TIMEOUT_S or ask for less)"
            ) from None
        except httpx.TransportError as exc:
            raise ServiceUnavailable("InfluxDB", self.url, START_FIX, _cause(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _influxql(self, q: str, *, write: bool = True) -> dict[str, Any]:
        """Run a management statement (POST) and raise on an error in the response."""
        resp = self._request("POST" if write else "GET", "/query", params={"q": q})
        if resp.status_code >= 400:
            raise self._http_error("/query", resp)
        body = orjson.loads(resp.content)
        for result in body.get("results", []):
            if "error" in result:
                raise HemsError(f"InfluxDB at {self.url}: {q!r} failed: {result['error']}")
        return body

    def _http_error(self, endpoint: str, resp: httpx.Response) -> HemsError:
        message = resp.headers.get("X-Influxdb-Error", "")
        if not message:
            try:
                message = orjson.loads(resp.content).get("error", "")
            except (orjson.JSONDecodeError, AttributeError):
                message = resp.text.strip()
        hint = ""
        if resp.status_code in (401, 403):
            hint = " (check HEMS_INFLUX__USERNAME / HEMS_INFLUX__PASSWORD)"
        return HemsError(
            f"InfluxDB at {self.url} rejected {endpoint} (HTTP {resp.status_code}): {message[:500]}{hint}"
        )

    # --- RawStore ------------------------------------------------------------------------------
    def ping(self) -> None:
        resp = self._request("GET", "/ping", retry=False)
        if resp.status_code != 204:
            raise ServiceUnavailable(
                "InfluxDB", self.url, START_FIX, f"/ping answered HTTP {resp.status_code}"
            )

    def ensure(self) -> None:
        # CREATE DATABASE is a no-op when it exists
        self._influxql(f"CREATE DATABASE {influxql_ident(self.settings.database)}")
        self._ensured = True

    def drop(self) -> None:
        self._influxql(f"DROP DATABASE {influxql_ident(self.settings.database)}")
        self._ensured = False

    def _write(self, measurement: Measurement, frame: pl.DataFrame) -> int:
        check_tag_values(measurement, frame)
        batch = self.settings.write_batch_size
        lanes = self.write_concurrency if frame.height > batch else 1
        if lanes == 1:
            return self._write_lane(measurement, frame)
        # a key always lands in the same lane, whose batches go in order: the last row of a key wins
        parts = frame.with_columns(
            (pl.struct(list(measurement.tags)).hash() % lanes).alias("_lane")
        ).partition_by("_lane", include_key=False, maintain_order=True)
        with ThreadPoolExecutor(len(parts)) as pool:
            return sum(pool.map(lambda part: self._write_lane(measurement, part), parts))

    def _write_lane(self, measurement: Measurement, frame: pl.DataFrame) -> int:
        written = 0
        batch = self.settings.write_batch_size
        for offset in range(0, frame.height, batch):
            lines = line_protocol(measurement, frame.slice(offset, batch))
            if lines.len():
                self._post_lines(lines.str.join("\n").item())
                written += lines.len()
        return written

    def _post_lines(self, text: str) -> None:
        body = text.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.settings.database, "precision": "ms"}
        resp = self._request("POST", "/write", params=params, content=body, headers=headers)
        if resp.status_code == 404 and not self._ensured and b"database not found" in resp.content:
            self.ensure()
            resp = self._request("POST", "/write", params=params, content=body, headers=headers)
        if resp.status_code >= 300:
            raise self._http_error("/write", resp)

    def _query(
        self,
        measurement: Measurement,
        start: datetime,
        end: datetime,
        where: dict[str, Sequence[str]] | None,
    ) -> pl.DataFrame:
        filters = ""
        for tag, values in (where or {}).items():
            if tag not in measurement.tags:
                raise ValueError(f"{measurement.name} has no tag {tag!r}")
            values = [values] if isinstance(values, str) else list(values)
            if not values:
                return pl.DataFrame(schema=measurement.schema)
            ident = influxql_ident(tag)
            filters += " AND (" + " OR ".join(f"{ident} = {influxql_string(v)}" for v in values) + ")"
        lo, hi = max(_epoch_ns(start), _MIN_NS), min(_epoch_ns(end), _MAX_NS)
        if hi <= lo:
            return pl.DataFrame(schema=measurement.schema)
        parts = self.query_concurrency if end - start >= self.split_queries_from else 1
        bounds = [lo + (hi - lo) * i // parts for i in range(parts)] + [hi]
        if parts == 1:
            return self._select(measurement, lo, hi, filters)
        # InfluxDB runs one query on about one core: halves of a long range in parallel are ~30% faster
        with ThreadPoolExecutor(parts) as pool:
            frames = list(
                pool.map(lambda i: self._select(measurement, bounds[i], bounds[i + 1], filters), range(parts))
            )
        return pl.concat([f for f in frames if f.height] or frames[:1], how="diagonal_relaxed")

    def count_points(self, measurement: str, start: datetime, end: datetime) -> int:
        m = _measurement(measurement)
        q = (
            f"SELECT count(*) FROM {influxql_ident(m.name)} "
            f"WHERE time >= {_epoch_ns(start)} AND time < {_epoch_ns(end)}"
        )
        resp = self._request("POST", "/query", data={"db": self.settings.database, "q": q, "epoch": "ns"})
        if resp.status_code >= 400:
            raise self._http_error("/query", resp)
        counts = [
            int(v)
            for result in orjson.loads(resp.content).get("results", [])
            for series in result.get("series", [])
            for row in series.get("values", [])
            for v in row[1:]
            if v is not None
        ]
        return max(counts, default=0)  # count(*) answers per field; a point has at least one

    def _select(self, measurement: Measurement, lo: int, hi: int, filters: str) -> pl.DataFrame:
        q = f"SELECT * FROM {influxql_ident(measurement.name)} WHERE time >= {lo} AND time < {hi}{filters}"
        params = {
            "db": self.settings.database,
            "q": q,
            "epoch": "ms",
            "chunked": "true",
            "chunk_size": str(self.chunk_size),
        }
        accept = "application/csv" if self.query_format == "csv" else "application/json"
        # POST so a long tag filter never hits a URL length limit (InfluxDB accepts SELECT on POST)
        resp = self._request("POST", "/query", data=params, headers={"Accept": accept})
        if resp.status_code >= 400:
            raise self._http_error("/query", resp)
        if resp.headers.get("Content-Type", "").startswith("text/csv"):
            return _from_csv(resp.content, measurement, self.url)
        return _from_json(resp.content, measurement, self.url)


def _cause(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _result_schema(columns: Sequence[str], measurement: Measurement) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {}
    for c in columns:
        if c == "time":
            schema[c] = pl.Int64()
        elif c in measurement.tags or c in ("name", "tags"):
            schema[c] = pl.String()
        else:
            schema[c] = pl.Float64()
    return schema


def _finish(frame: pl.DataFrame, measurement: Measurement) -> pl.DataFrame:
    keep = [c for c in frame.columns if c in measurement.schema]
    return frame.select(
        pl.col("time").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias("ts"),
        *[pl.col(c) for c in keep],
    )


def _from_csv(content: bytes, measurement: Measurement, url: str) -> pl.DataFrame:
    """Parse InfluxDB's CSV (``name,tags,time,<columns>``; header once per statement)."""
    if not content[:1024].strip():  # no series in range (or no such database / measurement)
        return pl.DataFrame(schema=measurement.schema)
    header = content[: content.find(b"\n")]  # no partition(): it would copy a 100+ MB tail
    columns = next(csv.reader([header.decode()]))
    if columns == ["error"]:
        message = content.decode(errors="replace").strip().splitlines()[-1]
        raise HemsError(f"InfluxDB at {url}: query failed: {message}")
    frame = pl.read_csv(content, schema=_result_schema(columns, measurement))
    return _finish(frame, measurement)


def _from_json(content: bytes, measurement: Measurement, url: str) -> pl.DataFrame:
    """Parse (chunked) JSON: one object per line, each holding a slice of the series."""
    parts: list[pl.DataFrame] = []
    for raw in content.splitlines():
        if not raw.strip():
            continue
        for result in orjson.loads(raw).get("results", []):
            error = result.get("error")
            if error and not error.startswith("database not found"):
                raise HemsError(f"InfluxDB at {url}: query failed: {error}")
            for series in result.get("series", []):
                columns = series["columns"]
                parts.append(
                    pl.DataFrame(
                        series["values"],
                        schema=_result_schema(columns, measurement),
                        orient="row",
                        strict=False,
                    )
                )
    if not parts:
        return pl.DataFrame(schema=measurement.schema)
    return _finish(pl.concat(parts, how="diagonal_relaxed"), measurement)
