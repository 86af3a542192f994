"""CPU time of a server and every process under it, from /proc: the benchmarks' second measure.

Requests per second on a shared 2-core machine move by ±30 % between rounds with load that is
not ours, which is more than the differences some benchmarks look for. The CPU time a server
spends per request barely moves with that load (a neighbour takes time slices, not this
process's instructions), so the benchmarks report it beside the throughput: the process, its
threads and its children (MLServer's inference workers, `serve`'s workers and span exporters).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(p) for p in (task / "children").read_text().split())
            except OSError:  # the thread or process ended meanwhile
                continue
    return found


def tree_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of `pid` and its live descendants, plus what their exited
    children were charged when reaped."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5); index 11.. after the name.
        total += sum(int(v) for v in fields[11:15])
    return total * _TICK_S
