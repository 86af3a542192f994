"""Malformed input through the real CLI (`inferdeck predict`) and a real SQLite file.

The contract: every bad row gets one line on stderr naming the file, the row/line and the field;
the good rows around it still run and are committed `ok`; every bad row is committed `rejected`
with an `error` JSON; exit 1 when some rows were bad, exit 2 with a one-line message when nothing
could run; never a traceback.

Each CLI start costs seconds (it loads the models), so the row-level cases share one run over many
files (`row_run`, module-scoped) and each test checks its own file there; the exit-2 cases and the
ones that need a clean exit get their own runs.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, run_cli
from PIL import Image

Cli = Callable[..., CliResult]

IRIS_ROW: dict[str, Any] = {
    "sepal_length": 5.1,
    "sepal_width": 3.5,
    "petal_length": 1.4,
    "petal_width": 0.2,
}
GOOD = json.dumps(IRIS_ROW)
CSV_HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"
BOM = b"\xef\xbb\xbf"


def iris(**changes: Any) -> str:
    """A JSON iris row with some fields changed; a value of `...` drops the field."""
    row = {**IRIS_ROW, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not ...})


def raw_iris(field: str, literal: str) -> str:
    """An iris row whose `field` is the raw JSON text `literal` (NaN, Infinity, 1e309, ...)."""
    return GOOD.replace(f'"{field}": {IRIS_ROW[field]}', f'"{field}": {literal}')


def full(client_id: str = "alice", model: str = "iris", **payload_changes: Any) -> str:
    payload = json.loads(iris(**payload_changes))
    return json.dumps({"client_id": client_id, "model": model, "input_payload": payload})


def assert_clean(res: CliResult) -> None:
    """No traceback, and no crash turned into a one-liner either."""
    assert "Traceback" not in res.stderr, res.stderr
    assert "Traceback" not in res.stdout, res.stdout
    assert "internal error" not in res.stderr, res.stderr


def problems(res: CliResult, path: Path) -> list[str]:
    """The stderr lines about `path`, without the leading `PATH: `."""
    prefix = f"{path}: "
    return [line[len(prefix) :] for line in res.stderr.splitlines() if line.startswith(prefix)]


def assert_problems(res: CliResult, path: Path, expected: dict[str, str]) -> None:
    """`expected` maps where (`line 3 field 'x'`, `row 2 (line 3)`) to a word of the message;
    each must be exactly one stderr line, and there must be no other lines about `path`."""
    lines = problems(res, path)
    for where, word in expected.items():
        hits = [line for line in lines if line.startswith(f"{where}: ")]
        assert len(hits) == 1, f"{where!r} not reported once for {path.name}:\n{res.stderr}"
        assert word in hits[0], f"{hits[0]!r} lacks {word!r}"
    assert len(lines) == len(expected), f"unexpected lines for {path.name}:\n{res.stderr}"


@dataclass(frozen=True)
class Stored:
    """One stored request row, as the bad-input tests read it back."""

    status: str
    model: str | None
    client_id: str | None
    error: dict[str, Any] | None


def stored(db: Path, path: Path) -> dict[int, Stored]:
    """The committed `requests` rows for one input file, by source row."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT source_row, status, model, client_id, error FROM requests WHERE source = ?",
            (str(path),),
        ).fetchall()
    found: dict[int, Stored] = {}
    for source_row, status, model, client_id, error in rows:
        assert source_row not in found, f"row {source_row} of {path.name} stored twice"
        found[source_row] = Stored(status, model, client_id, json.loads(error) if error else None)
    return found


def assert_stored(db: Path, path: Path, ok: set[int], rejected: set[int]) -> dict[int, Stored]:
    rows = stored(db, path)
    assert {n for n, r in rows.items() if r.status == "ok"} == ok
    assert {n for n, r in rows.items() if r.status == "rejected"} == rejected
    assert set(rows) == ok | rejected, {n: r.status for n, r in rows.items()}
    for n in rejected:
        error = rows[n].error
        assert error is not None and error["code"] and error["message"], (n, error)
        assert error["details"][0]["row"] == n
    return rows


def request_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "requests" not in tables:
            return 0
        count: int = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        return count


