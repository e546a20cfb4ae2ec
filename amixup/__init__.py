"""amixup: a reproduction of Asymptotic Midpoint Mixup (AM-mixup)."""

__version__ = "0.1.0"

from . import records as _records

_records.code_provenance()  # pin the commit of the code as it is loaded
