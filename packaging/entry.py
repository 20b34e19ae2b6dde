"""Entry point of the single executable (dist/cdragon): the same as `python -m cdragon`."""
from cdragon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
