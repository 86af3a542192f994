"""Benchmark: what one redraw of each Monitor plot costs the GUI thread. Run: `make bench-plots`.

`bench_gui.py` drops its file a few seconds after the app starts, so its plots hold a few
seconds of data at the right edge of a five-minute range. A person who has had the app open for
a while sees the range full, and a repaint then costs more (a filled curve costs by the edges it
fills, a line by its points). This starts the real Monitor view in a window (under Xvfb when it
is installed and no display is set, offscreen otherwise), fills its rings with `--seconds` of
busy-engine snapshots at the engine's 40 a second, feeds the histogram latencies each round,
and times each plot's redraw (`setData` and the range, as the plots' turns do it) and its
paint (the events that follow, flushed to the display), `--rounds` times with every plot
stale. Medians per plot and per round of all plots print as a table and go to
bench/out/plots.json, for a short history and a full one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
SNAPSHOTS_PER_S = 40  # the engine's publish rate while busy


def child(seconds: float, rounds: int, result_file: Path) -> None:
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from bench.bench_gui import busy_snapshot  # (the child runs with the repository on its path)
    from gui.monitor.monitor_view import MonitorView

    app = QApplication(sys.argv[:1])
    view = MonitorView(redraw_hz=1)  # the benchmark takes the turns itself
    view.resize(1280, 760)
    view.show()
    view.ensure_built()
    for _ in range(50):
        app.processEvents()
    rng = np.random.default_rng(7)

    count = int(seconds * SNAPSHOTS_PER_S)
    now = time.monotonic()
    for i in range(count):
        view.on_stats(busy_snapshot(rng, now - seconds + i / SNAPSHOTS_PER_S, i))
    turns = view._turns
    names = [getattr(d, "__name__", str(d)).lstrip("_") for d in turns._drawers]
    draw_ms: dict[str, list[float]] = {n: [] for n in names}
    paint_ms: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        view.on_stats(busy_snapshot(rng, time.monotonic(), count))
        # (the histogram's own feed, as `on_finished` gives it: a tick's ok latencies)
        view.recent_ms.add(time.time(), 5.0 + rng.gamma(2.0, 4.0, 250))
        for i, name in enumerate(names):
            turns._drawn[i] = -1  # stale, so `draw_next` redraws plot i
            turns._next = i
            t0 = time.perf_counter()
            turns.draw_next()
            t1 = time.perf_counter()
            app.processEvents()  # the paint it asked for, and the flush to the display
            t2 = time.perf_counter()
            draw_ms[name].append((t1 - t0) * 1000)
            paint_ms[name].append((t2 - t1) * 1000)
        time.sleep(0.02)
    result = {
        name: {
            "draw_ms": statistics.median(draw_ms[name]),
            "paint_ms": statistics.median(paint_ms[name]),
        }
        for name in names
    }
    result_file.write_text(json.dumps(result))


def run_once(seconds: float, rounds: int, tmp: Path) -> dict[str, Any]:
    result_file = tmp / f"plots-{seconds:g}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(seconds)]
    command += ["--rounds", str(rounds), "--result", str(result_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp / "config")}
    if not env.get("DISPLAY") and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", "-s", "-screen 0 1440x900x24", *command]
    else:
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    subprocess.run(command, check=True, env=env, cwd=REPO, timeout=600)
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, nargs="+", default=[20.0, 300.0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--child", type=float)
    parser.add_argument("--result", type=Path)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.rounds, args.result)
        return
    import tempfile

    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            report[f"{seconds:g}s"] = run_once(seconds, args.rounds, Path(tmp))
    (OUT / "plots.json").write_text(json.dumps(report, indent=2))
    print(f"medians of {args.rounds} redraws per plot, history of busy snapshots at 40/s:")
    header = "".join(f"{key + ' of history':>24}" for key in report)
    print(f"  {'plot':<12}{header}")
    for name in next(iter(report.values())):
        cells = "".join(
            f"{r[name]['draw_ms']:>11.2f} + {r[name]['paint_ms']:>6.2f} ms" for r in report.values()
        )
        print(f"  {name[5:] if name.startswith('draw_') else name:<12}{cells}")
    totals = "".join(
        f"{sum(v['draw_ms'] + v['paint_ms'] for v in r.values()):>21.2f} ms"
        for r in report.values()
    )
    print(f"  {'all plots':<12}{totals}")


if __name__ == "__main__":
    main()
