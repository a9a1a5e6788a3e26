"""`python -m asyncflow worker ...` (see `asyncflow._taskworkers._cli`)."""

from ._taskworkers._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
