"""Reading a response's `Server-Timing` header into server spans.

The header (W3C Server Timing) lists metrics as `name;dur=12.3;desc="..."`, comma separated, with
durations in milliseconds. Only durations are sent, not start offsets, so `place_server_spans`
lays the server's stages end to end inside the client's wait for the first byte, centred: the
network time is split evenly before and after. That is an estimate, and the spans say so. The
wait itself is bounded by the server's figures (`engine.remote.outcome.exchange_spans`): the client
reads "send complete" from its clock after the fact, possibly long after, and a server that
worked for T had the body at least T before its answer came.
"""

from __future__ import annotations

from typing import Any

ServerTiming = tuple[tuple[str, int], ...]  # (name, duration µs), in header order

# A hostile server could send a huge header; past this many metrics the rest are ignored.
MAX_METRICS = 32


def parse_server_timing(header: str | None) -> ServerTiming:
    """`validate;dur=0.012, inference;dur=1.5` -> (("validate", 12), ("inference", 1500))."""
    if not header:
        return ()
    metrics: list[tuple[str, int]] = []
    for entry in header.split(",", MAX_METRICS)[:MAX_METRICS]:
        parts = entry.split(";")
        name = parts[0].strip()
        if not name or len(name) > 64:
            continue
        dur_us = 0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    dur_ms = float(value.strip().strip('"'))
                except ValueError:
                    break
                if dur_ms == dur_ms and 0 <= dur_ms < 1e9:  # not NaN, not absurd
                    dur_us = round(dur_ms * 1000)
                break
        metrics.append((name, dur_us))
    return tuple(metrics)


def place_server_spans(
    timing: ServerTiming, wait_start_us: int, wait_us: int
) -> list[tuple[Any, ...]]:
    """Span tuples `("server.<name>", start µs, duration µs, attrs)` inside the wait span."""
    if not timing:
        return []
    total = sum(dur for _, dur in timing)
    # Centred in the wait. `exchange_spans` has already moved a late "send complete" mark back
    # so that the wait holds the server's total; more than the wait is then a server whose
    # figures cannot be true (another clock, or made up): its spans end where the wait ends,
    # since it cannot have finished after the answer's first byte.
    start = (
        wait_start_us + (wait_us - total) // 2
        if total <= wait_us
        else wait_start_us + wait_us - total
    )
    spans: list[tuple[Any, ...]] = []
    for name, dur in timing:
        spans.append(("server." + name, start, dur, _ESTIMATED))
        start += dur
    return spans


# Shared, never mutated: marks offsets that Server-Timing does not carry.
_ESTIMATED: dict[str, Any] = {"offset": "estimated"}
