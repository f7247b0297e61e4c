"""Bundle tools: verification and export for the MONAI model zoo, and benchmarks of a bundle's training step and
inference (:mod:`common.bundle.benchmark`), the machine's peak GFLOP/s and the FLOPs of a step
(:mod:`common.bundle.peak_benchmark`), and the gradient all-reduce (:mod:`common.bundle.grad_sync_benchmark`); the
comparison of what a step learns in fp32 and under another precision policy
(:mod:`common.bundle.precision_comparison`); not imported by ``import common``.

``bundle_root`` lives in :mod:`common.utils.paths`; it is re-exported here for callers of the tools."""

from common.bundle.export import export_bundle
from common.bundle.verify import check_format, verify_bundle
from common.bundle.zoo_format import check_zoo_format
from common.utils.paths import bundle_root

__all__ = ["bundle_root", "check_format", "check_zoo_format", "export_bundle", "verify_bundle"]
