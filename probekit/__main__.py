"""`python -m probekit ...` (what `torchrun --nproc-per-node N -m probekit extract ...` runs)."""
import sys

from .cli import main

sys.exit(main())
