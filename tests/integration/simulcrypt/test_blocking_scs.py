"""The blocking SCS client and the scrambler adapter against a live ECMG (own thread)."""

from __future__ import annotations

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.errors import LocalProtocolError
from cas.headend.simulcrypt import access_criteria as ac
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder
from cas.headend.simulcrypt.scs import (
    BlockingScsClient,
    EcmgRefused,
    EcmgServiceCrypto,
    PeerUnavailable,
)
from cas.messages import open_ecm

from .conftest import TIMEOUT_S, ThreadedServer

SUPER = 0xDEAD0000
AC = ac.encode_full(AccessCriteria(channel_id=3001, package_ids=(2,)))


@pytest.mark.parametrize("ts_packets", [False, True])
def test_blocking_client_and_scrambler_adapter(keys: OperatorKeys, ts_packets: bool) -> None:
    server = ThreadedServer(lambda: EcmgServer(sealed_ecm_builder(keys),
                                               EcmgConfig(ts_packets=ts_packets)))
    port = server.port
    try:
        with BlockingScsClient("127.0.0.1", port, channel_id=1, super_cas_id=SUPER,
                               timeout_s=TIMEOUT_S) as client:
            assert client.ts_packets is ts_packets
            crypto = EcmgServiceCrypto(client, channel_id=3001, stream_id=1, ecm_id=1,
                                       access_criteria=AC)
            for cp in (0, 1, 2, 0x10000):     # SimulCrypt CP numbers wrap at 16 bits
                section = crypto.ecm_section(cp)
                header, body = open_ecm(keys.ecm_key(0), section)
                assert header.channel_id == 3001 and header.table_id == 0x80 | (cp & 1)
                current = body.cw_odd if cp & 1 else body.cw_even
                assert current == crypto.cw(cp)
                assert crypto.ecm_section(cp) == section        # cached
            with pytest.raises(EcmgRefused) as info:
                client.cw_provision(1, 5, {5: bytes(8), 6: bytes(16)}, access_criteria=AC)
            assert info.value.error_statuses == (0x0011,)        # mixed CW lengths
            client.close_stream(1)
            with pytest.raises(LocalProtocolError):
                client.cw_provision(1, 5, {5: bytes(8), 6: bytes(8)}, access_criteria=AC)
    finally:
        server.stop()
    with pytest.raises(PeerUnavailable):
        BlockingScsClient("127.0.0.1", port, channel_id=1, super_cas_id=SUPER,
                          timeout_s=0.5)
