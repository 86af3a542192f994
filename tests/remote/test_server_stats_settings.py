"""A target's server-statistics settings (`--metrics-url`, `--prometheus`, `--selector`,
`--no-server-stats`) through `targets add|edit|show` on a real SQLite file, their validation,
and the plain functions that turn the server's figures into what views show: the series, the
Little's-law check between the client's and the server's views, a trace's interval, and the
rows Compare adds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.compare import RunFigures, deltas, figures
from engine.remote.load.server_view import (
    interval_at,
    interval_text,
    server_status,
    server_values,
    views_disagree,
)
from engine.remote.load.snapshot import LoadSnapshot
from engine.remote.target_store import TargetError, make_target


def test_targets_keep_their_server_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERDECK_KEYRING", "memory")
    db = str(tmp_path / "t.db")
    add = ["targets", "add", "fleet", "http://127.0.0.1:8000", "--protocol", "oip"]
    add += ["--model", "iris", "--metrics-url", "http://127.0.0.1:8002/metrics/"]
    add += ["--prometheus", "http://127.0.0.1:9090", "--selector", '{job="inferdeck"}']
    assert main([*add, "--no-server-stats", "--db", db]) == 0
    assert main(["targets", "show", "fleet", "--json", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["metrics_url"] == "http://127.0.0.1:8002/metrics"
    assert shown["prometheus_url"] == "http://127.0.0.1:9090"
    assert shown["prometheus_selector"] == '{job="inferdeck"}'
    assert shown["server_stats"] is False

    # edit: only what is given changes; '' forgets a URL, --server-stats turns the rest on.
    assert (
        main(["targets", "edit", "fleet", "--metrics-url", "", "--server-stats", "--db", db]) == 0
    )
    assert main(["targets", "show", "fleet", "--json", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["metrics_url"] is None and shown["server_stats"] is True
    assert shown["prometheus_url"] == "http://127.0.0.1:9090"
    assert main(["targets", "show", "fleet", "--db", db]) == 0
    assert 'Prometheus http://127.0.0.1:9090 {job="inferdeck"}' in capsys.readouterr().out

    for argv, says in [
        (["--prometheus", "http://p:9090"], "needs both its URL"),
        (["--metrics-url", "http://user:pw@h:8002/metrics"], "must not carry credentials"),
        (["--metrics-url", "http://h/metrics?token=s3cr3t"], "must not carry credentials"),
        (["--prometheus", "http://p", "--selector", "job=x"], "label selector in braces"),
        (["--metrics-url", "file:///etc/passwd"], "http:// or https://"),
    ]:
        assert main(["targets", "add", "bad", "http://h", *argv, "--db", db]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
        assert "s3cr3t" not in err[0] and "pw@" not in err[0]


def test_load_refuses_bad_sources_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["load", "http://127.0.0.1:9", "--concurrency", "1", "--requests", "1"]
    assert main([*argv, "--selector", '{job="x"}']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs both its URL" in err[0], err


def test_a_selector_alone_or_in_clear_credentials_is_refused() -> None:
    with pytest.raises(TargetError, match="needs both"):
        make_target(name="t", base_url="http://h", prometheus_selector='{job="a"}')
    target = make_target(name="t", base_url="http://h", metrics_url="  ", prometheus_url="")
    assert target.metrics_url is None and target.prometheus_url is None


def _snap(**fields: object) -> LoadSnapshot:
    base: dict[str, object] = {
        "elapsed_s": 5.0,
        "sent": 1000,
        "in_flight": 8,
        "completed": 990,
        "ok": 990,
        "failed": 0,
        "errors": {},
        "throughput_per_s": 1000.0,
        "errors_per_s": 0.0,
        "p50_ms": 8.0,
        "p99_ms": 12.0,
        "stage_ms": {},
        "done": False,
    }
    return LoadSnapshot(**(base | fields))  # type: ignore[arg-type]


def _live(**interval: object) -> dict[str, object]:
    return {"interval": interval, "in_use": ["OIP statistics"], "problems": []}


def test_series_values_are_nan_where_the_server_has_no_figure() -> None:
    values = server_values(_live(throughput_per_s=950.0, queue_ms=0.5, pending=3))
    assert values["server_s"] == 950.0 and values["server_queue"] == 0.5
    assert values["server_pending"] == 3.0 and math.isnan(values["server_compute"])
    assert all(math.isnan(v) for v in server_values(None).values())


def test_littles_law_says_when_the_views_part() -> None:
    # 1,000/s at 7.5 ms on the server: 7.5 requests in it, against 8 out: they agree.
    agree = _snap(server=_live(throughput_per_s=1000.0, queue_ms=1.5, compute_ms=6.0))
    assert views_disagree(agree) is None
    assert "client and server agree" in server_status(agree)
    # The server counts twice this client's rate: somebody else is sending too.
    busy = _snap(server=_live(throughput_per_s=2000.0, server_ms=4.0))
    assert "other callers" in (views_disagree(busy) or "")
    # 64 out, but the server holds 1000/s × 2 ms = 2: the rest wait outside it.
    outside = _snap(in_flight=64, server=_live(throughput_per_s=1000.0, server_ms=2.0))
    text = views_disagree(outside) or ""
    assert "wait outside it" in text and "64 requests" in text
    assert "client and server disagree" in server_status(outside)
    # Without a server time there is nothing to weigh.
    assert views_disagree(_snap(server=_live(throughput_per_s=1000.0))) is None
    missing = _snap(server={"interval": None, "in_use": [], "problems": ["metrics: down"]})
    assert server_status(missing) == "No server figures · missing: metrics: down"
    assert server_status(_snap()) == ""


def test_a_trace_finds_the_second_around_its_request() -> None:
    series = [
        {"at_us": 2_000_000, "seconds": 1.0, "throughput_per_s": 900.0, "queue_ms": 0.25},
        {"at_us": 3_000_000, "seconds": 1.0, "throughput_per_s": 950.0, "pending": 4},
    ]
    assert interval_at(series, 1_500_000) is series[0]
    assert interval_at(series, 2_500_000) is series[1]
    assert interval_at(series, 3_500_000) is None
    assert interval_text(series[0]) == "900 requests/s · queue 0.25 ms"
    assert interval_text(series[1]) == "950 requests/s · pending 4"


def test_compare_adds_the_server_rows_only_when_a_run_has_them() -> None:
    plain = {"latency_ms": {"p50": 1.0}, "throughput_per_s": 10.0, "failed": 0}
    a, b = figures("a", "A", plain, None), figures("b", "B", plain, None)
    assert not [d for d in deltas(a, b) if d.name.startswith("server")]
    served = plain | {"server": {"queue_ms": 2.0, "compute_ms": 1.0, "pending_max": 4}}
    faster = plain | {"server": {"queue_ms": 1.0, "compute_ms": 1.0, "pending_max": 4}}
    rows = {
        d.name: d.verdict
        for d in deltas(figures("a", "A", served, None), figures("b", "B", faster, None))
    }
    assert rows["server queue ms"] == "better" and rows["server compute ms"] == "same"
    assert rows["server pending max"] == "same" and "server batch size" not in rows
    assert isinstance(a, RunFigures)
