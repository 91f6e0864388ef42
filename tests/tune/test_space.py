"""The search space alone (no Ray): its file format, its default, and the check of every value
it can draw before a trial starts."""

import pytest

from job import run as run_layout
from job.config import resolve
from job.errors import ConfigError
from job.metrics.registry import SELECTION_METRIC as SELECTION
from tune import space as spaces


def test_default_space_for_smoke_only_holds_trainable_values():
    base = resolve("smoke")
    space = spaces.default_space(base, replicas=2, train_images=20)
    assert set(space) == {"activation", "g_lr", "d_lr", "g_depth", "d_depth", "dropout",
                          "global_batch_size", "augment"}
    assert space["d_lr"] == spaces.Dim("same_as", ("g_lr",))
    assert space["g_lr"].args == (1e-5, 1e-3)
    assert space["global_batch_size"].args == (8, 16)  # 32 > 20 images is left out
    configs = spaces.check(space, base, replicas=2)
    assert {c.g_depth for c in configs} == {3, 5} and {c.d_depth for c in configs} == {2, 3, 4}
    assert all(c.d_lr == c.g_lr for c in configs)


def test_space_file_values_take_the_field_types(tmp_path):
    path = tmp_path / "space.yaml"
    # YAML reads 1e-5 as a string; the space coerces it like `--set` would.
    path.write_text("g_lr: {loguniform: [1e-5, 1e-3]}\nd_lr: {same_as: g_lr}\n"
                    "dropout: [0, 0.1]\ng_depth: {grid: [3, 5]}\nepochs: '3'\n")
    space = spaces.load_space(str(path))
    assert space["g_lr"].args == (1e-5, 1e-3) and isinstance(space["g_lr"].args[0], float)
    assert space["dropout"].args == (0.0, 0.1) and space["epochs"] == spaces.Dim("constant", (3,))
    assert spaces.grid_points(space) == 2
    assert len(spaces.check(space, resolve("smoke"), replicas=1)) == 2 * 2 * 2


@pytest.mark.parametrize("text, field, words", [
    ("g_learning_rate: [1.0e-4]\n", "g_learning_rate", "unknown field"),
    ("run_uri: [a, b]\n", "run_uri", "cannot be searched"),
    ("g_lr: {loguniform: [0, 1.0e-3]}\n", "g_lr", "bounds"),
    ("d_lr: {same_as: g_lr}\n", "d_lr", "same_as"),
    ("g_depth: {between: [3, 5]}\n", "g_depth", "expected"),
    ("g_depth: {uniform: [3, 7]}\n", "g_depth", "needs a float field"),
])
def test_a_bad_space_file_names_the_field(tmp_path, text, field, words):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        spaces.load_space(str(path))
    assert error.value.field == field and words in str(error.value)


def _refused(space: dict, replicas: int) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        spaces.check(spaces.parse_space(space), resolve("smoke"), replicas=replicas)
    return error.value


def test_a_value_that_cannot_train_is_refused_with_its_combination():
    error = _refused({"g_depth": [3, 2], "dropout": [0.0, 0.1]}, replicas=1)
    assert error.field == "g_depth" and "g_depth=2" in str(error)
    error = _refused({"global_batch_size": {"grid": [16, 6]}}, replicas=4)
    assert "not divisible by the 4 replicas" in str(error) and "global_batch_size=6" in str(error)


def test_every_integer_a_range_can_draw_is_checked_not_only_its_ends():
    # 8 and 32 split over 2 replicas; 9 (and every odd draw between) does not.
    error = _refused({"global_batch_size": {"randint": [8, 33]}, "g_lr": {"loguniform": [1e-5, 1e-3]}},
                     replicas=2)
    assert error.field == "global_batch_size" and "global_batch_size=9" in str(error)
    evens = spaces.parse_space({"global_batch_size": {"randint": [8, 9]}, "epochs": {"randint": [1, 40]}})
    assert {c.epochs for c in spaces.check(evens, resolve("smoke"), replicas=2)} == set(range(1, 40))
    # A float range is checked at its ends: every float rule is an interval.
    error = _refused({"adam_beta_1": {"uniform": [0.5, 1.0]}}, replicas=1)
    assert error.field == "adam_beta_1" and "adam_beta_1=1.0" in str(error)


def test_a_space_too_large_to_combine_still_checks_each_value():
    # 25 x 25 x 40 = 25,000 combinations of every value: over MAX_COMBINATIONS, so corners plus
    # each field's values alone; the odd batch is still found.
    space = {"global_batch_size": {"randint": [8, 33]}, "epochs": {"randint": [1, 26]},
             "seed": {"randint": [0, 40]}}
    error = _refused(space, replicas=2)
    assert error.field == "global_batch_size" and "global_batch_size=9" in str(error)
    huge = spaces.Dim("randint", (0, 10**9))
    assert len(spaces.drawable(huge)) == spaces.MAX_INTEGERS and spaces.drawable(huge)[-1] == 10**9 - 1


def test_a_sweep_can_search_the_classes_and_conditioning_and_best_shows_them(tmp_path):
    from tune import best as results

    path = tmp_path / "space.yaml"
    path.write_text("conditional: [true, false]\nlabels: ['', covid]\n")
    space = spaces.load_space(str(path))
    configs = spaces.check(space, resolve("smoke"), replicas=1)
    assert {(c.conditional, c.labels) for c in configs} == {
        (True, ""), (True, "covid"), (False, ""), (False, "covid")}
    with pytest.raises(ConfigError, match="labels"):
        spaces.check(spaces.parse_space({"labels": ["covid", "covid19"]}), resolve("smoke"), replicas=1)
    history = ({"epoch": 2, "swd_holdout": 30.0, "swd_floor": 20.0, "intensity_w1_holdout": 0.3,
                "intensity_w1_floor": 0.1, SELECTION: 3.0},)
    trials = [results.Trial(f"t{i}", f"runs/t{i}", {"name": f"t{i}", "conditional": c.conditional,
                                                  "labels": c.labels, "g_lr": 1e-4}, history, (), ())
              for i, c in enumerate(configs)]
    fields = results.varying_fields(trials)
    assert fields == ["conditional", "labels"]
    kept = run_layout.Saved("e0002-s000000", 2, 0)
    head, _, first, *_ = results.table([results.Ranked(t, 3.0, kept) for t in trials], SELECTION,
                                       fields).splitlines()
    assert head.split(" | ")[-2:] == ["conditional", "labels |"]
    # The hold-out figures over their floors beside the blend: here intensity drives it.
    assert "| 1.5 | 3 |" in first and "| True | '' |" in first
