"""Streaming file ingest: JSON, JSONL, CSV and images, one `RawRow` at a time.

Readers never load a file whole and never raise for bad content: a bad row comes back as a
`RawRow` with an error naming its row, line and reason; a file that cannot be read at all raises
`SourceError` before its first row.
"""

from engine.ingest.detect import SUPPORTED_SUFFIXES, FileFormat, expand_inputs, open_rows, sniff
from engine.ingest.rows import MAX_ROW_BYTES, RawRow, SourceError, open_source

__all__ = [
    "MAX_ROW_BYTES",
    "SUPPORTED_SUFFIXES",
    "FileFormat",
    "RawRow",
    "SourceError",
    "expand_inputs",
    "open_rows",
    "open_source",
    "sniff",
]
