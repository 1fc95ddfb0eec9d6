"""Field-engineer diagnostics: say what is wrong with a stream, a box, a card or an account.

* :mod:`cas.diag.probe` — ``cas diag stream``: a head-end-style transport stream probe
  (services, PIDs, bitrates, scrambling, CA signalling, ECM/EMM timing, crypto-periods,
  EMM address types) with TR 101 290-like alarms (:mod:`cas.diag.alarms`);
  :mod:`cas.diag.liveprobe` runs it on a live UDP/RTP input for a while.
* :mod:`cas.diag.boxinfo` — ``cas diag box``: the STB stub's Chip ID record and NVRAM.
* :mod:`cas.diag.visit` — ``cas diag visit``: card + box + stream (+ head-end records) ->
  one verdict per channel with its cause and its fix, most likely root cause first.
* :mod:`cas.diag.report` — the support-ticket file (JSON or self-contained HTML).
* :mod:`cas.diag.synth` — synthetic streams with chosen faults, for tests and benchmarks.

Every on-screen code and message comes from :mod:`cas.reasons`.
"""
