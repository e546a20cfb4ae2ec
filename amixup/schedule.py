"""The AM-mixup rate scheduler (paper Eq. 6).

``lambda_am = exp(-beta * v_acc)`` where ``v_acc`` is the training accuracy of the
previous epoch in [0, 1]. The scheduler starts at ``lambda_am = 1`` (no mixing: the
augmented feature equals the original one) and is updated once per epoch.

Which training accuracy drives it is a choice the paper leaves open. The engine
measures it, by default, on *clean* predictions of the training batches seen in the
epoch (the un-mixed features passed through the classifier in the same forward pass);
see ``RunConfig.train_acc_source`` for the alternative.
"""

from __future__ import annotations

import math


def lambda_am(train_acc: float, beta: float) -> float:
    """Eq. 6: ``exp(-beta * train_acc)``.

    ``train_acc`` must lie in [0, 1] (a fraction, not a percentage) and ``beta >= 0``.
    """
    train_acc = float(train_acc)
    beta = float(beta)
    if not 0.0 <= train_acc <= 1.0 or math.isnan(train_acc):
        raise ValueError(f"train_acc must be a fraction in [0, 1], got {train_acc!r}")
    if not beta >= 0.0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return math.exp(-beta * train_acc)


class AMScheduler:
    """Holds the current ``lambda_am`` and its per-epoch trajectory.

    >>> s = AMScheduler(beta=0.34)
    >>> s.value
    1.0
    >>> round(s.step(0.5), 6)   # after an epoch at 50 % training accuracy
    0.843665
    """

    def __init__(self, beta: float, initial: float = 1.0):
        lambda_am(0.0, beta)  # validates beta
        self.beta = float(beta)
        self.value = float(initial)
        self.history: list[float] = []  # lambda used in each finished epoch

    def step(self, train_acc: float) -> float:
        """Record the lambda of the epoch that just ended and move to the next one."""
        new = lambda_am(train_acc, self.beta)
        self.history.append(self.value)
        self.value = new
        return new

    def state_dict(self) -> dict:
        return {"beta": self.beta, "value": self.value, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self.value = float(state["value"])
        self.history = [float(v) for v in state["history"]]
