"""`python -m gateway` is `ultra-gateway`."""

import sys

from gateway.cli import main

sys.exit(main())
