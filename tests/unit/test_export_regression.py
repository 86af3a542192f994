"""CSV and JSONL exports of runs with a regressor's and a text model's rows, from rows shaped as
the database stores them (JSON columns as text): a `value.<output>` column per regression output
beside the `score.<label>` ones, text inputs that keep their commas, quotes and line breaks, and
no cell a spreadsheet would run as a formula. (The service's real rows are exported through the
CLI in `tests/server/test_server_user_models.py`.)"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.export import write_csv, write_jsonl

SPANS = [["validate", 0, 10], ["inference", 10, 50]]
BOILING = {"fahrenheit": 212.0, "kelvin": 373.15}  # 100 °C
MINUS_40 = {"fahrenheit": -40.0, "kelvin": 233.15}


def stored(request_id: str, model: str, payload: dict[str, Any], output: Any) -> dict[str, Any]:
    """A request row as `storage.queries.iter_run_requests` yields it."""
    return {
        "request_id": request_id,
        "run_id": "run-1",
        "job_id": None,
        "source_row": None,
        "source": "form",
        "target": "local",
        "model": model,
        "client_id": "gui",
        "status": "ok" if output is not None else "rejected",
        "created_us": 1_000,
        "latency_us": 2_500,
        "input": json.dumps(payload),
        "metadata": "{}",
        "output": None if output is None else json.dumps(output),
        "error": None,
        "spans": json.dumps(SPANS),
    }


async def _rows(rows: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for row in rows:
        yield row


def export_csv(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
    out = io.StringIO(newline="")
    assert asyncio.run(write_csv(_rows(rows), out)) == len(rows)
    text = out.getvalue()
    return next(csv.reader(io.StringIO(text))), list(csv.DictReader(io.StringIO(text)))


def test_regression_values_get_a_column_per_output() -> None:
    header, rows = export_csv(
        [
            stored("r1", "temperature", {"celsius": 100}, {"values": BOILING}),
            stored("r2", "temperature", {"celsius": -40}, {"values": MINUS_40}),
            stored("r3", "temperature", {"celsius": "cold"}, None),  # rejected
        ]
    )
    assert [h for h in header if h.startswith("value.")] == ["value.fahrenheit", "value.kelvin"]
    assert not [h for h in header if h.startswith("score.")]
    assert [h for h in header if h.startswith("input.")] == ["input.celsius"]
    boiling, frozen, rejected = rows
    assert {k: float(boiling[f"value.{k}"]) for k in BOILING} == BOILING
    assert {k: float(frozen[f"value.{k}"]) for k in MINUS_40} == MINUS_40
    assert boiling["label"] == "" and boiling["input.celsius"] == "100"
    assert rejected["value.kelvin"] == "" and rejected["input.celsius"] == "cold"


def test_a_run_of_both_tasks_has_both_kinds_of_column() -> None:
    """A run may mix models (a served run, a load run): each request fills its own columns,
    the rest are empty; a remote `inferdeck` target's answer (`outputs`) counts too."""
    classified = {"label": "good", "scores": {"bad": 0.1, "good": 0.9}}
    remote = {"request_id": "x", "model": "temperature", "outputs": {"values": BOILING}}
    header, rows = export_csv(
        [
            stored("t1", "review", {"text": "good"}, classified),
            stored("r1", "temperature", {"celsius": 100}, {"values": BOILING}),
            stored("r2", "temperature", {"celsius": 100}, remote),
        ]
    )
    assert header[-6:] == [
        "input.text",
        "input.celsius",
        "score.bad",
        "score.good",
        "value.fahrenheit",
        "value.kelvin",
    ]
    text, local, far = rows
    assert text["label"] == "good" and text["score.good"] == "0.9" and text["value.kelvin"] == ""
    assert local["score.good"] == "" and local["input.text"] == ""
    assert float(far["value.kelvin"]) == 373.15 and far["label"] == ""


@pytest.mark.parametrize(
    "text",
    [
        'good, "great"\nand fine',
        "a,b,c",
        'only "quotes"',
        "two\r\nlines",
        "tab\tinside",
        "ünïcödé — ok",
    ],
)
def test_text_inputs_survive_the_csv_round_trip(text: str) -> None:
    _header, (row,) = export_csv([stored("t", "review", {"text": text}, {"label": "good"})])
    assert row["input.text"] == text


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tindented", "'\tindented"),
        ("-inf", "'-inf"),  # Python reads it as a number; a spreadsheet does not
        ("-1_0", "'-1_0"),
        ("-1.5", "-1.5"),  # a signed number stays itself
        ("+2e3", "+2e3"),
        ("good = fine", "good = fine"),  # only the first character counts
    ],
)
def test_a_text_a_spreadsheet_would_run_is_quoted_out(text: str, cell: str) -> None:
    _header, (row,) = export_csv([stored("t", "review", {"text": text}, {"label": "good"})])
    assert row["input.text"] == cell


def test_jsonl_keeps_the_values_as_numbers() -> None:
    out = io.StringIO()
    rows = [stored("r1", "temperature", {"celsius": 100}, {"values": BOILING})]
    asyncio.run(write_jsonl(_rows(rows), out))
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["output"] == {"values": BOILING} and record["input"] == {"celsius": 100}
