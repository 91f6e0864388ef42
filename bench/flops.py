"""FLOPs of a GAN step counted from the models' layers.

Only dense and convolution layers are counted (multiply + add = 2 FLOPs per MAC); batch norm,
activations, augmentation and the optimizer update are memory-bound and left out. A backward pass
costs 2x the forward (gradients for activations and for weights), so a GAN step is:

- G: forward + backward (weights) = 3x G;
- D on the real batch: forward + backward for D's weights = 3x D;
- D on the fake batch: the same 3x D, plus one more activation-gradient pass through D that carries
  the generator's loss back to G = 4x D.

That is 3 G + 7 D forward-equivalents per example. (Counting D's fake pass at 3x, as a first
version did, understated the work by about 5% and the utilisation with it.)
"""

from __future__ import annotations

import keras

FWD_BWD_FACTOR = 3  # forward + backward (activations + weights)
G_GRAD_THROUGH_D = 1  # the generator's gradient passes back through D once more


def layer_forward_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs of one example through `layer` (0 for layers that are not dense/conv)."""
    if isinstance(layer, keras.layers.Dense):
        fan_in = layer.input.shape[-1]
        return 2 * fan_in * layer.units
    if isinstance(layer, keras.layers.Conv2DTranspose):  # before Conv2D: check the subclass first
        _, h, w, cin = layer.input.shape
        kh, kw = layer.kernel_size
        return 2 * h * w * cin * kh * kw * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, _ = layer.output.shape
        cin = layer.input.shape[-1]
        kh, kw = layer.kernel_size
        return 2 * h * w * layer.filters * kh * kw * cin
    return 0


def model_forward_flops(model: keras.Model) -> int:
    """Forward FLOPs of one example through `model`."""
    return sum(layer_forward_flops(layer) for layer in model.layers)


def step_flops(generator: keras.Model, discriminator: keras.Model, batch_size: int) -> int:
    """FLOPs of one GAN training step on a global batch: (3 G + 7 D) x forward, per example."""
    g, d = model_forward_flops(generator), model_forward_flops(discriminator)
    per_example = FWD_BWD_FACTOR * (g + 2 * d) + G_GRAD_THROUGH_D * d
    return per_example * batch_size


def matmul_flops(n: int) -> int:
    return 2 * n**3


def conv_flops(batch: int, height: int, width: int, channels: int, kernel: int) -> int:
    """A 'same' stride-1 conv with `channels` in and out."""
    return 2 * batch * height * width * channels * channels * kernel * kernel
