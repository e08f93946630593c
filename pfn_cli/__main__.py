"""``python -m pfn_cli ...`` is the same as ``pfn ...``."""

import sys

from pfn_cli.main import main

sys.exit(main())