# -- one run over every file with bad rows ---------------------------------------------------


@dataclass(frozen=True)
class RowRun:
    """A predict run over the bad-row files: its result, database and input files."""

    res: CliResult
    db: Path
    files: dict[str, Path]


def _write_row_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}

    def text(name: str, body: str) -> None:
        files[name] = folder / name
        files[name].write_text(body, encoding="utf-8")

    def binary(name: str, body: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(body)

    text(
        "fields.jsonl",
        "\n".join(
            [
                GOOD,  # 1
                iris(sepal_length="abc"),  # 2: wrong type
                iris(sepal_width=...),  # 3: missing field
                iris(color="red"),  # 4: extra field
                "",  # 5: blank
                "   \t",  # 6: blank
                GOOD,  # 7
                iris(sepal_length=31, sepal_width=-1),  # 8: two values out of range
                "",  # 9
                "",  # 10
                GOOD,  # 11
            ]
        )
        + "\n",
    )
    text("truncated.jsonl", f'{GOOD}\n{{"sepal_length": 5.1, "sepal_wi\n{GOOD}\n')
    text(
        "nonfinite.jsonl",
        "\n".join(
            [
                raw_iris("sepal_length", "NaN"),
                raw_iris("sepal_width", "Infinity"),
                raw_iris("petal_length", "-Infinity"),
                raw_iris("petal_width", "1e309"),
                GOOD,
            ]
        )
        + "\n",
    )
    text(
        "nonfinite.json",
        "[\n"
        + ",\n".join(
            [
                GOOD,  # row 1, line 2
                raw_iris("sepal_length", "NaN"),  # row 2, line 3
                raw_iris("sepal_width", "Infinity"),  # row 3, line 4
                raw_iris("petal_length", "1e309"),  # row 4, line 5
                raw_iris("petal_width", "-1e400"),  # row 5, line 6
                GOOD,  # row 6, line 7
            ]
        )
        + "\n]\n",
    )
    # An array cut off in the middle of its third object.
    text("truncated.json", f'[\n{GOOD},\n{GOOD},\n{{"sepal_length": 5.1, "sepal_wi')
    long_path = folder / "long.jsonl"
    with long_path.open("wb") as fh:
        fh.write(GOOD.encode() + b"\n")
        fh.write(b'{"sepal_length": "' + b"9" * (50 * 1024 * 1024) + b'"}\n')
        fh.write(GOOD.encode() + b"\n")
    files["long.jsonl"] = long_path
    # A Latin-1 byte in line 2 (the file otherwise UTF-8, with a BOM that must be accepted).
    latin_row = iris(note="cafe").replace("cafe", "caf\xe9").encode("latin-1")
    good = GOOD.encode()
    binary("latin1.jsonl", BOM + good + b"\n" + latin_row + b"\n" + good + b"\n")
    binary("latin1.json", b"[\n" + good + b",\n" + latin_row + b",\n" + good + b"]")
    binary(
        "ragged.csv",
        (
            CSV_HEADER
            + "5.1,3.5,1.4,0.2\n"  # row 1, line 2
            + "5.1,3.5,1.4\n"  # row 2, line 3: too few fields
            + "5.1,3.5,1.4,0.2,9\n"  # row 3, line 4: too many fields
            + "\n"  # line 5: blank, skipped
            + "5.1,,1.4,0.2\n"  # row 4, line 6: empty cell
            + "5.1,3.5,abc,0.2\n"  # row 5, line 7: wrong type
        ).encode()
        + b"5.1,3.5,1.4,caf\xe9\n"  # row 6, line 8: Latin-1
        + b"6.3,3.3,6.0,2.5\n",  # row 7, line 9
    )
    text(
        "full.jsonl",
        "\n".join(
            [
                full(),  # 1
                full(model="nope"),  # 2: unknown model
                full(client_id="bad id!"),  # 3: bad client_id
                full(client_id="x" * 65),  # 4: client_id too long
                full(sepal_width=...),  # 5: missing input field
                full(client_id="bob", petal_length="long"),  # 6: wrong type
                full(client_id="bob"),  # 7
            ]
        )
        + "\n",
    )
    return files


@pytest.fixture(scope="module")
def row_run(tmp_path_factory: pytest.TempPathFactory) -> RowRun:
    folder = tmp_path_factory.mktemp("bad_rows")
    files = _write_row_files(folder)
    db = folder / "inferdeck.db"
    res = run_cli(["predict", *files.values(), "--json"], db)
    files["long.jsonl"].unlink()  # 50 MB: not worth keeping among pytest's retained tmp folders
    assert_clean(res)
    return RowRun(res, db, files)


def test_row_run_exits_1_and_counts_every_row(row_run: RowRun) -> None:
    res = row_run.res
    assert res.code == 1, res.stderr
    summary = res.summary
    with sqlite3.connect(row_run.db) as conn:
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM requests WHERE run_id = ? GROUP BY status",
                (summary["run_id"],),
            ).fetchall()
        )
    assert counts == {"ok": summary["ok"], "rejected": summary["rejected"]}
    assert summary["failed"] == 0
    assert summary["accepted"] == summary["ok"] + summary["rejected"]
    # Every stderr line names one of the input files.
    names = tuple(f"{p}: " for p in row_run.files.values())
    assert all(line.startswith(names) for line in res.stderr.splitlines()), res.stderr


