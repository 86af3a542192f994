"""`JobEngine`: everything a file job asks of the engine, in one narrow interface.

`FileJob` calls only these; the engine calls the job back only as its `Sink` (`deliver`, after
each commit). `engine.pipeline.Engine` provides it: its acceptance and admission calls, its model
registry and client directory, and its `job_records` for the `file_jobs` rows.
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.contracts import ErrorBody
from engine.job_records import JobRecords
from engine.models.registry import ModelRegistry
from engine.tiers import ClientDirectory
from engine.validation import RowValidator
from engine.work import Origin, Work

# A row's data as the readers hand it over: JSON text, or an object already parsed (CSV, images).
Row = bytes | dict[str, Any]


class JobEngine(Protocol):
    """The calls `FileJob` makes to the engine (the `Engine` is one); nothing else is used."""

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def clients(self) -> ClientDirectory: ...

    @property
    def job_records(self) -> JobRecords: ...

    def validator(self, default_model: str | None) -> RowValidator: ...

    async def accept(
        self, data: Row, validator: RowValidator, origin: Origin, *, source_row: int | None = None
    ) -> Work: ...

    def reject(
        self, origin: Origin, body: ErrorBody, *, source_row: int | None, input_text: str | None
    ) -> None: ...

    def record_rejection(self, work: Work) -> None: ...

    async def submit(self, work: Work) -> None: ...
