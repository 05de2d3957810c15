"""Modbus register maps: YAML files describing where a meter model keeps each canonical field.

Why YAML and not code: adding a meter model should be a reviewed data file, not a new decoder.
Maps are validated when loaded, so a typo fails at start-up with one line naming the file and the
field, instead of producing wrong numbers at 3 a.m.  The same :class:`RegisterMap` decodes on the
poller side and encodes on the simulator side, so both agree by construction.

    m = load_map("eastron_sdm120")
    for block in m.plan():                     # as few read requests as possible
        regs = await client.read_input_registers(block.address, count=block.count, device_id=1)
    values = m.decode_block(block, regs)       # {field name: float}
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]

from hems.contracts import READING_FIELDS
from hems.errors import HemsError

MAPS_DIR = Path(__file__).resolve().parent
#: Modbus limit for one read of holding/input registers (FC 3/4)
MAX_REGISTERS_PER_REQUEST = 125

#: register data types: struct format (big-endian) and width in 16-bit registers
DATA_TYPES: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "float32": (">f", 2),
}
FUNCTIONS = {"input": 4, "holding": 3}
ORDERS = ("big", "little")
COMBINE = ("mean", "sum")
_FIELD_KEYS = {
    "address",
    "type",
    "canonical",
    "word_order",
    "byte_order",
    "scale",
    "offset",
    "absolute",
    "combine",
}
_MAP_KEYS = {
    "model",
    "function",
    "type",
    "word_order",
    "byte_order",
    "max_registers_per_request",
    "max_gap",
    "fields",
}


class RegisterMapError(HemsError):
    """A register map file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class FieldSpec:
    """One value in the device: where it is, how it is encoded, which canonical field it feeds."""

    name: str
    address: int
    type: str = "float32"
    canonical: str | None = None
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False
    combine: Literal["mean", "sum"] | None = None

    @property
    def width(self) -> int:
        return DATA_TYPES[self.type][1]

    @property
    def end(self) -> int:
        """First address after this field."""
        return self.address + self.width

    def decode(self, registers: Sequence[int]) -> float:
        """Raw registers → engineering value (``raw * scale + offset``, then ``abs`` if asked)."""
        raw = _unpack(registers, self.type, self.word_order, self.byte_order)
        value = raw * self.scale + self.offset
        return abs(value) if self.absolute else value

    def encode(self, value: float) -> list[int]:
        """Engineering value → registers (inverse of :meth:`decode`; integers are rounded)."""
        raw = (value - self.offset) / self.scale if math.isfinite(value) else value
        return _pack(raw, self.type, self.word_order, self.byte_order)


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers from ``address``, covering ``fields``."""

    address: int
    count: int
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class RegisterMap:
    name: str
    model: str
    function: Literal["input", "holding"]
    fields: tuple[FieldSpec, ...]
    source: str = "<memory>"
    max_registers_per_request: int = MAX_REGISTERS_PER_REQUEST
    #: largest run of unlisted registers a request may span (None: any; some devices reject
    #: reads that touch undefined registers, set 0 for those)
    max_gap: int | None = None
    _by_canonical: dict[str, tuple[FieldSpec, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        groups: dict[str, list[FieldSpec]] = {}
        for f in self.fields:
            if f.canonical:
                groups.setdefault(f.canonical, []).append(f)
        self._by_canonical.update({k: tuple(v) for k, v in groups.items()})

    @property
    def function_code(self) -> int:
        return FUNCTIONS[self.function]

    @property
    def canonical_fields(self) -> dict[str, tuple[FieldSpec, ...]]:
        """Canonical field → the register fields that make it up."""
        return dict(self._by_canonical)

    @property
    def polled(self) -> tuple[FieldSpec, ...]:
        """Fields that feed a canonical field (the others are documentation and simulator-only)."""
        return tuple(f for f in self.fields if f.canonical)

    def plan(self, fields: Iterable[FieldSpec] | None = None) -> list[Block]:
        """Group fields into as few contiguous read requests as the request size and gap allow."""
        todo = sorted(self.polled if fields is None else fields, key=lambda f: f.address)
        blocks: list[Block] = []
        cur: list[FieldSpec] = []
        for f in todo:
            if cur:
                start, end = cur[0].address, max(x.end for x in cur)
                gap_ok = self.max_gap is None or f.address - end <= self.max_gap
                if gap_ok and f.end - start <= self.max_registers_per_request:
                    cur.append(f)
                    continue
                blocks.append(Block(start, end - start, tuple(cur)))
            cur = [f]
        if cur:
            start, end = cur[0].address, max(x.end for x in cur)
            blocks.append(Block(start, end - start, tuple(cur)))
        return blocks

    @staticmethod
    def decode_block(block: Block, registers: Sequence[int]) -> dict[str, float]:
        """Register field name → decoded value for one block's response."""
        if len(registers) < block.count:
            raise ValueError(f"short response: {len(registers)} registers, expected {block.count}")
        return {
            f.name: f.decode(registers[f.address - block.address : f.end - block.address])
            for f in block.fields
        }

    def combine(self, values: Mapping[str, float]) -> dict[str, float]:
        """Register field values → canonical values (``mean``/``sum`` of multi-register fields)."""
        out: dict[str, float] = {}
        for canonical, specs in self._by_canonical.items():
            parts = [values[s.name] for s in specs if s.name in values]
            if len(parts) != len(specs):
                continue
            total = math.fsum(parts) if all(math.isfinite(p) for p in parts) else sum(parts)
            out[canonical] = total / len(parts) if specs[0].combine == "mean" else total
        return out

    def encode(self, canonical: Mapping[str, float], imbalance: Sequence[float] = ()) -> dict[int, int]:
        """Canonical values → register image {address: register} (used by the simulator).

        A ``mean`` group gets the value on every member, a ``sum`` group an equal share;
        ``imbalance`` (relative weights around 0, summing to 0) spreads members apart while
        keeping the mean/sum, so a three-phase meter does not look suspiciously perfect.
        """
        image: dict[int, int] = {}
        for name, specs in self._by_canonical.items():
            if name not in canonical:
                continue
            value = canonical[name]
            n = len(specs)
            for i, spec in enumerate(specs):
                w = imbalance[i] if n > 1 and i < len(imbalance) else 0.0
                part = value * (1.0 + w) if spec.combine in (None, "mean") else value / n * (1.0 + w)
                for k, reg in enumerate(spec.encode(part)):
                    image[spec.address + k] = reg
        return image

    def extent(self) -> int:
        """First address after the last field (size of the register space the simulator serves)."""
        return max(f.end for f in self.fields)


