"""``python -m marlids`` = the ``marlids`` console script (the demo starts its services this way)."""

from marlids.cli import main

main()