def test_wrong_type_missing_extra_and_out_of_range_fields(row_run: RowRun) -> None:
    path = row_run.files["fields.jsonl"]
    assert_problems(
        row_run.res,
        path,
        {
            "line 2 field 'sepal_length'": "number",
            "line 3 field 'sepal_width'": "required",
            "line 4 field 'color'": "Extra inputs",
            "line 8 field 'sepal_length'": "less than or equal to 30",
        },
    )
    # Blank lines 5, 6, 9 and 10 are skipped, and the line numbers after them stay right.
    rows = assert_stored(row_run.db, path, ok={1, 7, 11}, rejected={2, 3, 4, 8})
    error = rows[2].error
    assert error is not None
    assert error["code"] == "validation_error"
    assert error["details"][0] == {
        "field": "sepal_length",
        "message": error["details"][0]["message"],
        "type": "float_parsing",
        "row": 2,
        "line": 2,
    }
    out_of_range = rows[8].error
    assert out_of_range is not None
    assert [d["field"] for d in out_of_range["details"]] == ["sepal_length", "sepal_width"]
    assert rows[3].error is not None and rows[3].error["details"][0]["type"] == "missing"
    assert rows[4].error is not None and rows[4].error["details"][0]["type"] == "extra_forbidden"


def test_truncated_jsonl_line(row_run: RowRun) -> None:
    path = row_run.files["truncated.jsonl"]
    assert_problems(row_run.res, path, {"line 2": "not valid JSON"})
    rows = assert_stored(row_run.db, path, ok={1, 3}, rejected={2})
    assert rows[2].error is not None and rows[2].error["code"] == "invalid_json"


def test_nan_infinity_and_overflow_in_jsonl(row_run: RowRun) -> None:
    path = row_run.files["nonfinite.jsonl"]
    assert_problems(
        row_run.res,
        path,
        {
            "line 1 field 'sepal_length'": "finite",
            "line 2 field 'sepal_width'": "finite",
            "line 3 field 'petal_length'": "finite",
            "line 4 field 'petal_width'": "finite",
        },
    )
    assert_stored(row_run.db, path, ok={5}, rejected={1, 2, 3, 4})


def test_nan_infinity_and_overflow_in_json_array(row_run: RowRun) -> None:
    path = row_run.files["nonfinite.json"]
    assert_problems(
        row_run.res,
        path,
        {
            "row 2 (line 3) field 'sepal_length'": "finite",
            "row 3 (line 4) field 'sepal_width'": "finite",
            "row 4 (line 5) field 'petal_length'": "finite",
            "row 5 (line 6) field 'petal_width'": "finite",
        },
    )
    rows = assert_stored(row_run.db, path, ok={1, 6}, rejected={2, 3, 4, 5})
    error = rows[2].error
    assert error is not None and error["details"][0]["line"] == 3


