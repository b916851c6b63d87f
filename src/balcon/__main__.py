"""``python -m balcon``: the same as the ``balcon`` command."""

from balcon.cli import main

raise SystemExit(main())
