"""PSI rewriting: PMTs with our CA_descriptor, the SDT with logical channel numbers, the CAT
announcing the EMM PID (ISO/IEC 13818-1 §2.4.4, EN 300 468, EACEM/IEC 62216).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from cas.errors import FormatError
from cas.formats import psi


def _is_ours(desc: psi.Descriptor, ca_system_id: int) -> bool:
    return isinstance(desc, psi.CaDescriptor) and desc.ca_system_id == ca_system_id


def rewrite_pmt(section: bytes, *, ca_system_id: int, ecm_pid: int,
                scrambling_mode: int | None) -> bytes:
    """The PMT section with our CA_descriptor (and scrambling_descriptor) at program level.

    Existing CA_descriptors of our CA_system_ID and scrambling_descriptors are replaced; other
    descriptors (including other CA systems', for SimulCrypt) are kept in order.
    """
    pmt = psi.parse_pmt(section)
    kept: list[psi.Descriptor] = [
        d for d in pmt.descriptors
        if not _is_ours(d, ca_system_id) and not isinstance(d, psi.ScramblingDescriptor)]
    kept.append(psi.CaDescriptor(ca_system_id=ca_system_id, ca_pid=ecm_pid))
    if scrambling_mode is not None:
        kept.append(psi.ScramblingDescriptor(scrambling_mode=scrambling_mode))
    return psi.build_pmt(replace(pmt, descriptors=tuple(kept)))


def _is_lcn_or_eacem_pds(desc: psi.Descriptor) -> bool:
    return isinstance(desc, psi.RawDescriptor) and (
        desc.tag == psi.LOGICAL_CHANNEL_DESCRIPTOR_TAG
        or (desc.tag == psi.PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG
            and desc.data == psi.EACEM_PRIVATE_DATA_SPECIFIER.to_bytes(4, "big")))


def _rewrite_service(sv: psi.SdtService, channel_numbers: Mapping[int, int],
                     scrambled: Collection[int]) -> psi.SdtService:
    number = channel_numbers.get(sv.service_id)
    descriptors = sv.descriptors
    if number is not None:
        kept = [d for d in descriptors if not _is_lcn_or_eacem_pds(d)]
        kept.append(psi.private_data_specifier_descriptor(psi.EACEM_PRIVATE_DATA_SPECIFIER))
        kept.append(psi.logical_channel_descriptor([(sv.service_id, number)]))
        descriptors = tuple(kept)
    # EN 300 468 §5.2.3: free_CA_mode 1 = one or more components are controlled by a CA system.
    return replace(sv, descriptors=descriptors,
                   free_ca_mode=sv.free_ca_mode or sv.service_id in scrambled)


def rewrite_sdt_table(sections: Sequence[bytes], channel_numbers: Mapping[int, int], *,
                      scrambled: Collection[int] = ()) -> tuple[bytes, ...]:
    """The complete SDT actual table ``sections`` (section 0..last, in order) with a
    logical_channel_descriptor for every service in ``channel_numbers`` (EN 300 468 §5.2.3
    service loop; EACEM/IEC 62216 tag 0x83 after an EACEM private_data_specifier_descriptor,
    §6.2.31, so it is in scope) and free_CA_mode = 1 on every service in ``scrambled``.

    A listed service's earlier LCN and EACEM specifier descriptors are replaced; everything
    else is kept in order. The services are spread over as many sections as they now need
    (:func:`cas.formats.psi.split_sdt`: the descriptors added to a full section would not fit
    it). SDT other (0x46) and tables where nothing changes come back unchanged, byte for byte.
    """
    tables = [psi.parse_sdt(section) for section in sections]
    first = tables[0]
    if not first.actual:
        return tuple(sections)
    services = [sv for table in tables for sv in table.services]
    new = [_rewrite_service(sv, channel_numbers, scrambled) for sv in services]
    if new == services:
        return tuple(sections)
    whole = replace(first, services=tuple(new), section_number=0, last_section_number=0)
    return tuple(psi.build_sdt(part) for part in psi.split_sdt(whole))


def rewrite_sdt(section: bytes, channel_numbers: Mapping[int, int], *,
                scrambled: Collection[int] = ()) -> bytes:
    """:func:`rewrite_sdt_table` for an SDT that is one section and stays one section
    (:class:`FormatError` when the rewritten services need more than one)."""
    out = rewrite_sdt_table([section], channel_numbers, scrambled=scrambled)
    if len(out) != 1:
        raise FormatError(f"the rewritten SDT needs {len(out)} sections",
                          path="sdt.section_length").with_id(
            "headend.sdt_section_length_rewritten", n=len(out))
    return out[0]


def build_cat(*, ca_system_id: int, emm_pid: int,
              other_descriptors: Iterable[psi.Descriptor] = (), version: int = 0) -> bytes:
    """A CAT section (ISO/IEC 13818-1 §2.4.4.6) announcing ``emm_pid`` for our CA system."""
    loop = [d for d in other_descriptors if not _is_ours(d, ca_system_id)]
    loop.append(psi.CaDescriptor(ca_system_id=ca_system_id, ca_pid=emm_pid))
    return psi.build_cat(psi.Cat(version_number=version, descriptors=tuple(loop)))
