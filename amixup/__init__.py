"""amixup: a reproduction of Asymptotic Midpoint Mixup (AM-mixup)."""

from ._version import __version__

from . import records as _records

_records.code_provenance()  # pin the commit of the code as it is loaded
