"""The fast percentile lookup gives exactly the HDR library's own answers."""

from __future__ import annotations

import random

from engine.stats import new_histogram, percentile_values, record_us

PERCENTILES = [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0, 100 - 100 * 10**-2.5]


def test_percentile_values_match_the_library_on_varied_histograms() -> None:
    rng = random.Random(7)
    for size in (1, 2, 7, 100, 5_000):
        for _ in range(20):
            hist = new_histogram()
            centre = rng.uniform(3, 15)  # from microseconds to minutes
            for _ in range(size):
                record_us(hist, int(rng.lognormvariate(centre, 2)))
            assert percentile_values(hist, PERCENTILES) == hist.get_percentile_to_value_dict(
                PERCENTILES
            )


def test_percentile_values_of_an_empty_histogram_are_zero() -> None:
    assert percentile_values(new_histogram(), [50.0, 99.0]) == {50.0: 0, 99.0: 0}
