"""`python -m moorage` is the same as the `moorage` command."""

from moorage.cli import main

raise SystemExit(main())
