"""Ignite/MONAI event handlers shared by the bundles: sample grids and synthetic-data export."""

from common.handlers.sample_grid import SampleGridHandler, make_grid, save_png
from common.handlers.synthetic_export import SyntheticDatalistWriter, sha256_file

__all__ = ["make_grid", "save_png", "SampleGridHandler", "SyntheticDatalistWriter", "sha256_file"]
