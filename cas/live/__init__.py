"""The live head-end: real-time scrambled playout over IP (``cas headend run CONFIG.toml``).

One idea per module:

* :mod:`cas.live.config` — the TOML configuration, checked key by key;
* :mod:`cas.live.sources` — clear TS in: a file in a seamless loop, ffmpeg (lavfi), UDP;
* :mod:`cas.live.psi` — PAT, PMTs with CA_descriptors, CAT, SDT with LCNs, repeated;
* :mod:`cas.live.scrambling` — CWs per crypto-period, ECMs (ours or an ECMG's), the cipher;
* :mod:`cas.live.playout` — the multiplex: sources + PSI + ECMs + EMMs on one time line;
* :mod:`cas.live.pacer` — datagrams out at their PCR-derived time, no drift, no bursts;
* :mod:`cas.live.outputs` — UDP (unicast, multicast, RTP), file, stdout;
* :mod:`cas.live.service` — the long-running service wiring all of it;
* :mod:`cas.live.carousel`, :mod:`cas.live.metrics`, :mod:`cas.live.ops`,
  :mod:`cas.live.emmg_out` — the EMM carousel fed by the store and the operations side.
"""
