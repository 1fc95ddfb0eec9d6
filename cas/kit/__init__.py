"""The STB conformance kit: scenario files, ``cas kit build`` and ``cas kit run`` (docs/kit.md)."""