# --------------------------------------------------------------------------- codecs
def _unpack(registers: Sequence[int], type_: str, word_order: str, byte_order: str) -> float:
    fmt, width = DATA_TYPES[type_]
    if len(registers) != width:
        raise ValueError(f"{type_} needs {width} registers, got {len(registers)}")
    regs = list(registers)
    if word_order == "little":
        regs.reverse()
    data = b"".join(int(r).to_bytes(2, "big") for r in regs)
    if byte_order == "little":  # bytes swapped inside each register
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    return float(struct.unpack(fmt, data)[0])


def _pack(value: float, type_: str, word_order: str, byte_order: str) -> list[int]:
    fmt, width = DATA_TYPES[type_]
    data = struct.pack(fmt, value if type_ == "float32" else round(value))
    if byte_order == "little":
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * width, 2)]
    if word_order == "little":
        regs.reverse()
    return regs


# --------------------------------------------------------------------------- loading
def available_maps(extra_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Map name (file stem) → file, built-in maps first, later directories override."""
    found: dict[str, Path] = {}
    for d in (MAPS_DIR, *extra_dirs):
        for p in sorted(Path(d).glob("*.yaml")):
            found[p.stem] = p
    return found


def load_map(name_or_path: str | Path, extra_dirs: Iterable[Path] = ()) -> RegisterMap:
    """A validated map by name (built-in or in ``extra_dirs``) or by file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        maps = available_maps(extra_dirs)
        if str(name_or_path) not in maps:
            raise RegisterMapError(
                f"unknown register map {str(name_or_path)!r}; known: {', '.join(sorted(maps)) or 'none'}"
            )
        path = maps[str(name_or_path)]
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RegisterMapError(f"register map {path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise RegisterMapError(f"register map {path}: not valid YAML ({yaml_error(exc)})") from None
    return parse_map(data, name=path.stem, source=str(path))


def yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error as one line (PyYAML's own message spans several, with a caret drawing)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def parse_map(data: Any, *, name: str, source: str = "<memory>") -> RegisterMap:
    """Validate a map's parsed YAML; every error is one line naming ``source`` and the field."""

    def fail(msg: str) -> RegisterMapError:
        return RegisterMapError(f"register map {source}: {msg}")

    if not isinstance(data, dict):
        raise fail("top level must be a mapping with 'model' and 'fields'")
    if unknown := set(data) - _MAP_KEYS:
        raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_MAP_KEYS)}")
    function = data.get("function", "input")
    if function not in FUNCTIONS:
        raise fail(f"function {function!r} must be one of {sorted(FUNCTIONS)}")
    defaults = {
        k: data.get(k, d) for k, d in (("type", "float32"), ("word_order", "big"), ("byte_order", "big"))
    }
    max_req = data.get("max_registers_per_request", MAX_REGISTERS_PER_REQUEST)
    if not isinstance(max_req, int) or not 1 <= max_req <= MAX_REGISTERS_PER_REQUEST:
        raise fail(
            f"max_registers_per_request must be an integer 1..{MAX_REGISTERS_PER_REQUEST}, got {max_req!r}"
        )
    max_gap = data.get("max_gap")
    if max_gap is not None and (not isinstance(max_gap, int) or max_gap < 0):
        raise fail(f"max_gap must be a non-negative integer or null, got {max_gap!r}")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise fail("'fields' must be a non-empty mapping of field name → {address, ...}")

    specs = [_parse_field(fname, spec, defaults, fail) for fname, spec in raw_fields.items()]
    _check_overlaps(specs, fail)
    _check_groups(specs, fail)
    return RegisterMap(
        name=name,
        model=str(data.get("model", name)),
        function=function,
        fields=tuple(specs),
        source=source,
        max_registers_per_request=max_req,
        max_gap=max_gap,
    )


def _parse_field(fname: Any, spec: Any, defaults: dict[str, Any], fail: Any) -> FieldSpec:
    where = f"field {fname!r}"
    if not isinstance(spec, dict):
        raise fail(f"{where}: must be a mapping with at least 'address'")
    if unknown := set(spec) - _FIELD_KEYS:
        raise fail(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    if "address" not in spec:
        raise fail(f"{where}: missing 'address'")
    address = spec["address"]
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        raise fail(f"{where}: address must be an integer 0..65535 (0-based), got {address!r}")
    merged = {**defaults, **spec}
    if merged["type"] not in DATA_TYPES:
        raise fail(f"{where}: unknown type {merged['type']!r}; use one of {sorted(DATA_TYPES)}")
    for key in ("word_order", "byte_order"):
        if merged[key] not in ORDERS:
            raise fail(f"{where}: {key} must be 'big' or 'little', got {merged[key]!r}")
    canonical = spec.get("canonical")
    if canonical is not None and canonical not in READING_FIELDS:
        raise fail(f"{where}: unknown canonical field {canonical!r}; use one of {sorted(READING_FIELDS)}")
    for key in ("scale", "offset"):
        v = spec.get(key, 1.0 if key == "scale" else 0.0)
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise fail(f"{where}: {key} must be a finite number, got {v!r}")
    if spec.get("scale", 1.0) == 0:
        raise fail(f"{where}: scale must not be 0")
    combine = spec.get("combine")
    if combine is not None and combine not in COMBINE:
        raise fail(f"{where}: combine must be one of {list(COMBINE)}, got {combine!r}")
    if not isinstance(spec.get("absolute", False), bool):
        raise fail(f"{where}: absolute must be true or false")
    return FieldSpec(
        name=str(fname),
        address=address,
        type=merged["type"],
        canonical=canonical,
        word_order=merged["word_order"],
        byte_order=merged["byte_order"],
        scale=float(spec.get("scale", 1.0)),
        offset=float(spec.get("offset", 0.0)),
        absolute=bool(spec.get("absolute", False)),
        combine=combine,
    )


def _check_overlaps(specs: list[FieldSpec], fail: Any) -> None:
    ordered = sorted(specs, key=lambda f: f.address)
    for a, b in itertools.pairwise(ordered):
        if b.address < a.end:
            raise fail(
                f"field {b.name!r} (address {b.address:#06x}) overlaps field {a.name!r} "
                f"({a.address:#06x}..{a.end - 1:#06x}, {a.type})"
            )


def _check_groups(specs: list[FieldSpec], fail: Any) -> None:
    groups: dict[str, list[FieldSpec]] = {}
    for s in specs:
        if s.canonical:
            groups.setdefault(s.canonical, []).append(s)
    for canonical, members in groups.items():
        modes = {m.combine for m in members}
        if len(members) > 1 and (len(modes) != 1 or None in modes):
            names = ", ".join(repr(m.name) for m in members)
            raise fail(
                f"field {members[1].name!r}: canonical {canonical!r} is fed by {names}; "
                "give them all the same 'combine' (mean or sum)"
            )


__all__ = [
    "DATA_TYPES",
    "MAPS_DIR",
    "MAX_REGISTERS_PER_REQUEST",
    "Block",
    "FieldSpec",
    "RegisterMap",
    "RegisterMapError",
    "available_maps",
    "load_map",
    "parse_map",
    "yaml_error",
]
