"""`python -m services.dashboards generate|check` (same as `newnormal grafana generate|check`)."""

from __future__ import annotations

import sys

from services.dashboards.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
