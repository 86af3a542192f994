"""Run IDs a person can tell apart and type back, and terminal-safe output, through the real CLI
on a real SQLite file.

Short run IDs used to be the first 8 hex digits of a UUIDv7, the same for about 65 s, and
`runs show`/`export` took the ID as a LIKE pattern: `%` picked a run, and an ambiguous prefix
said "no run matches". File and target names reached the terminal raw (newline, ESC).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult

from engine.ids import short_id
from engine.runs import begin_run, end_run
from storage import open_database

Cli = Callable[..., CliResult]
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def _make_runs(path: Path, kinds: list[str]) -> list[str]:
    """Runs made one right after another (well within one second), as a script or the app
    starting several makes them; each finished, as `runs show` expects."""

    async def make() -> list[str]:
        db = await open_database(path)
        try:
            runs = [await begin_run(db, kind, {}) for kind in kinds]
            for run in runs:
                await end_run(db, run)
            await db.writer.flush()
        finally:
            await db.close()
        return [run.run_id for run in runs]

    return asyncio.run(make())


@pytest.fixture
def two_runs(db_path: Path) -> list[str]:
    return _make_runs(db_path, ["load", "load"])


def test_runs_made_in_the_same_second_have_distinct_short_ids_each_found(
    cli: Cli, two_runs: list[str]
) -> None:
    a, b = two_runs
    assert short_id(a) != short_id(b)
    assert a.startswith(short_id(a)) and b.startswith(short_id(b))  # a literal prefix
    for run_id in (a, b):
        shown = cli("runs", "show", short_id(run_id), "--json")
        assert shown.code == 0, shown.stderr
        assert shown.summary["run_id"] == run_id
    exported = cli("export", short_id(b), "--format", "jsonl")
    assert exported.code == 0, exported.stderr


def test_an_ambiguous_prefix_lists_the_runs_it_matches(cli: Cli, two_runs: list[str]) -> None:
    a, b = two_runs
    common = a[: next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)]
    for command in (("runs", "show", common), ("export", common, "--format", "csv")):
        res = cli(*command)
        assert res.code == 2, res.stderr
        assert res.stdout == ""
        first, *listed = res.stderr.splitlines()
        assert f"2 runs begin with {common!r}" in first and "give more of the ID" in first
        assert [line.split()[:2] for line in listed] == [[a, "load"], [b, "load"]]
        assert all("started 20" in line for line in listed)  # with its start time
        assert "Traceback" not in res.stderr


def test_like_wildcards_are_not_patterns(cli: Cli, db_path: Path) -> None:
    _make_runs(db_path, ["load"])  # one run: a pattern would pick it
    for command in (
        ("runs", "show", "%"),
        ("runs", "show", "________-%"),
        ("export", "%", "--format", "jsonl"),
    ):
        res = cli(*command)
        assert res.code == 2, res.stdout
        assert res.stdout == ""
        assert res.stderr.splitlines() == [
            f"inferdeck: no run matches {command[-1] if command[0] == 'runs' else '%'!r} "
            "(see: inferdeck runs list)"
        ]


def test_compare_window_names_two_close_runs_apart(qapp: object, db_path: Path) -> None:
    from gui.runs.runs_compare import RunsCompareView

    a, b = _make_runs(db_path, ["load", "load"])

    async def rows() -> list[object]:
        from storage import queries

        db = await open_database(db_path)
        try:
            return [await queries.get_run(db.reader, run_id) for run_id in (a, b)]
        finally:
            await db.close()

    run_a, run_b = asyncio.run(rows())
    view = RunsCompareView(run_a, run_b)  # type: ignore[arg-type]
    try:
        title = view.windowTitle()
        assert title == f"Compare runs {short_id(a)} and {short_id(b)}"
        assert short_id(a) != short_id(b)
    finally:
        view.close()
        view.deleteLater()


def test_control_characters_in_names_are_escaped_in_output(cli: Cli, tmp_path: Path) -> None:
    """A file whose name holds a newline and an escape sequence: every line about it shows the
    name escaped, and no raw control character reaches stdout or stderr."""
    name = "bad\nrow\x1b[31mred\x1b]0;owned\x07.jsonl"
    src = tmp_path / name
    src.write_text(json.dumps(ROW) + "\n" + '{"sepal_length": 1}\n')
    missing = tmp_path / "gone\x1b[2J.jsonl"
    res = cli("predict", src)
    assert res.code == 1, res.stderr
    escaped = str(src).replace("\n", "\\n").replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert f"{escaped}: line 2" in res.stderr, res.stderr
    gone = cli("predict", missing)
    assert gone.code == 2
    shown = cli("runs", "show", res.stdout.split()[1].rstrip(":"))  # `run ID: ...`
    assert shown.code == 0, shown.stderr
    assert escaped in shown.stdout  # the file job's source
    target = cli("targets", "show", "t\x1b[31m\nx")  # a target name, in an error
    assert target.code == 2 and "'t\\x1b[31m\\nx'" in target.stderr, target.stderr
    choice = cli("export", "x", "--format", "\x1b[2J")  # argparse echoes the bad value
    assert choice.code == 2 and "'\\x1b[2J'" in choice.stderr, choice.stderr
    for out in (res, gone, shown, target, choice):
        for text in (out.stdout, out.stderr):
            assert not any(ch in text for ch in "\x1b\x07\r"), repr(text)
            # The name's newline forged no line of its own.
            assert not any(line.startswith("row") for line in text.splitlines()), text
    assert "gone\\x1b[2J.jsonl" in gone.stderr
    assert gone.stderr.count("\n") == 1  # one line: the newline-free name stayed on it
