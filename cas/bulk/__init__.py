"""Bulk import and export of the subscriber store (docs/bulk.md).

* :mod:`cas.bulk.rows` — the file formats (CSV, JSON lines), the columns of each kind and
  the per-row checks; a bad row becomes a :class:`~cas.bulk.rows.RowError` (file, line, reason).
* :mod:`cas.bulk.load` — import in chunks: references resolved, natural keys checked (a row
  already in the store is left alone, so a re-run changes nothing), new rows written with
  ``COPY`` on PostgreSQL and ``executemany`` on SQLite, all in one transaction.
* :mod:`cas.bulk.cards` — the fast card registration path shared with ``cas card personalise``.
* :mod:`cas.bulk.dump` — export in the same formats, so an export imports back unchanged.
"""
