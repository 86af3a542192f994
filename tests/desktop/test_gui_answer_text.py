"""How History words an answer of each task: the result column and a re-run's comparison.

A regressor's named numbers show as `name=value` at five significant digits; a local, an
`inferdeck` service's and an OIP server's answers all read the same; a re-run that moves a
value says which and by how much.
"""

from __future__ import annotations

import json
from typing import Any

from gui.history.requests_table_model import answer_label, answer_values, result_text
from gui.history.trace_view import compare_answers

LOCAL = {"values": {"fahrenheit": 212.0, "kelvin": 373.15}}
SERVICE = {"outputs": LOCAL}
OIP = {
    "outputs": [
        {"name": "fahrenheit", "datatype": "FP32", "shape": [1, 1], "data": [212.0]},
        {"name": "kelvin", "datatype": "FP32", "shape": [1, 1], "data": [373.15]},
    ]
}


def test_a_regressors_answer_reads_the_same_from_every_source() -> None:
    for answer in (LOCAL, SERVICE, OIP):
        assert answer_values(answer) == {"fahrenheit": 212.0, "kelvin": 373.15}
        assert result_text(answer) == "fahrenheit=212, kelvin=373.15"
        assert answer_label(answer) is None
    assert result_text({"label": "setosa", "scores": {"setosa": 0.9}}) == "setosa"


def _row(output: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "output": json.dumps(output)}  # as the database stores it


def test_a_rerun_of_a_regressor_names_the_value_that_moved() -> None:
    assert compare_answers(_row(LOCAL), _row(OIP)).startswith("same values")
    moved = {"values": {"fahrenheit": 213.5, "kelvin": 373.15}}
    text = compare_answers(_row(LOCAL), _row(moved))
    assert "fahrenheit" in text and "212" in text and "213.5" in text and "kelvin" not in text
    tiny = {"values": {"fahrenheit": 212.000001, "kelvin": 373.15}}
    assert compare_answers(_row(LOCAL), _row(tiny)).startswith("same values to 5 digits")
