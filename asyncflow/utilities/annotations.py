"""Argument annotations under Prefect's path `prefect.utilities.annotations`.

* `quote(x)`: pass `x` untouched; futures inside it are neither awaited nor resolved.
* `opaque(x)`: await `x` if it is a future and pass its result, but never look inside
  a value for futures (a large dict or DataFrame is not walked).
* `unmapped(x)`: broadcast an iterable to every run of `.map()`.
* `allow_failure(x)`: run the downstream even if an upstream in `x` fails; it gets the
  exception object.

The same classes as `asyncflow.quote`, `asyncflow.unmapped`, `asyncflow.allow_failure`.
"""

from .._arguments import allow_failure, opaque, quote, unmapped
from .._public import publish

__all__ = ("allow_failure", "opaque", "quote", "unmapped")

publish(__name__, __all__, globals())
