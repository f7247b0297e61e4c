"""Fixtures for the whole test suite."""

import locale
import os

import pytest
import torch


def _workers() -> int:
    """Test processes running at once: pytest-xdist's worker count (``-n N``), or 1."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _cpu_share() -> int:
    """This test process's share of the CPU cores: all of them, or under pytest-xdist one N-th."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // _workers())


def pytest_configure(config):
    """Under pytest-xdist, give each worker its share of the CPU cores.

    Each worker process (and each bundle run it starts in a subprocess, through ``OMP_NUM_THREADS``) would otherwise
    start as many intra-op threads as the machine has cores, and N workers would oversubscribe the cores N times.
    """
    if _workers() > 1:
        share = _cpu_share()
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.fixture
def torch_threads():
    """``torch_threads(n)`` sets torch's intra-op threads for one test, at most this process's share of the cores
    (under pytest-xdist, two threads in each of two workers would oversubscribe a 2-core CI host); the count is
    restored afterwards."""
    saved = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(max(1, min(n, _cpu_share())))
    torch.set_num_threads(saved)


@pytest.fixture(autouse=True)
def _restore_the_locale():
    """Put the process locale back after each test.

    ITK's GDCM writer (the tests' DICOM fixtures) sets the C locale for the whole process; ``open()`` without an
    encoding then decodes as ASCII, and every later test reading UTF-8 text would fail. Reading DICOM, as the
    bundles do, leaves the locale alone.
    """
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)
