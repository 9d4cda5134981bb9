"""``python -m recbole_embsum``: the ``run_recbole`` console script."""
import sys

from recbole_embsum.quick_start import main

sys.exit(main())
