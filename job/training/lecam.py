"""LeCam regularisation of the discriminator (Tseng et al. 2021, "Regularizing Generative
Adversarial Networks under Limited Data"; reference code: google/lecam-gan, `lecam_loss.py`).

D's outputs on real images are pulled no higher than a moving average of its outputs on generated
images, and its outputs on generated images no lower than a moving average of its outputs on real
ones. With a few hundred scans D otherwise learns to separate the training set by memorising it;
the paper shows the term bounds the LeCam divergence it then minimises, and its largest gains are
on small datasets.

The anchors are three float32 numbers held in one variable, (moving average of D's mean logit on
real images, the same on generated images, updates so far): the reference's two moving averages,
and a count so that the first update takes the batch means as they are (the reference's
zero-debiasing to the same effect).
"""

from __future__ import annotations

import tensorflow as tf

# The reference code's decay of both moving averages.
DECAY = 0.99


def regulariser(real_logits: tf.Tensor, fake_logits: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """The LeCam term per example, shape (B,) float32: relu(D(x) - a_fake)^2 + relu(a_real - D(G(z)))^2.

    `real_logits` and `fake_logits` are D's raw outputs, (B,) or (B, 1), any float dtype;
    `anchors` is the (3,) state described in the module docstring. Zero before the first update
    (no anchors yet) and whenever D's outputs already sit on the right side of the anchors.
    """
    real = tf.reshape(tf.cast(real_logits, tf.float32), [-1])
    fake = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
    ready = tf.cast(anchors[2] > 0, tf.float32)
    term = tf.square(tf.nn.relu(real - anchors[1])) + tf.square(tf.nn.relu(anchors[0] - fake))
    return ready * term


def updated(anchors: tf.Tensor, real_mean: tf.Tensor, fake_mean: tf.Tensor) -> tf.Tensor:
    """The (3,) anchors after one step whose global batch gave D these mean logits (scalars):
    the batch means on the first update, then moving averages with `DECAY`."""
    means = tf.stack([tf.cast(real_mean, tf.float32), tf.cast(fake_mean, tf.float32)])
    first = anchors[2] <= 0
    averaged = tf.where(first, means, DECAY * anchors[:2] + (1.0 - DECAY) * means)
    return tf.concat([averaged, anchors[2:] + 1.0], axis=0)
