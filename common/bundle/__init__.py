"""Bundle utilities: paths, verification and export for the MONAI model zoo."""

from common.bundle.export import export_bundle
from common.bundle.paths import bundle_root
from common.bundle.verify import check_format, verify_bundle

__all__ = ["bundle_root", "check_format", "export_bundle", "verify_bundle"]
