"""The device's peak, measured in the same rounds as the steps: a large float32 matmul and a
large convolution.

A step's FLOP/s means little alone; held against what this very machine reaches, at the same
moment, on the two kernels a DCGAN step is made of, it says how much headroom software could
still find. The peak contenders join the step variants' interleaved rounds (`bench.timing`), so
a busy machine slows peak and steps alike instead of skewing the utilisation.
"""

from __future__ import annotations

import tensorflow as tf

from bench.flops import conv_flops, matmul_flops

DENSE, CONV = "peak: dense matmul", "peak: conv"


def _runner(fn):
    def run(steps: int) -> float:
        out = None
        for _ in range(steps):
            out = fn()
        return float(out)

    return run


def peak_contenders(quick: bool) -> tuple[dict, dict]:
    """({name: run(steps)}, {name: FLOPs per call, plus the shapes for the row names})."""
    n = 1024 if quick else 2048
    batch, side, channels, kernel = (8, 32, 128, 3) if quick else (16, 32, 256, 3)
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    x = tf.random.normal([batch, side, side, channels])
    w = tf.random.normal([kernel, kernel, channels, channels])
    runs = {
        DENSE: _runner(tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))),
        CONV: _runner(tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME")))),
    }
    flops = {DENSE: matmul_flops(n), CONV: conv_flops(batch, side, side, channels, kernel),
             "matmul_n": n, "conv_shape": [batch, side, channels, kernel]}
    return runs, flops
