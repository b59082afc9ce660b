"""`python -m emanet` (also under torchrun)."""

import sys

from .cli import main

sys.exit(main())