def test_json_array_cut_mid_object_runs_the_rows_before(row_run: RowRun) -> None:
    path = row_run.files["truncated.json"]
    assert_problems(row_run.res, path, {"row 3 (line 4)": "file ends"})
    rows = assert_stored(row_run.db, path, ok={1, 2}, rejected={3})
    error = rows[3].error
    assert error is not None and error["code"] == "unreadable_row"
    assert error["details"][0]["line"] == 4


def test_50_mb_line_is_reported_and_the_others_run(row_run: RowRun) -> None:
    path = row_run.files["long.jsonl"]
    assert_problems(row_run.res, path, {"line 2": "longer than 1 MiB"})
    rows = assert_stored(row_run.db, path, ok={1, 3}, rejected={2})
    error = rows[2].error
    assert error is not None and error["code"] == "unreadable_row"


def test_latin1_byte_in_a_jsonl_line(row_run: RowRun) -> None:
    path = row_run.files["latin1.jsonl"]
    # Line 1 starts with a UTF-8 BOM and still runs.
    assert_problems(row_run.res, path, {"line 2": "not UTF-8 text (byte 0xe9"})
    assert_stored(row_run.db, path, ok={1, 3}, rejected={2})


def test_latin1_byte_in_a_json_array(row_run: RowRun) -> None:
    path = row_run.files["latin1.json"]
    assert_problems(row_run.res, path, {"row 2 (line 3)": "not UTF-8 text (byte 0xe9 at line 3)"})
    # The row before the bad byte still runs; reading stops there.
    assert_stored(row_run.db, path, ok={1}, rejected={2})


def test_csv_ragged_rows_empty_cell_and_bad_bytes(row_run: RowRun) -> None:
    path = row_run.files["ragged.csv"]
    assert_problems(
        row_run.res,
        path,
        {
            "row 2 (line 3)": "row has 3 fields but the header has 4",
            "row 3 (line 4)": "row has 5 fields but the header has 4",
            "row 4 (line 6) field 'sepal_width'": "required",
            "row 5 (line 7) field 'petal_length'": "number",
            "row 6 (line 8)": "not UTF-8 text (byte 0xe9 in column 'petal_width')",
        },
    )
    rows = assert_stored(row_run.db, path, ok={1, 7}, rejected={2, 3, 4, 5, 6})
    error = rows[4].error
    assert error is not None
    assert error["details"][0]["field"] == "sepal_width" and error["details"][0]["line"] == 6


def test_full_requests_with_bad_model_client_and_payload(row_run: RowRun) -> None:
    path = row_run.files["full.jsonl"]
    assert_problems(
        row_run.res,
        path,
        {
            "line 2 field 'model'": "unknown model 'nope'",
            "line 3 field 'client_id'": "pattern",
            "line 4 field 'client_id'": "64",
            "line 5 field 'input_payload.sepal_width'": "required",
            "line 6 field 'input_payload.petal_length'": "number",
        },
    )
    rows = assert_stored(row_run.db, path, ok={1, 7}, rejected={2, 3, 4, 5, 6})
    assert (rows[1].client_id, rows[1].model) == ("alice", "iris")
    assert (rows[7].client_id, rows[7].model) == ("bob", "iris")
    unknown = rows[2].error
    assert unknown is not None and unknown["code"] == "unknown_model"
    assert unknown["details"][0]["field"] == "model"


# -- runs where nothing can run: exit 2 --------------------------------------------------------


