"""amixup: a reproduction of Asymptotic Midpoint Mixup (AM-mixup)."""

__version__ = "0.1.0"
