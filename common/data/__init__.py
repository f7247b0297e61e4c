from .validation import DatalistError, DatalistProblem, validate_datalist  # noqa: F401