def test_unreadable_files_exit_2_one_line_each(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    cases: dict[str, tuple[bytes, str]] = {
        "empty.jsonl": (b"", "file is empty"),
        "blank.jsonl": (b"\n\n   \n\t\r\n\n", "only blank lines"),
        "bom_only.jsonl": (BOM + b"\n\n", "only blank lines"),
        "blank.json": (b" \n\n ", "no objects"),
        "empty_array.json": (b"[\n]\n", "no objects"),
        "header_only.csv": (CSV_HEADER.encode(), "a header but no rows"),
        "blank.csv": (b"\n\n", "header"),
        "latin1_header.csv": (b"sepal_l\xe9ngth\n5.1\n", "header is not UTF-8"),
        "garbage.jsonl": (
            b"\x7fELF\x02\x01\x01\x00" + random.Random(7).randbytes(4096),
            "binary data",
        ),
        "garbage.bin": (b"\x00" + random.Random(8).randbytes(512), "binary data"),
        "utf16.jsonl": ((GOOD + "\n" + GOOD + "\n").encode("utf-16"), "UTF-16"),
        "utf16.csv": ((CSV_HEADER + "5.1,3.5,1.4,0.2\n").encode("utf-16"), "UTF-16"),
        "notes.txt": (b"just some text\n", "unsupported file type .txt"),
    }
    paths = []
    for name, (body, _) in cases.items():
        (tmp_path / name).write_bytes(body)
        paths.append(tmp_path / name)
    res = cli("predict", *paths, "--json")
    assert_clean(res)
    assert res.code == 2, res.stderr
    for name, (_, word) in cases.items():
        lines = problems(res, tmp_path / name)
        assert len(lines) == 1, f"{name}: {lines}\n{res.stderr}"
        assert word in lines[0], f"{name}: {lines[0]!r} lacks {word!r}"
    assert len(res.stderr.splitlines()) == len(cases), res.stderr
    assert res.summary["accepted"] == 0
    assert request_count(db_path) == 0


def test_missing_path_exits_2_before_running(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    missing = tmp_path / "nope.jsonl"
    res = cli("predict", good, missing, "--json")
    assert_clean(res)
    assert res.code == 2
    assert res.stderr.splitlines() == [f"inferdeck: {missing}: no such file or folder"]
    assert res.stdout == ""
    assert request_count(db_path) == 0


def test_empty_directory_exits_2(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "readme.txt").write_text("no data here\n")
    res = cli("predict", folder, "--json")
    assert_clean(res)
    assert res.code == 2
    [line] = res.stderr.splitlines()
    assert line.startswith(f"inferdeck: {folder}: folder holds no ")
    assert request_count(db_path) == 0


def test_unknown_model_exits_2(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    res = cli("predict", good, "--model", "nope", "--json")
    assert_clean(res)
    assert res.code == 2
    [line] = res.stderr.splitlines()
    assert line.startswith("inferdeck: unknown model 'nope'")
    assert "iris" in line and "digits" in line
    assert request_count(db_path) == 0


# -- images and folders ------------------------------------------------------------------------


def test_image_that_is_not_an_image_and_a_real_png(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a PNG\n")
    digit = tmp_path / "one.png"
    pixels = Image.new("L", (8, 8), 0)
    for y in range(1, 7):
        pixels.putpixel((4, y), 255)
    pixels.save(digit)
    res = cli("predict", bad, digit, "--model", "digits", "--json")
    assert_clean(res)
    assert res.code == 1, res.stderr
    assert_problems(res, bad, {"row 1": "not a readable image"})
    assert problems(res, digit) == []
    assert (res.summary["ok"], res.summary["rejected"]) == (1, 1)
    rejected = assert_stored(db_path, bad, ok=set(), rejected={1})
    assert rejected[1].error is not None and rejected[1].error["code"] == "unreadable_image"
    ok = assert_stored(db_path, digit, ok={1}, rejected=set())
    assert ok[1].model == "digits"


def test_directory_runs_the_good_files_inside(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    """Every file starts with a UTF-8 BOM, which must be accepted; other files are ignored."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(BOM + f"{GOOD}\n\n{GOOD}\n".encode())
    (folder / "b.json").write_bytes(BOM + f"[{GOOD},\n{GOOD}]".encode())
    (folder / "c.csv").write_bytes(BOM + (CSV_HEADER + "5.1,3.5,1.4,0.2\n").encode())
    (folder / "notes.txt").write_text("ignored\n")
    (folder / ".hidden.jsonl").write_text("not even JSON\n")
    res = cli("predict", folder, "--json")
    assert_clean(res)
    assert res.code == 0, res.stderr
    assert res.stderr == ""
    summary = res.summary
    assert (summary["ok"], summary["rejected"], summary["failed"]) == (5, 0, 0)
    assert_stored(db_path, folder / "a.jsonl", ok={1, 3}, rejected=set())
    assert_stored(db_path, folder / "b.json", ok={1, 2}, rejected=set())
    assert_stored(db_path, folder / "c.csv", ok={1}, rejected=set())
    assert request_count(db_path) == 5
