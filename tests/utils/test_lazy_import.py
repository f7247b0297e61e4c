"""``import common`` loads its runtime packages when first used, not all at once."""

from __future__ import annotations

import json
import subprocess
import sys

from common import __all__ as PACKAGES


def test_import_common_loads_packages_on_first_use():
    code = (
        "import json, sys, common\n"
        "loaded = lambda: sorted({m.split('.')[1] for m in sys.modules if m.startswith('common.')})\n"
        "first = loaded()\n"
        "common.data.validate_datalist\n"
        "from common import engines\n"
        "print(json.dumps([first, loaded(), sorted(dir(common))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    first, after, names = json.loads(out.stdout.strip().splitlines()[-1])
    assert first == ["utils"]
    assert {"data", "engines"} <= set(after) and "evaluation" not in after
    assert set(PACKAGES) <= set(names)
