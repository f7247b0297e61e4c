"""Fixtures for the whole test suite."""

import locale

import pytest


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
