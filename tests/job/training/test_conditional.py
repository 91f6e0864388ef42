"""Synthetic scans of a chosen class: class selection, the class-conditional DCGAN (projection
discriminator), generate and export by class. Real TFDS builds of the demo phantoms (ground-glass
patches only in the covid class), real Keras models on 1 and 2 logical CPUs."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from job.errors import ConfigError
from job.export import export
from job.generate import generate_pngs, load_generator
from job.images import read_tags
from job.training import data
from job.training.strategy import strategy_for
from job.training.loop import fit
from job.training.step import build_state, make_train_step
from tests.helpers import smoke

pytestmark = pytest.mark.heavy


def test_labels_select_the_classes_a_run_trains_on(demo_data, tmp_path):
    every, covid = (data.describe(smoke(demo_data, tmp_path, labels=labels)) for labels in ("", "covid"))
    everything, n_all = data.load_images(smoke(demo_data, tmp_path), dataset=every)
    covid_only, n_covid = data.load_images(smoke(demo_data, tmp_path, labels="covid"), dataset=covid)
    names = every.class_names
    counts = {names[i]: n for i, n in collections.Counter(
        everything.map(lambda ex: ex["label"]).as_numpy_iterator()).items()}
    assert counts == every.class_counts  # what describe counted from labels alone is what loads
    assert counts["covid"] == n_covid and sum(counts.values()) == n_all > n_covid > 0
    assert {names[l] for l in covid_only.map(lambda ex: ex["label"]).as_numpy_iterator()} == {"covid"}
    assert covid.class_counts == {"covid": n_covid} and covid.class_ids == [names.index("covid")]
    with pytest.raises(ConfigError, match="labels"):
        data.load_images(smoke(demo_data, tmp_path, labels="covid19"))


def test_a_conditional_step_is_the_same_on_one_and_two_replicas(demo_data, tmp_path):
    config = smoke(demo_data, tmp_path, conditional="true", xla="off", global_batch_size=8)
    images, _ = data.load_images(config)
    assert len(set(np.concatenate([b["label"].numpy() for b in data.epoch_batches(
        images, config, 0)]))) == 2  # both classes in the batches
    losses, weights = [], []
    for replicas in (1, 2):
        strategy = strategy_for(replicas)
        state = build_state(config, strategy)
        step = make_train_step(config, state, strategy)
        batch = next(iter(strategy.experimental_distribute_dataset(data.epoch_batches(images, config, 0))))
        losses.append({k: float(v) for k, v in step(batch, tf.constant(0.0)).items()})
        weights.append(np.concatenate([v.numpy().ravel() for v in state.generator.trainable_variables
                                       + state.discriminator.trainable_variables]))
    for key in ("g_loss", "d_loss", "d_real_acc"):
        assert losses[0][key] == pytest.approx(losses[1][key], rel=1e-4), key
    # Adam's first step is ~lr * sign(gradient): a gradient within roundoff of 0 may flip sign
    # between summation orders, so a handful of weights may differ by up to 2 lr; no more.
    close = np.isclose(weights[0], weights[1], rtol=0, atol=1e-5)
    assert close.mean() > 0.999 and np.abs(weights[0] - weights[1]).max() <= 2.5 * config.g_lr


def test_a_conditional_run_generates_and_exports_by_class(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run, conditional="true", epochs=2))
    # generate --label: PNGs tagged with their class; counts per class replace --n.
    names = generate_pngs(str(run), str(tmp_path / "png"), n=5, label="covid")
    assert len(names) == 5 and read_tags(tmp_path / "png" / names[0])["label"] == "covid"
    names = generate_pngs(str(run), str(tmp_path / "mix"), n=1, label="covid=2,non_covid=3")
    assert [read_tags(tmp_path / "mix" / n)["label"] for n in names] == ["covid"] * 2 + ["non_covid"] * 3
    # --tfds keeps the label the generator was asked for.
    info = export(str(run), str(tmp_path / "export"), n=6, label="non_covid",
                  tfds_data_dir=str(tmp_path / "synthetic_tfds"))
    assert info["label_source"] == "conditional generator"
    rows = list(tfds.as_numpy(tfds.load("covid_ct_synthetic/28", split="train",
                                        data_dir=str(tmp_path / "synthetic_tfds"))))
    assert len(rows) == 6 and {r["label"] for r in rows} == {1}  # non_covid
    with pytest.raises(ConfigError, match="positive count"):
        generate_pngs(str(run), str(tmp_path / "bad"), n=1, label="covid=0")


def test_an_unconditional_run_refuses_a_label(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run, epochs=1))
    with pytest.raises(ConfigError, match="unconditional"):
        generate_pngs(str(run), str(tmp_path / "png"), n=2, label="covid")


def test_a_conditional_run_resumes_to_the_same_weights(demo_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    sets = dict(conditional="true", deterministic="true")
    fit(smoke(demo_data, straight, epochs=3, **sets))
    fit(smoke(demo_data, resumed, epochs=2, **sets))
    fit(smoke(demo_data, resumed, epochs=3, **sets))
    a, _, _ = load_generator(str(straight))
    b, _, _ = load_generator(str(resumed))
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_a_short_conditional_run_draws_the_class_it_is_asked_for(demo_data, tmp_path):
    # The demo recipe at 28x28, conditional, ~3000 steps (measured: a probe recovers 88-92% of
    # the class after 3000 steps, 83-87% after 1900, 55-60% after 700). The probe is the
    # report's own class-fidelity CNN (job.evaluation.classifier), trained on 64 real phantoms
    # and first checked on the other 32: its accuracy is what makes its shares readable.
    from job import config as C
    from job.evaluation import classifier
    from job.generate import generate_images
    from tfds_covidct.covid_ct.sources import LABELS

    run = tmp_path / "run"
    fit(C.resolve("demo", extra=dict(
        data_dir=demo_data, run_uri=str(run), dataset_config="28", conditional=True, epochs=600,
        metrics_every_epochs=600, sample_every_epochs=600, checkpoint_every_epochs=600)))
    config = smoke(demo_data, tmp_path)
    splits = [data.load_split(config, s) for s in ("train", "test")]
    x, covid = np.concatenate([s[0] for s in splits]), np.concatenate([s[1] for s in splits])
    order = np.random.default_rng(0).permutation(len(x))
    fitted, held = order[:64], order[64:]
    probe = classifier.train_classifier(x[fitted], covid[fitted], seed=0)
    assert np.mean((classifier.covid_probability(probe, x[held]) > 0.5) == covid[held]) >= 0.85
    generator, run_config, _ = load_generator(str(run))
    recalled = {}
    for name in LABELS:
        drawn = generate_images(generator, run_config, 200, seed=1,
                                labels=np.full(200, LABELS.index(name)))
        called_covid = classifier.covid_probability(probe, drawn) > 0.5
        recalled[name] = float(np.mean(called_covid if name == "covid" else ~called_covid))
    # Chance is 50% per class; an unconditional generator scores 100% on one class only.
    assert np.mean(list(recalled.values())) >= 0.8 and min(recalled.values()) >= 0.7, recalled


@pytest.mark.parametrize("replicas, sets", [
    (2, ["precision=mixed_float16", "xla=on"]),
    (2, ["dataset_config=64", "g_depth=5", "d_depth=4", "xla=off"]),
])
def test_a_conditional_step_learns_the_class_with_diffaugment_ema_mixed_precision_and_xla(
        demo_data, tmp_path, replicas, sets):
    config = smoke(demo_data, tmp_path, conditional="true", global_batch_size=8,
                   **dict(s.split("=") for s in sets))
    assert config.augment_policy and config.ema_kimg > 0  # DiffAugment and the EMA are on
    # The step's arithmetic does not depend on the pixels: labelled noise at the config's size.
    rng = np.random.default_rng(0)
    images = tf.data.Dataset.from_tensor_slices({
        "image": rng.integers(0, 256, (32, config.height, config.width, 1)).astype("uint8"),
        "label": rng.integers(0, 2, 32)})
    strategy = strategy_for(replicas)
    state = build_state(config, strategy)
    step = make_train_step(config, state, strategy)
    class_weights = [state.generator.get_layer("class_embedding").embeddings,
                     state.discriminator.get_layer("projection").embeddings]
    before = [w.numpy().copy() for w in class_weights]
    ema_before = state.ema_generator.get_layer("class_embedding").embeddings.numpy().copy()
    batches = iter(strategy.experimental_distribute_dataset(data.epoch_batches(images, config, 0)))
    for _ in range(2):
        metrics = {k: float(v) for k, v in step(next(batches), tf.constant(0.5)).items()}
        assert all(np.isfinite(v) for v in metrics.values()), metrics
    # The class reaches both networks' updates (G's embedding, D's projection) and the EMA.
    for w, b in zip(class_weights, before):
        assert w.dtype == "float32" and not np.allclose(w.numpy(), b)
    assert not np.allclose(state.ema_generator.get_layer("class_embedding").embeddings.numpy(), ema_before)
