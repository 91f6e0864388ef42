"""Model capacity figures: hand-computed small cases, the builders held to the plans, the
seed336x504 targets, and the old unbalanced 336x504 shape judged "bad"."""

import dataclasses
import subprocess
import sys

import pytest

from job import config as C
from job.training import capacity as K
from job.training.layer_plan import Layer


@pytest.mark.parametrize("side, stages", [(8, 1), (15, 1), (16, 2), (28, 2), (64, 4), (128, 5),
                                          (256, 6), (336, 6), (1024, 6)])
def test_stages_keep_the_seed_maps_short_side_at_4_to_8_px(side, stages):
    assert C.upsampling_stages(side, side + 100) == stages
    if side <= 511:
        assert 4 <= -(-side // 2**stages) <= 8


@pytest.mark.parametrize("h, w, seed, crop_level, crop_from, crop_to", [
    (28, 28, (7, 7), 0, (7, 7), (7, 7)),  # the tutorial's 7x7 seed, exact: no crop
    (64, 64, (4, 4), 0, (4, 4), (4, 4)),
    (336, 504, (6, 8), 3, (48, 64), (42, 63)),  # 504 = 63 * 2^3: crop at 1/8 scale, then exact
    (100, 150, (7, 10), 3, (56, 80), (50, 75)),  # 150 = 75 * 2
    (97, 97, (7, 7), 4, (112, 112), (97, 97)),  # odd: crop at the image itself
])
def test_geometry_for_any_size(h, w, seed, crop_level, crop_from, crop_to):
    geo = K.geometry(h, w)
    assert (geo.seed, geo.crop_level, geo.crop_from, geo.crop_to) == (seed, crop_level, crop_from, crop_to)
    assert geo.crops == (crop_from != crop_to)
    # The last stages double the cropped map exactly to the image.
    assert (crop_to[0] << (geo.stages - crop_level), crop_to[1] << (geo.stages - crop_level)) == (h, w)


TINY = C.resolve("smoke", sets=["g_depth=3", "d_depth=2", "g_filters=2", "d_filters=2",
                                "latent_dim=3"])


def test_tiny_models_by_hand():
    # G (28x28, 2 stages, 7x7x8 seed): dense 3->392 no bias + BN(392); deconv 4x4 8->4 + BN(4);
    # deconv 4x4 4->2 + BN(2); conv 3x3 2->1 with bias. BN holds 4 per channel, 2 trainable.
    g, d = K.generator_plan(TINY), K.discriminator_plan(TINY)
    assert K.parameters(g) == 3 * 392 + 4 * 392 + 16 * 8 * 4 + 4 * 4 + 16 * 4 * 2 + 4 * 2 + 9 * 2 + 1
    assert K.trainable_parameters(g) == 3 * 392 + 2 * 392 + 512 + 8 + 128 + 4 + 19
    # D: conv 4x4/2 1->2 (+bias, no BN) -> 14x14; conv 4x4/2 2->4 (+bias, BN) -> 7x7; dense 196->1.
    assert K.parameters(d) == (16 * 2 + 2) + (16 * 2 * 4 + 4 + 16) + (196 + 1)
    assert K.trainable_parameters(d) == 34 + 132 + 8 + 197
    assert K.forward_flops(g) == 2 * 3 * 392 + 2 * 49 * 8 * 16 * 4 + 2 * 196 * 4 * 16 * 2 + 2 * 784 * 9 * 2
    assert K.forward_flops(d) == 2 * 196 * 2 * 16 + 2 * 49 * 4 * 16 * 2 + 2 * 196
    assert K.receptive_field(d) == 1 + 3 + 3 * 2  # two 4x4 stride-2 convs
    cap = K.capacity(TINY)
    assert cap.step_flops_per_image == 3 * K.forward_flops(g) + 7 * K.forward_flops(d)
    assert cap.checkpoint_bytes == 4 * (2 * 3427 + 379 + 2 * (2631 + 371))
    assert (K.hidden_layers(g), K.hidden_layers(d)) == (3, 2)


def test_receptive_field_adds_kernel_minus_one_times_the_jump():
    conv = lambda k, s: Layer("conv", (8, 8, 1), (8, 8, 1), k, s)  # noqa: E731
    assert K.receptive_field([conv(3, 1)]) == 3
    assert K.receptive_field([conv(4, 2), conv(4, 2), conv(3, 1)]) == 1 + 3 + 6 + 2 * 4


def test_balance_verdict():
    assert K.balance(400, 100) == (4.0, "ok")
    assert K.balance(100, 401) == (4.01, "bad")


def _old_336x504_plans():
    """The models the builders made before the capacity plans (git d7097936), at 336x504 with
    the preset's 32 filters: 3 stages (all 504's factors of 2 allow), a 42x63x256 seed map."""
    g = [Layer("dense", (100,), (42 * 63 * 256,), bias=False, norm=True, act=True)]
    h, w, c = 42, 63, 256
    for extra, out in ((3, 128), (2, 64), (2, 32)):  # 7 stride-1 convs, round-robin, lowest first
        g += [Layer("conv", (h, w, c), (h, w, c), 3, 1, bias=False, norm=True)] * extra
        g.append(Layer("deconv", (h, w, c), (2 * h, 2 * w, out), 4, 2, bias=False, norm=True))
        h, w, c = 2 * h, 2 * w, out
    g.append(Layer("conv", (h, w, c), (h, w, 1), 3, 1))
    d, h, w, c = [], 336, 504, 1
    for step, (out, extra) in enumerate(((32, 1), (64, 2), (128, 2))):  # 5 stride-1 convs
        d.append(Layer("conv", (h, w, c), (h // 2, w // 2, out), 4, 2, norm=step > 0))
        h, w, c = h // 2, w // 2, out
        d += [Layer("conv", (h, w, c), (h, w, c), 3, 1, norm=True)] * extra
    d.append(Layer("dense", (h * w * c,), (1,)))
    return g, d


def test_the_old_unbalanced_336x504_shape_is_judged_bad():
    g, d = _old_336x504_plans()
    # The old builders' Keras count_params, measured before the change.
    assert (K.parameters(g), K.parameters(d)) == (73_279_137, 883_969)
    assert g[0].params == 100 * 677_376 + 2 * 677_376  # the Dense(100 -> 677,376) and its BN
    assert d[-1].in_shape == (338_688,)  # the linear read-out over 42x63x128 features
    ratio, verdict = K.balance(K.parameters(g), K.parameters(d))
    assert verdict == "bad" and ratio > 80
    assert K.receptive_field(d) == 74 < 336  # judges ~74 px patches of a 336 px short side
    bytes_ = K.checkpoint_bytes(K.parameters(g), K.trainable_parameters(g), K.parameters(d),
                                K.trainable_parameters(d))
    assert bytes_ > 1.1e9  # ~1.2 GB


def test_seed336x504_meets_the_issue_targets_and_keeps_the_seeds_findings():
    config = C.resolve("seed336x504")
    cap = K.capacity(config)
    assert cap.balance[1] == "ok" and cap.balance[0] <= 4
    assert cap.d_receptive_field >= 336 and cap.sees_whole_image
    assert cap.checkpoint_bytes <= 300e6
    assert (cap.g_hidden_layers, cap.d_hidden_layers) == (11, 8)
    assert (config.activation, config.g_lr, config.d_lr, config.dropout) == ("leaky_relu", 1e-4, 1e-4, 0.0)
    assert 4 <= min(cap.geometry.seed) <= 8


@pytest.mark.parametrize("preset", ["smoke", "demo", "seed28", "default"])
def test_small_presets_keep_their_models(preset):
    # 28x28 and 64x64 are the shapes they were before the plans (count_params measured then).
    before = {"smoke": (66_857, 5_433), "demo": (1_123_409, 323_569),
              "seed28": (4_916_545, 694_913), "default": (17_987_393, 5_904_513)}
    cap = K.capacity(C.resolve(preset))
    assert (cap.g_params, cap.d_params) == before[preset]
    assert not cap.geometry.crops


@dataclasses.dataclass(frozen=True)
class _Sized(C.TrainConfig):
    """A config at any H×W (the dataset configs name only a few sizes)."""

    h: int = 97
    w: int = 150

    @property
    def height(self) -> int:
        return self.h

    @property
    def width(self) -> int:
        return self.w


def _configs():
    out = [(p, C.resolve(p)) for p in ("smoke", "demo", "seed28", "default", "seed336x504")]
    out.append(("seed336x504-conditional", C.resolve("seed336x504", sets=["conditional=true"])))
    small = dict(g_filters=4, d_filters=4, latent_dim=8)
    for h, w in ((97, 150), (100, 150), (50, 50)):
        base = C.override(C.resolve("smoke"), small)
        stages = C.upsampling_stages(h, w)
        out.append((f"{h}x{w}", dataclasses.replace(
            _Sized(**base.to_dict(), h=h, w=w), g_depth=stages + 2, d_depth=stages + 1)))
    return out


@pytest.mark.parametrize("name, config", _configs(), ids=[n for n, _ in _configs()])
def test_the_builders_are_their_plans(name, config):
    from bench.flops import model_forward_flops
    from job.training.models import build_discriminator, build_generator
    from job.training.models.layers import hidden_layer_count

    g, d = build_generator(config), build_discriminator(config)
    cap = K.capacity(config)
    assert g.output_shape == (None, config.height, config.width, 1)
    assert (g.count_params(), d.count_params()) == (cap.g_params, cap.d_params)
    trainable = lambda m: sum(int(v.numpy().size) for v in m.trainable_variables)  # noqa: E731
    assert (trainable(g), trainable(d)) == (cap.g_trainable, cap.d_trainable)
    projection = 2 * K.discriminator_plan(config)[-1].in_shape[-1] if config.conditional else 0
    assert (model_forward_flops(g), model_forward_flops(d) + projection) == (
        cap.g_forward_flops, cap.d_forward_flops)  # bench.flops counts dense and conv layers
    assert (hidden_layer_count(g), hidden_layer_count(d)) == (cap.g_hidden_layers, cap.d_hidden_layers)


def test_checkpoint_bytes_match_a_written_checkpoint(tmp_path):
    from job.training.strategy import strategy_for
    from job.training.step import build_state

    config = C.resolve("demo")
    state = build_state(config, strategy_for(1))
    state.checkpoint().write(str(tmp_path / "ckpt"))
    data = sum(f.stat().st_size for f in tmp_path.glob("ckpt.data-*"))
    expected = K.capacity(config).checkpoint_bytes
    assert expected <= data <= expected * 1.01 + 4096, (data, expected)


def test_dry_run_prints_the_figures_without_importing_tensorflow():
    code = ("import sys; from job.cli import main; "
            "rc = main(['train', '--preset', 'seed336x504', '--dry-run']); "
            "assert 'tensorflow' not in sys.modules; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    cap = K.capacity(C.resolve("seed336x504"))
    assert "6x8 seed map (48x64 cropped to 42x63" in out
    assert f"generator: {cap.g_params / 1e6:.2f}M parameters" in out
    assert "receptive field 382 px (covers the 336 px short side)" in out
    assert "balance: G/D parameters 1.88x: ok" in out
    assert f"checkpoint: {cap.checkpoint_bytes / 1e6:.0f} MB" in out
    assert "GFLOP/image per step" in out


def test_the_plan_line_carries_the_figures():
    from job.training.plan import make_plan

    config = C.resolve("seed336x504")
    line = make_plan(config, 700, 1).describe(config)
    assert line.startswith("plan: 700 training images")
    assert "G 7.48M / D 3.99M parameters (1.9x, ok)" in line
    assert "D receptive field 382 px, checkpoint 167 MB" in line
