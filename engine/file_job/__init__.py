"""File jobs: one input file streamed through the engine, durably and resumably.

- `job`: `FileJob`, which reads the rows, hands them to the engine and takes their results;
- `link`: `JobEngine`, the one narrow interface the job uses to talk to the engine;
- `source`: the file's digest and resumable job (`identify`), progress estimates, counting;
- `report`: what a job tells its caller (`JobReport`, `RowProblem`, `jobs_outcome`).
"""

from engine.file_job.job import COUNT_REST_S, MAX_PROBLEMS_KEPT, FileJob
from engine.file_job.link import JobEngine
from engine.file_job.report import JOB_STATUSES, JobReport, RowProblem, jobs_outcome
from engine.file_job.source import KnownFile, Stopped, estimate_rows, identify, sha256_of

__all__ = [
    "COUNT_REST_S",
    "JOB_STATUSES",
    "MAX_PROBLEMS_KEPT",
    "FileJob",
    "JobEngine",
    "JobReport",
    "KnownFile",
    "RowProblem",
    "Stopped",
    "estimate_rows",
    "identify",
    "jobs_outcome",
    "sha256_of",
]
