"""`python -m repmedsam_export.train ACTION ...` = `repmedsam-ov train ACTION ...` (handy under torchrun)."""

import sys

from repmedsam_ov.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
