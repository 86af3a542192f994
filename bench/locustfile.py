"""Locust's side of the load benchmark (bench/bench_load.py): HttpUser, no think time.

Every user POSTs the same JSON body to the host's root as fast as answers come back, which is
what `inferdeck load --concurrency N` does, so the two are compared doing the same work.
"""

from __future__ import annotations

from locust import HttpUser, constant, task

BODY = {
    "inputs": {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}
}


class PredictUser(HttpUser):
    """One Locust user posting the same prediction back to back (no think time)."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        self.client.post("/", json=BODY)
