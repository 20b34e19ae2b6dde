"""`python -m cdragon ...` is the same as the `cdragon` command."""
from cdragon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
