"""Reading `GET /metrics` in tests as Prometheus reads it (prometheus-client's own parser), and
an earlier run's value file as prometheus-client's multiprocess mode leaves one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass
class Scrape:
    """One answer of `GET /metrics`: its content type and every sample in it."""

    content_type: str
    samples: list[Sample]
    types: dict[str, str]  # family name -> counter, gauge, histogram...

    def find(self, name: str, **labels: str) -> list[Sample]:
        """The samples called `name` whose labels include `labels`."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The one sample called `name` with these labels (exactly one must match)."""
        found = self.find(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0].value


def scrape(url: str) -> Scrape:
    """`GET /metrics` over a connection of its own (with workers, any one may answer)."""
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    families = list(text_string_to_metric_families(response.text))
    return Scrape(
        response.headers["content-type"],
        [sample for family in families for sample in family.samples],
        {family.name: family.type for family in families},
    )


def stale_counter(folder: Path) -> Path:
    """A counter file as a worker of an earlier run left it, 1000 iris requests `ok`: counted,
    it would show in every total."""
    path = folder / "counter_999.db"
    stale = MmapedDict(str(path))  # type: ignore[no-untyped-call]
    key = mmap_key(
        "inferdeck_requests",
        "inferdeck_requests_total",
        ["model", "outcome"],
        ["iris", "ok"],
        "Requests finished, by model and outcome (ok, rejected, failed).",
    )
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]
    return path
