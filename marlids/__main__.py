"""``python -m marlids`` = the ``marlids`` console script (the demo starts its services this way)."""

from marlids.cli import main

if __name__ == "__main__":  # guarded: spawned children (edge.live) re-import the main module
    main()
