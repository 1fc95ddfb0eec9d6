"""A SimulCrypt message as a JSON-ready tree, for ``cas decode``."""

from __future__ import annotations

import hashlib
from typing import Any

from .frame import HEADER_SIZE, SimulcryptFormatError, parse_message
from .ids import USER_DEFINED_MIN, EcmgScsParam, Interface
from .schema import InterfaceSpec, ParamKind, ParamSpec, check_message
from .tables import interface_of


def _fingerprint(raw: bytes) -> str:
    return hashlib.sha256(b"cw|" + raw).hexdigest()[:8]


def _describe_value(spec: InterfaceSpec, pspec: ParamSpec, raw: bytes, *,
                    reveal: bool) -> Any:
    if spec.interface is Interface.ECMG_SCS and pspec.type == EcmgScsParam.CP_CW_COMBINATION:
        if len(raw) < 2:
            return {"raw": raw.hex()}
        cw = raw[2:]
        out: dict[str, Any] = {"CP_number": int.from_bytes(raw[:2], "big"),
                               "CW_length": len(cw)}
        # A CW in clear is key material: show it only when asked (cas decode --reveal).
        if reveal:
            out["CW"] = cw.hex()
        else:
            out["CW_fingerprint"] = _fingerprint(cw)
        return out
    if pspec.kind is ParamKind.BYTES:
        return raw.hex()
    lo, hi = pspec.length_range(2)
    if not lo <= len(raw) <= hi:
        return {"raw": raw.hex(), "error": "bad length"}
    value = pspec.decode(raw)
    if pspec.name == "error_status" and isinstance(value, int):
        return {"value": value, "name": spec.error_name(value)}
    return value


def describe(data: bytes, *, reveal: bool = False) -> dict[str, Any]:
    """A JSON-ready tree of one SimulCrypt message, for ``cas decode``.

    Unknown parameters appear with ``"name": "unknown"`` and their raw hex.  CWs inside
    CP_CW_combination are shown as a fingerprint unless ``reveal`` is true.  Raises
    :class:`SimulcryptFormatError` when the frame itself does not parse.
    """
    message = parse_message(data)
    spec = interface_of(message.message_type)
    tree: dict[str, Any] = {
        "kind": "simulcrypt",
        "interface": spec.interface.value if spec else "unknown",
        "protocol_version": message.protocol_version,
        "message_type": f"0x{message.message_type:04X}",
        "message": "unknown",
        "message_length": message.message_length,
    }
    mspec = spec.messages.get(message.message_type) if spec else None
    if mspec is not None:
        tree["message"] = mspec.name
    elif message.message_type >= USER_DEFINED_MIN:
        tree["message"] = "user_defined"
    params: list[dict[str, Any]] = []
    for p in message.parameters:
        entry: dict[str, Any] = {"type": f"0x{p.type:04X}", "length": len(p.value)}
        pspec = spec.params.get(p.type) if spec else None
        if pspec is None:
            entry["name"] = "user_defined" if p.type >= USER_DEFINED_MIN else "unknown"
            entry["raw"] = p.value.hex()
        else:
            entry["name"] = pspec.name
            entry["value"] = _describe_value(spec, pspec, p.value, reveal=reveal) \
                if spec else p.value.hex()
            if pspec.unit:
                entry["unit"] = pspec.unit
        params.append(entry)
    tree["parameters"] = params
    if spec is not None:
        try:
            check_message(message, spec)
            tree["valid"] = True
        except SimulcryptFormatError as exc:
            tree["valid"] = False
            tree["problem"] = {"error_status": f"0x{exc.error_status:04X}",
                               "name": spec.error_name(exc.error_status), "detail": str(exc)}
    return tree


def looks_like_simulcrypt(data: bytes) -> bool:
    """Cheap detection for ``cas decode``: a whole frame of a known interface."""
    if len(data) < HEADER_SIZE:
        return False
    try:
        message = parse_message(data)
    except SimulcryptFormatError:
        return False
    spec = interface_of(message.message_type)
    return spec is not None and message.message_type in spec.messages \
        and message.protocol_version in spec.versions
