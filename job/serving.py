"""`covidct export --run RUN --format saved_model --out DIR`: a run's EMA generator for serving.

    DIR/saved_model/     a TF SavedModel: signature `serving_default` (z float32 (N, latent_dim)
                         [, label int32 (N,) for a conditional run]) -> {"images": uint8 (N, H, W, 1)}
    DIR/MODEL_CARD.md    data, training, figures, intended use and limits (`job.model_card`)

TF Serving and Vertex AI load the folder as it is; so does `tf.saved_model.load` in a process
that has nothing of this project. The uint8 images are what `covidct generate` writes for the
same latents: the generator's [-1, 1] output mapped by `job.images.to_uint8`'s rule
(round((x + 1) * 127.5), clipped to 0..255), drawn with the standing statistics `generate` uses.
`generate --seed S` draws its latents as `tf.random.stateless_normal([n, latent_dim],
seed=[S, 104729])` (`job.generate.generate_images`), so a client can reproduce them.

ONNX is not offered: converting needs tf2onnx and onnx, which the pinned stack does not carry.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from job import model_card, storage
from job.training.models import generator_inputs

log = logging.getLogger("covidct")

SAVED_MODEL = "saved_model"
SIGNATURE = "serving_default"


def to_uint8(x: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images -> uint8, the rule of `job.images.to_uint8` (round half to even, clip)."""
    x = tf.cast(x, tf.float32)
    return tf.cast(tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def write_saved_model(generator: keras.Model, config, path: str) -> None:
    """Write `generator` (built for `config`) as a SavedModel at local `path`.

    The one endpoint is also `serving_default` (Keras' ExportArchive registers the first
    endpoint under that name, as TF Serving requires).
    """
    archive = keras.export.ExportArchive()
    archive.track(generator)
    z_spec = tf.TensorSpec([None, config.latent_dim], tf.float32, name="z")
    if config.conditional:
        def serve(z, label):
            return {"images": to_uint8(generator(generator_inputs(config, z, label), training=False))}
        signature = [z_spec, tf.TensorSpec([None], tf.int32, name="label")]
    else:
        def serve(z):
            return {"images": to_uint8(generator(z, training=False))}
        signature = [z_spec]
    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=signature)
    archive.write_out(path, verbose=False)


def export_saved_model(run_uri: str, out: str, checkpoint: str = "latest") -> str:
    """Export the EMA generator of `run_uri` at `checkpoint` to `out`/saved_model, with
    `out`/MODEL_CARD.md; returns the SavedModel's URI.

    Raises:
        UsageError (exit 2): `run_uri` is not a run, or has no such checkpoint.
        StorageError (exit 1): the run or `out` cannot be reached.
    """
    from job.generate import load_generator

    generator, config, epoch = load_generator(run_uri, checkpoint)
    card = model_card.for_run(run_uri, checkpoint, epoch, config)
    with storage.staged_output(out) as folder:
        write_saved_model(generator, config, str(folder / SAVED_MODEL))
        (folder / model_card.NAME).write_text(card)
    uri = storage.join(out, SAVED_MODEL)
    inputs = "z, label" if config.conditional else "z"
    log.info(f"exported {run_uri} epoch {epoch} to {uri}: {SIGNATURE}({inputs}) -> uint8 images "
             f"{config.height}x{config.width}; {model_card.NAME} beside it")
    return uri
