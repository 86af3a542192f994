"""How far a load run is and how long it has left, from its plan and a live snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from engine.remote.plan import LoadPlan


@dataclass(frozen=True, slots=True)
class Progress:
    """A run's progress: the part done (0..1) and the seconds left (None while unknown)."""

    done: float
    left_s: float | None


def progress(plan: LoadPlan, elapsed_s: float, completed: int) -> Progress:
    """A timed run's progress is its clock; a counted run's is its answered requests, the time
    left estimated from the rate answered so far."""
    if plan.duration_s is not None:
        done = min(max(elapsed_s / plan.duration_s, 0.0), 1.0)
        return Progress(done, max(plan.duration_s - elapsed_s, 0.0))
    total = plan.requests or 0
    if total <= 0:
        return Progress(0.0, None)
    done = min(completed / total, 1.0)
    if completed <= 0 or elapsed_s <= 0:
        return Progress(done, None)
    return Progress(done, max(total - completed, 0) * elapsed_s / completed)


def left_text(left_s: float | None) -> str:
    """Time left as a person reads it: `42 s left`, `3 min 20 s left`, `1 h 05 min left`."""
    if left_s is None:
        return "time left: estimating…"
    seconds = round(left_s)
    if seconds < 60:
        return f"{seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min left"
