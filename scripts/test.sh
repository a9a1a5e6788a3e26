#!/usr/bin/env bash
# The README's test command: pytest under coverage (branch), per-test timeout,
# warnings as errors (set in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m coverage erase
python -m coverage run -m pytest -p no:cacheprovider "$@"
python -m coverage combine -q 2>/dev/null || true
if [ "$#" -eq 0 ]; then
  python -m coverage report              # the whole suite: fail under the floor (pyproject)
else
  python -m coverage report --fail-under=0   # a targeted run covers only part of the code
fi
