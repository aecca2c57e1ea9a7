"""Literal NumPy transcriptions of the update equations, one function per source.

Each function runs ``len(grads)`` steps from ``w`` and returns the final parameters. They
are written from the equations (trainlab's docstrings, Keras 3's and optax's documented
update rules), not from trainlab's code, and are the oracles of the equation tests.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import optim


def run_torch(make, w0: np.ndarray, grads: list[np.ndarray], dtype=torch.float64) -> np.ndarray:
    """The other side of every comparison: a torch optimizer ``make([w])`` over ``grads``."""
    w = torch.tensor(w0, dtype=dtype, requires_grad=True)
    opt = make([w])
    for g in grads:
        w.grad = torch.tensor(g, dtype=dtype)
        opt.step()
    return w.detach().numpy()


#: trainlab (run with convention="torch") and its torch.optim counterpart with the same
#: settings: every branch of every equation that torch has.
TORCH_CASES = [
    (optim.SGD, dict(lr=0.05), torch.optim.SGD, dict(lr=0.05)),
    (optim.SGD, dict(lr=0.05, momentum=0.9), torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (
        optim.SGD,
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    (
        optim.SGD,
        dict(lr=0.05, momentum=0.9, dampening=0.5),
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9, dampening=0.5),
    ),
    (optim.RMSProp, dict(), torch.optim.RMSprop, dict()),
    (
        optim.RMSProp,
        dict(rho=0.9, weight_decay=0.01),
        torch.optim.RMSprop,
        dict(alpha=0.9, weight_decay=0.01),
    ),
    (optim.RMSProp, dict(centered=True), torch.optim.RMSprop, dict(centered=True)),
    (
        optim.RMSProp,
        dict(momentum=0.9, weight_decay=0.01),
        torch.optim.RMSprop,
        dict(momentum=0.9, weight_decay=0.01),
    ),
    (
        optim.RMSProp,
        dict(centered=True, momentum=0.9),
        torch.optim.RMSprop,
        dict(centered=True, momentum=0.9),
    ),
    (optim.Adam, dict(), torch.optim.Adam, dict()),
    (optim.Adam, dict(weight_decay=0.1), torch.optim.Adam, dict(weight_decay=0.1)),
    (optim.Adam, dict(amsgrad=True), torch.optim.Adam, dict(amsgrad=True)),
    (
        optim.Adam,
        dict(weight_decay=0.1, decoupled=True),
        torch.optim.Adam,
        dict(weight_decay=0.1, decoupled_weight_decay=True),
    ),
    (optim.AdamW, dict(), torch.optim.AdamW, dict()),
    (optim.AdamW, dict(amsgrad=True, lr=0.01), torch.optim.AdamW, dict(amsgrad=True, lr=0.01)),
]


# --- trainlab's equations, every switch ---------------------------------------------------
def sgd(
    w,
    grads,
    lr,
    momentum=0.0,
    nesterov=False,
    weight_decay=0.0,
    dampening=0.0,
    lr_in_buffer=False,
    decoupled=False,
):
    w, v = w.copy(), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        if momentum == 0:
            w = w - lr * g
        elif lr_in_buffer:
            v = momentum * v - lr * g
            w = w + (momentum * v - lr * g if nesterov else v)
        else:
            v = g if t == 1 else momentum * v + (1 - dampening) * g
            w = w - lr * (g + momentum * v if nesterov else v)
    return w


def rmsprop(
    w,
    grads,
    lr,
    rho,
    eps,
    eps_in_sqrt=False,
    centered=False,
    momentum=0.0,
    weight_decay=0.0,
    decoupled=False,
    lr_in_buffer=False,
):
    w = w.copy()
    s, gbar, b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        s = rho * s + (1 - rho) * g * g
        var = s
        if centered:
            gbar = rho * gbar + (1 - rho) * g
            var = np.maximum(s - gbar * gbar, 0.0)
        d = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
        if momentum == 0:
            w = w - lr * g / d
        elif lr_in_buffer:
            b = momentum * b + lr * g / d
            w = w - b
        else:
            b = momentum * b + g / d
            w = w - lr * b
    return w


def adam(
    w,
    grads,
    lr,
    betas,
    eps,
    bias_correction=True,
    eps_hat=False,
    amsgrad=False,
    weight_decay=0.0,
    decoupled=False,
    eps_in_sqrt=False,
    amsgrad_corrected_max=False,
):
    b1, b2 = betas
    w = w.copy()
    m, s, s_max = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * g * g
        c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
        v = s
        if amsgrad and amsgrad_corrected_max:
            s_max = np.maximum(s_max, s / c2)
            v, c2 = s_max, 1.0
        elif amsgrad:
            s_max = np.maximum(s_max, s)
            v = s_max
        if eps_hat:
            d = np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps
            w = w - lr * np.sqrt(c2) / c1 * m / d
        else:
            d = np.sqrt(v / c2 + eps) if eps_in_sqrt else np.sqrt(v / c2) + eps
            w = w - lr * (m / c1) / d
    return w


# --- Keras 3 (keras/src/optimizers/{sgd,rmsprop,adam,adamw}.py update_step) -----------------
# Weight decay in Keras is applied by the base optimizer before update_step:
# variable ← variable − variable·weight_decay·lr.
def keras_sgd(w, grads, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
    w, m = w.copy(), np.zeros_like(w)
    for g in grads:
        if weight_decay:
            w = w - w * weight_decay * learning_rate
        if momentum != 0:
            m = m * momentum - g * learning_rate
            if nesterov:
                w = w + (m * momentum - g * learning_rate)
            else:
                w = w + m
        else:
            w = w - g * learning_rate
    return w


def keras_rmsprop(
    w,
    grads,
    learning_rate=0.001,
    rho=0.9,
    momentum=0.0,
    epsilon=1e-7,
    centered=False,
    weight_decay=None,
):
    w = w.copy()
    velocity, mom, average_grad = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        if weight_decay:
            w = w - w * weight_decay * learning_rate
        velocity = rho * velocity + (1 - rho) * np.square(g)
        if centered:
            average_grad = rho * average_grad + (1 - rho) * g
            denominator = velocity - np.square(average_grad) + epsilon
        else:
            denominator = velocity + epsilon
        increment = learning_rate * g / np.sqrt(denominator)
        if momentum > 0:
            mom = momentum * mom + increment
            w = w - mom
        else:
            w = w - increment
    return w


def keras_adam(
    w,
    grads,
    learning_rate=0.001,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-7,
    amsgrad=False,
    weight_decay=None,
):
    w = w.copy()
    m, v, v_hat = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for step, g in enumerate(grads):
        if weight_decay:
            w = w - w * weight_decay * learning_rate
        local_step = step + 1
        beta_1_power = beta_1**local_step
        beta_2_power = beta_2**local_step
        alpha = learning_rate * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m = m + (g - m) * (1 - beta_1)
        v = v + (np.square(g) - v) * (1 - beta_2)
        vv = v
        if amsgrad:
            v_hat = np.maximum(v_hat, v)
            vv = v_hat
        w = w - (m * alpha) / (np.sqrt(vv) + epsilon)
    return w


# --- optax (optax/_src/alias.py, transform.py) ---------------------------------------------
def optax_sgd(w, grads, learning_rate, momentum=None, nesterov=False):
    # sgd = chain(trace(decay=momentum, nesterov), scale_by_learning_rate)
    w, trace = w.copy(), np.zeros_like(w)
    for g in grads:
        if momentum is None:
            u = g
        else:
            trace = g + momentum * trace
            u = g + momentum * trace if nesterov else trace
        w = w + (-learning_rate * u)
    return w


def optax_rmsprop(w, grads, learning_rate, decay=0.9, eps=1e-8, centered=False, momentum=None):
    # chain(scale_by_rms (eps_in_sqrt=True) or scale_by_stddev, scale_by_learning_rate, trace):
    # the learning rate enters before the momentum trace
    w = w.copy()
    nu, mu, trace = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        nu = (1 - decay) * g**2 + decay * nu
        if centered:
            mu = (1 - decay) * g + decay * mu
            u = g / np.sqrt(nu - mu**2 + eps)
        else:
            u = g / np.sqrt(nu + eps)
        u = -learning_rate * u
        if momentum is not None:
            trace = u + momentum * trace
            u = trace
        w = w + u
    return w


def optax_adam(
    w,
    grads,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    amsgrad=False,
    weight_decay=None,
):
    # scale_by_adam / scale_by_amsgrad, add_decayed_weights (adamw), scale_by_learning_rate
    w = w.copy()
    mu, nu, nu_max = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for count, g in enumerate(grads, 1):
        mu = (1 - b1) * g + b1 * mu
        nu = (1 - b2) * g**2 + b2 * nu
        mu_hat = mu / (1 - b1**count)
        nu_hat = nu / (1 - b2**count)
        if amsgrad:
            nu_max = np.maximum(nu_max, nu_hat)
            nu_hat = nu_max
        u = mu_hat / (np.sqrt(nu_hat + eps_root) + eps)
        if weight_decay:
            u = u + weight_decay * w
        w = w + (-learning_rate * u)
    return w
