"""The set-top-box stub: chipset, demux, EMM filter, descrambler, lock report (docs/stb.md).

``firmware_stub.box.Box`` is the box (``Box.boot``, ``box.scan``, ``box.watch``);
``firmware_stub.cli`` is the ``stb`` command.  The box holds no head-end key and never
imports ``cas.store``, ``cas.billing`` or ``cas.headend``.
"""
