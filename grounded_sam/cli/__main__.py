"""``python -m grounded_sam.cli``: the same as the ``grounded-sam`` command."""

from grounded_sam.cli import main

raise SystemExit(main())
