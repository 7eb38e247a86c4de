"""``python -m vaelab ...`` is the ``vaelab`` command (and ``torchrun -m vaelab train ...``)."""
import sys

from .cli import main

sys.exit(main())
