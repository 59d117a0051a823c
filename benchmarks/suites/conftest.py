"""Fixtures of the benchmark suites: synthetic data, real MNIST (skipped when absent), and a
short table of training throughput printed after pytest-benchmark's own tables.

Every Numba kernel is called once before it is timed, so JIT compilation (or loading the
cache) never lands in a timed round.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

import numpy as np
import pytest
from common import synthetic_data

_THROUGHPUT: list[tuple[str, int, float, float]] = []


@pytest.fixture(scope="session")
def synthetic():
    """Random uint8 images (10000, 784) and labels: MNIST's shapes and types."""
    return synthetic_data(10000)


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST training rows (validation hold-out removed, as ``fastmlp train`` does).

    Skipped when the data is not already on disk ($FASTMLP_DATA_DIR or ./data); never downloads.
    """
    from fastmlp.data.datasets import load_dataset, validation_split
    from fastmlp.errors import DataError

    try:
        ds = load_dataset("mnist", download=False)
    except DataError as exc:
        pytest.skip(f"MNIST not found (set FASTMLP_DATA_DIR): {exc}")
    fit_idx, _ = validation_split(len(ds.train_images), 5000)
    return ds.train_images, ds.train_labels, fit_idx.astype(np.int64)


@pytest.fixture
def record_throughput(request):
    """``record_throughput(benchmark, samples)``: after a benchmark ran, store samples/s in its
    ``extra_info`` (median and best round) and list it in the summary at the end."""

    def record(benchmark, samples: int) -> None:
        if benchmark.stats is None:  # --benchmark-disable: the function ran once, untimed
            return
        stats = benchmark.stats.stats
        median, best = samples / stats.median, samples / stats.min
        benchmark.extra_info["samples"] = samples
        benchmark.extra_info["samples_per_s"] = median
        benchmark.extra_info["samples_per_s_best"] = best
        _THROUGHPUT.append((request.node.name, samples, median, best))

    return record


def pytest_terminal_summary(terminalreporter):
    if not _THROUGHPUT:
        return
    tr = terminalreporter
    tr.section("training throughput (samples/s; benchmark.extra_info)")
    width = max(len(name) for name, *_ in _THROUGHPUT)
    tr.write_line(f"{'benchmark':<{width}}  {'samples':>8}  {'median':>10}  {'best':>10}")
    for name, samples, median, best in _THROUGHPUT:
        tr.write_line(f"{name:<{width}}  {samples:>8}  {median:>10,.0f}  {best:>10,.0f}")
