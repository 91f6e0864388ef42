"""Generator and discriminator shapes for every preset and resolution."""

import numpy as np
import pytest

from job import config as C
from job.training.models import build_discriminator, build_generator
from job.training.models.layers import hidden_layer_count


@pytest.mark.parametrize("preset", ["smoke", "demo", "seed28", "default"])
def test_preset_models_have_the_configured_shape_and_depth(preset):
    config = C.resolve(preset)
    g, d = build_generator(config), build_discriminator(config)
    assert g.output_shape == (None, config.height, config.width, 1)
    assert d.output_shape == (None, 1)
    assert hidden_layer_count(g) == config.g_depth
    assert hidden_layer_count(d) == config.d_depth
    images = g(np.random.RandomState(0).randn(3, config.latent_dim).astype("float32"), training=False)
    assert np.all(np.abs(images.numpy()) <= 1.0)
    assert d(images).shape == (3, 1)


def test_the_long_run_preset_builds_balanced_non_square_336x504():
    import keras

    config = C.resolve("seed336x504")
    g, d = build_generator(config), build_discriminator(config)
    assert g.output_shape == (None, 336, 504, 1)
    assert hidden_layer_count(g) == 11 and hidden_layer_count(d) == 8
    # A 6x8 seed map, upsampled to 48x64 and cropped to 42x63 (= 336x504 / 8), then exact.
    reshape = next(l for l in g.layers if isinstance(l, keras.layers.Reshape))
    assert reshape.output.shape[1:] == (6, 8, config.max_filters)
    crops = [l for l in g.layers if isinstance(l, keras.layers.Cropping2D)]
    assert len(crops) == 1 and crops[0].output.shape[1:3] == (42, 63)
    # D's own stages reach 6x8 before its read-out: no linear layer over a 42x63 map.
    assert d.get_layer("logit").input.shape[-1] == 6 * 8 * config.max_filters
    assert 1 / 4 <= g.count_params() / d.count_params() <= 4
    assert d(g(np.zeros((1, config.latent_dim), "float32"))).shape == (1, 1)


@pytest.mark.parametrize("dataset_config", sorted(C.RESOLUTIONS))
def test_every_resolution_is_reachable_with_minimal_depth(dataset_config):
    h, w = C.RESOLUTIONS[dataset_config]
    stages = C.upsampling_stages(h, w)
    config = C.resolve("smoke", sets=[f"dataset_config={dataset_config}", f"g_depth={stages + 1}",
                                      f"d_depth={stages}", "g_filters=4", "d_filters=4"])
    assert build_generator(config).output_shape == (None, h, w, 1)
    assert build_discriminator(config).output_shape == (None, 1)


def test_relu_and_dropout_are_wired_in():
    config = C.resolve("smoke", sets=["activation=relu", "dropout=0.25"])
    layers = [type(l).__name__ for l in build_discriminator(config).layers]
    assert "ReLU" in layers and "LeakyReLU" not in layers and "SeededDropout" in layers


@pytest.mark.parametrize("name", C.MODELS)
def test_every_architecture_gives_its_plans_and_builders(name):
    """The contract of a module of job/training/models/: what capacity and the step call."""
    from job.training import models

    config = C.resolve("smoke", sets=[f"model={name}"])
    module = models.architecture(config)
    assert module.__name__ == f"job.training.models.{name}"
    g, d = models.generator_plan(config), models.discriminator_plan(config)
    assert g[-1].out_shape == (config.height, config.width, 1) and d[-1].out_shape == (1,)
    # The builders build these plans: test_capacity.test_the_builders_are_their_plans.
    assert callable(module.build_generator) and callable(module.build_discriminator)
