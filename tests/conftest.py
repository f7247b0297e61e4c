"""Fixtures for the whole test suite."""

import locale
import os

import pytest

# The precision policy measures bf16 against fp32 on a CPU without AMX (common.engines.precision). At the suite's
# smoke-test sizes oneDNN's bf16 weight gradient of a 3D convolution on a 3x3x3 input comes out NaN on such a CPU
# (an AMD EPYC with AVX-512-BF16; see that module), so the suite keeps fp32 there, as before the probe, and the
# runs it starts in subprocesses inherit this; CPUs with AMX still train the bundles in bf16. The probe and the
# variable are tested in tests/engines/test_precision.py.
os.environ.setdefault("GDA_CPU_BF16", "0")


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
