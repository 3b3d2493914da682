"""The elementwise update rule that has a compiled twin: Adam's, in place on one parameter.

The optimizers themselves (state, checkpoints, the other update rules) live in charnn.train.optim;
this is the one piece of their math a backend implements (charnn.backend.numba.kernels.adam_kernel).
"""
from __future__ import annotations

import numpy as np


def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, beta1: float, beta2: float,
                step_size: float, v_correction: float, eps: float) -> None:
    """One Adam step of p in place, with its moments m and v (all of p's shape):

        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - step_size * m / (sqrt(v) * v_correction + eps)

    step_size = lr / (1 - b1^t) and v_correction = 1 / sqrt(1 - b2^t) fold in the bias corrections.
    """
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    p -= step_size * m / (np.sqrt(v) * v_correction + eps)
