"""``cas decode`` views of PSI/SI tables and descriptors: JSON-able trees."""

from __future__ import annotations

from typing import Any

from cas.formats.psi.descriptors import (
    CaDescriptor,
    Descriptor,
    RawDescriptor,
    ScramblingDescriptor,
    ServiceDescriptor,
)
from cas.formats.psi.tables import (
    TABLE_ID_CAT,
    TABLE_ID_PAT,
    TABLE_ID_PMT,
    TABLE_ID_SDT_ACTUAL,
    TABLE_ID_SDT_OTHER,
    Cat,
    Pat,
    Pmt,
    Sdt,
)

STREAM_TYPE_NAMES: dict[int, str] = {
    0x01: "MPEG-1 video",
    0x02: "MPEG-2 video",
    0x03: "MPEG-1 audio",
    0x04: "MPEG-2 audio",
    0x06: "PES private data",
    0x0F: "AAC audio (ADTS)",
    0x11: "AAC audio (LATM)",
    0x1B: "H.264 video",
    0x24: "HEVC video",
    0x81: "AC-3 audio (ATSC)",
}
SCRAMBLING_MODE_NAMES: dict[int, str] = {
    0x01: "DVB-CSA1",
    0x02: "DVB-CSA2",
    0x03: "DVB-CSA3 standard",
    0x04: "DVB-CSA3 minimally enhanced",
    0x05: "DVB-CSA3 fully enhanced",
    0x10: "DVB-CISSA v1",
}


# --- describe ----------------------------------------------------------------------------------


def _describe_descriptor(d: Descriptor) -> dict[str, Any]:
    if isinstance(d, CaDescriptor):
        return {
            "descriptor": "CA_descriptor",
            "descriptor_tag": CaDescriptor.TAG,
            "CA_system_ID": d.ca_system_id,
            "CA_PID": d.ca_pid,
            "private_data": d.private_data.hex(),
        }
    if isinstance(d, ScramblingDescriptor):
        return {
            "descriptor": "scrambling_descriptor",
            "descriptor_tag": ScramblingDescriptor.TAG,
            "scrambling_mode": d.scrambling_mode,
            "scrambling_mode_name": SCRAMBLING_MODE_NAMES.get(d.scrambling_mode, "unknown"),
        }
    if isinstance(d, ServiceDescriptor):
        return {
            "descriptor": "service_descriptor",
            "descriptor_tag": ServiceDescriptor.TAG,
            "service_type": d.service_type,
            "service_provider_name": d.provider_text,
            "service_name": d.name_text,
        }
    if isinstance(d, RawDescriptor):
        return {"descriptor": "unknown", "descriptor_tag": d.tag, "data": d.data.hex()}
    raise TypeError(f"cannot describe {type(d).__name__}")


def describe(obj: Pat | Cat | Pmt | Sdt | Descriptor) -> dict[str, Any]:
    """JSON-able view of a table or descriptor, for ``cas decode``."""
    if isinstance(obj, Pat):
        return {
            "table": "PAT",
            "table_id": TABLE_ID_PAT,
            "transport_stream_id": obj.transport_stream_id,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "programs": [
                {
                    "program_number": p.program_number,
                    ("network_PID" if p.program_number == 0 else "program_map_PID"): p.pid,
                }
                for p in obj.programs
            ],
        }
    if isinstance(obj, Cat):
        return {
            "table": "CAT",
            "table_id": TABLE_ID_CAT,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "descriptors": [_describe_descriptor(d) for d in obj.descriptors],
        }
    if isinstance(obj, Pmt):
        return {
            "table": "PMT",
            "table_id": TABLE_ID_PMT,
            "program_number": obj.program_number,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "PCR_PID": obj.pcr_pid,
            "program_info": [_describe_descriptor(d) for d in obj.descriptors],
            "streams": [
                {
                    "stream_type": s.stream_type,
                    "stream_type_name": STREAM_TYPE_NAMES.get(s.stream_type, "unknown"),
                    "elementary_PID": s.elementary_pid,
                    "ES_info": [_describe_descriptor(d) for d in s.descriptors],
                }
                for s in obj.streams
            ],
        }
    if isinstance(obj, Sdt):
        return {
            "table": "SDT",
            "table_id": TABLE_ID_SDT_ACTUAL if obj.actual else TABLE_ID_SDT_OTHER,
            "transport_stream_id": obj.transport_stream_id,
            "original_network_id": obj.original_network_id,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "services": [
                {
                    "service_id": s.service_id,
                    "EIT_schedule_flag": int(s.eit_schedule_flag),
                    "EIT_present_following_flag": int(s.eit_present_following_flag),
                    "running_status": s.running_status,
                    "free_CA_mode": int(s.free_ca_mode),
                    "descriptors": [_describe_descriptor(d) for d in s.descriptors],
                }
                for s in obj.services
            ],
        }
    return _describe_descriptor(obj)
