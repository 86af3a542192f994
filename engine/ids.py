"""Time-sortable identifiers (UUIDv7, RFC 9562) for requests and runs.

Python 3.11 has no `uuid.uuid7`, so this builds one: 48 bits of Unix milliseconds, then a 12-bit
counter that keeps IDs made in the same millisecond in order, then 62 random bits (from a PRNG
seeded by the OS at import).
"""

from __future__ import annotations

import random
import threading
import time

_lock = threading.Lock()
# IDs need uniqueness, not secrecy: a seeded PRNG is ~20x cheaper than os.urandom per call here.
_random = random.Random()
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
