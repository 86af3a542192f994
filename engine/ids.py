"""Time-sortable identifiers (UUIDv7, RFC 9562) for requests and runs.

Python 3.11 has no `uuid.uuid7`, so this builds one: 48 bits of Unix milliseconds, then a 12-bit
counter that keeps IDs made in the same millisecond in order, then 62 random bits (from a PRNG
seeded by the OS at import).
"""

from __future__ import annotations

import os
import random
import threading
import time

_lock = threading.Lock()
# IDs need uniqueness, not secrecy: a seeded PRNG is ~20x cheaper than os.urandom per call here.
_random = random.Random()
# A forked worker (`serve --workers N`) would otherwise repeat its parent's sequence.
os.register_at_fork(after_in_child=_random.seed)
_last_ms = 0
_counter = 0


def new_id() -> str:
    """A UUIDv7 string such as `0193a8f2-7c1e-7a3b-9f21-5d0c8e4b2a17`; later calls sort later."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, 0
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4,096 IDs in one millisecond: borrow the next one
                _last_ms, _counter = _last_ms + 1, 0
            ms = _last_ms
        counter = _counter
    rand = _random.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# How much of a run ID people are shown: `xxxxxxxx-xxxx-7ccc`, the 48-bit millisecond timestamp
# (12 hex digits), the version digit and the 12-bit counter. The first 8 digits alone change
# only every 2^16 ms (about 65 s), so two runs made seconds apart looked the same. With the
# whole timestamp, runs started a millisecond or more apart differ; with the counter, so do any
# two runs made by one process, even in the same millisecond (new_id never repeats a pair).
# Only two processes starting runs in the same millisecond can share it, and then the CLI lists
# both and asks for more of the ID. It stays a literal prefix of the full ID, so `inferdeck runs
# show` and `export` accept exactly what is shown, and short IDs still sort by time (the random
# tail would be unique too, but it is not a prefix and has no order).
SHORT_ID_CHARS = 18


def short_id(run_id: str) -> str:
    """The part of a run ID shown to people, e.g. `0193a8f2-7c1e-7a3b`."""
    return run_id[:SHORT_ID_CHARS]
