"""python -m amser_dsp: the amser command."""

from .cli import main

raise SystemExit(main())
