"""What cas-sim's ECMG reads from the SimulCrypt ``access_criteria`` parameter.

TS 103 197 §5.4 leaves access_criteria opaque: its meaning is agreed between the CA vendor
and the operator, who types it into the SCS once per ECM stream.  Ours comes in two forms,
told apart by the first byte (docs/simulcrypt.md, "access criteria"):

``0x01`` — full criteria, self-contained::

    form                u8    0x01
    channel_id          u16   the service_id the ECM is for (cas.access.AccessCriteria)
    maturity_rating     u8
    package_count       u8,   package_id u16 × count   (any of them opens the channel)
    region_count        u8,   region u16 × count       (empty: everywhere)

``0x02`` — a reference to the ECMG's lineup (``cas ecmg serve --lineup``)::

    form                u8    0x02
    service_id          u16

The reference form keeps the SCS configuration short and lets the operator change packages
in the lineup without touching the scrambler; the full form needs no lineup on the ECMG.
``cas ecmg access-criteria`` prints either form in hex for a channel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping

from cas.access import AccessCriteria
from cas.errors import FormatError

FORM_FULL = 0x01
FORM_REFERENCE = 0x02

CriteriaResolver = Callable[[int], AccessCriteria | None]
"""service_id -> the channel's criteria (None when the lineup has no such channel)."""


def encode_full(criteria: AccessCriteria) -> bytes:
    """The self-contained form (0x01) of ``criteria``."""
    for name, values in (("package_ids", criteria.package_ids), ("regions", criteria.regions)):
        if len(values) > 255 or any(not 0 <= v <= 0xFFFF for v in values):
            raise FormatError("at most 255 u16 values", path=f"access_criteria.{name}").with_id(
                "headend.most_u16_values", field=f"access_criteria.{name}")
    if not 0 <= criteria.channel_id <= 0xFFFF:
        raise FormatError("not a u16", path="access_criteria.channel_id").with_id(
            "headend.access_criteria_channel_id")
    if not 0 <= criteria.maturity_rating <= 0xFF:
        raise FormatError("not a u8", path="access_criteria.maturity_rating").with_id(
            "headend.access_criteria_maturity_rating")
    return b"".join((
        struct.pack(">BHBB", FORM_FULL, criteria.channel_id, criteria.maturity_rating,
                    len(criteria.package_ids)),
        struct.pack(f">{len(criteria.package_ids)}H", *criteria.package_ids),
        bytes((len(criteria.regions),)),
        struct.pack(f">{len(criteria.regions)}H", *criteria.regions),
    ))


def encode_reference(service_id: int) -> bytes:
    """The lineup-reference form (0x02) for ``service_id``."""
    if not 0 <= service_id <= 0xFFFF:
        raise FormatError("not a u16", path="access_criteria.service_id").with_id(
            "headend.access_criteria_service_id")
    return struct.pack(">BH", FORM_REFERENCE, service_id)


def decode(raw: bytes, resolve: CriteriaResolver | None = None) -> AccessCriteria:
    """The criteria ``raw`` stands for; FormatError when it is malformed or unresolvable."""
    if not raw:
        raise FormatError("empty", path="access_criteria").with_id("headend.access_criteria_empty")
    form = raw[0]
    if form == FORM_REFERENCE:
        if len(raw) != 3:
            raise FormatError(f"reference form is 3 bytes, got {len(raw)}", path="access_criteria").with_id(
                "headend.access_criteria_reference_form", n=len(raw))
        service_id = int.from_bytes(raw[1:3], "big")
        found = resolve(service_id) if resolve is not None else None
        if found is None:
            raise FormatError(f"service_id {service_id} is not in the ECMG's lineup",
                              path="access_criteria.service_id").with_id(
                "headend.access_criteria_service_id_2", service_id=service_id)
        return found
    if form != FORM_FULL:
        raise FormatError(f"unknown form 0x{form:02X}", path="access_criteria.form").with_id(
            "headend.access_criteria_form_unknown", form=f"{form:02X}")
    try:
        _, channel_id, maturity, n_packages = struct.unpack_from(">BHBB", raw)
        pos = 5
        packages = struct.unpack_from(f">{n_packages}H", raw, pos)
        pos += 2 * n_packages
        n_regions = raw[pos]
        pos += 1
        regions = struct.unpack_from(f">{n_regions}H", raw, pos)
        pos += 2 * n_regions
    except (struct.error, IndexError) as exc:
        raise FormatError("truncated", path="access_criteria").with_id(
            "headend.access_criteria_truncated") from exc
    if pos != len(raw):
        raise FormatError(f"{len(raw) - pos} trailing bytes", path="access_criteria").with_id(
            "headend.access_criteria_trailing_bytes", value=len(raw) - pos)
    return AccessCriteria(channel_id=channel_id, package_ids=tuple(packages),
                          regions=tuple(regions), maturity_rating=maturity)


def resolver_from(criteria: Iterable[AccessCriteria]) -> CriteriaResolver:
    """A resolver over a fixed set of channels (keyed by channel_id = service_id)."""
    table: Mapping[int, AccessCriteria] = {c.channel_id: c for c in criteria}
    return table.get


def lineup_resolver(lineup: object) -> CriteriaResolver:
    """A resolver over a :class:`cas.billing.catalog.Lineup` (service_id -> criteria), with
    the catalog's rules (:func:`cas.headend.ecmgen.criteria_from_lineup`)."""
    from cas.headend.ecmgen import criteria_from_lineup

    return criteria_from_lineup(lineup).get
