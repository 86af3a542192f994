"""SQL the rest of the app uses, one module per table or purpose; callers import it whole
(`from storage import queries`) or by name (`from storage.queries import RunRow`).

- `requests`: the `requests` table's columns, the writer's upsert and probe rows, reads by ID;
- `request_search`: the Requests view's filtered, sorted, bounded pages and filter choices;
- `runs`, `jobs` (`file_jobs`), `clients`, `targets` (targets and their probes).

Writes are statements handed to `GroupCommitWriter`; reads run on the reader connection. The
request search's tunables are not re-exported here: set them on `request_search` itself.
"""

from storage.queries.clients import UPSERT_CLIENT, ClientRow, fetch_client
from storage.queries.jobs import (
    ADD_FILE_JOB_PROGRESS,
    CLAIM_FILE_JOB,
    FINISH_FILE_JOB,
    INSERT_FILE_JOB,
    SUPERSEDE_FILE_JOB,
    FileJobRow,
    done_rows,
    find_resumable_job,
    job_results,
    next_file_job_id,
    run_file_jobs,
)
from storage.queries.request_search import (
    RequestFilter,
    RequestPage,
    RequestPlan,
    RequestScan,
    Strategy,
    client_ids,
    page_requests,
    plan_requests,
    recent_sources,
    scan_requests,
)
from storage.queries.requests import (
    PROBE_REQUEST,
    REQUEST_COLUMNS,
    UNDO_PROBE_REQUEST,
    UPSERT_REQUEST,
    get_request,
    request_id_held,
    requests_not_stored,
)
from storage.queries.runs import (
    FINISH_RUN,
    INSERT_RUN,
    RunDetail,
    RunRow,
    find_runs,
    get_run,
    iter_run_requests,
    list_runs,
    run_detail,
    run_status_counts,
)
from storage.queries.targets import (
    DELETE_TARGET,
    DELETE_TARGET_PROBES,
    INSERT_PROBE,
    INSERT_TARGET,
    PRUNE_PROBES,
    UPDATE_TARGET,
    ProbeRow,
    TargetRow,
    fetch_target,
    list_targets,
    probe_count,
    recent_probes,
)

__all__ = [
    "ADD_FILE_JOB_PROGRESS",
    "CLAIM_FILE_JOB",
    "DELETE_TARGET",
    "DELETE_TARGET_PROBES",
    "FINISH_FILE_JOB",
    "FINISH_RUN",
    "INSERT_FILE_JOB",
    "INSERT_PROBE",
    "INSERT_RUN",
    "INSERT_TARGET",
    "PROBE_REQUEST",
    "PRUNE_PROBES",
    "REQUEST_COLUMNS",
    "SUPERSEDE_FILE_JOB",
    "UNDO_PROBE_REQUEST",
    "UPDATE_TARGET",
    "UPSERT_CLIENT",
    "UPSERT_REQUEST",
    "ClientRow",
    "FileJobRow",
    "ProbeRow",
    "RequestFilter",
    "RequestPage",
    "RequestPlan",
    "RequestScan",
    "RunDetail",
    "RunRow",
    "Strategy",
    "TargetRow",
    "client_ids",
    "done_rows",
    "fetch_client",
    "fetch_target",
    "find_resumable_job",
    "find_runs",
    "get_request",
    "get_run",
    "iter_run_requests",
    "job_results",
    "list_runs",
    "list_targets",
    "next_file_job_id",
    "page_requests",
    "plan_requests",
    "probe_count",
    "recent_probes",
    "recent_sources",
    "request_id_held",
    "requests_not_stored",
    "run_detail",
    "run_file_jobs",
    "run_status_counts",
    "scan_requests",
]
