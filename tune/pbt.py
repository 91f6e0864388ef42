"""Population-based training (Jaderberg et al. 2017, arXiv:1711.09846) over the job's runs.

Ray's PopulationBasedTraining exploits by giving the weaker trial the stronger one's checkpoint
*and its whole config* (not only the fields it perturbs), then explores by perturbing the
mutable ones. A trial is a run, and a run folder resumes only with the settings that do not
shape its checkpoint or its data (`job.config.RESUMABLE_FIELDS`: learning rates, batch,
augmentation, R1...; not the depths, activation, dropout, resolution or seed). So, as in the
paper, a PBT population shares one model and one dataset and evolves the hyperparameters a run
may change when it resumes:

- a space that varies any other field is refused before a trial starts (`check_space`, one
  ConfigError naming the field, exit 2); `population_space` keeps only the mutable fields of the
  default space, whose other questions (depths, activation, dropout) are ASHA's;
- every value PBT can move a field to was checked with the space: lists and integer ranges step
  to a neighbouring value of the space, float ranges are scaled by 0.8/1.2 or resampled and then
  clipped to the space's bounds (`Explore`; Ray does not clip), and tied fields follow their source.

A trial that exploits another resumes from that trial's checkpoint in its own run folder; the
run records the settings it was handed in its config_history.jsonl (`job.training.outputs`).
"""

from __future__ import annotations

import dataclasses

from job.config import RESUMABLE_FIELDS
from job.errors import ConfigError
from tune import space as spaces

MUTABLE = tuple(sorted(RESUMABLE_FIELDS - set(spaces.RESERVED) - set(spaces.FIXED)))


def varies(dim: spaces.Dim) -> bool:
    """Whether trials can differ in this field (a one-value list or a constant does not; a tied
    field follows its source)."""
    if dim.kind in ("uniform", "loguniform"):
        return True
    return dim.kind in ("choice", "grid", "randint") and len(set(spaces.drawable(dim))) > 1


def population_space(space: spaces.Space) -> spaces.Space:
    """The fields of `space` a PBT population may vary; the others stay at the base config."""
    return {f: d for f, d in space.items() if f in MUTABLE}


def check_space(space: spaces.Space) -> None:
    """Refuse a space that varies a field a run cannot change when it resumes.

    Raises:
        ConfigError (exit 2): names the first such field.
    """
    fixed = [f for f, d in space.items() if f not in MUTABLE and varies(d)]
    if fixed:
        raise ConfigError(fixed[0], (
            f"PBT cannot search it ({', '.join(fixed)} in the space): an exploiting trial takes "
            f"another trial's checkpoint and whole config, and a run cannot change this field when it "
            f"resumes (it shapes the checkpoint or the data). With --scheduler pbt search only "
            f"{', '.join(MUTABLE)}; give the others one value, or use --scheduler asha"))


def mutations(space: spaces.Space) -> dict:
    """PBT's `hyperparam_mutations`: every varied field, as values to step through or a range."""
    from ray import tune

    out = {}
    for field, dim in space.items():
        if not varies(dim):
            continue
        if dim.kind in ("uniform", "loguniform"):
            out[field] = getattr(tune, dim.kind)(*dim.args)
        else:  # choice, grid, randint: PBT steps to a neighbour among the checked values
            out[field] = list(spaces.drawable(dim))
    return out


@dataclasses.dataclass(frozen=True)
class Explore:
    """PBT's `custom_explore_fn`: float ranges clipped to their bounds, then ties restored."""

    bounds: tuple[tuple[str, float, float], ...]
    ties: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, space: spaces.Space) -> "Explore":
        return cls(tuple((f, *d.args) for f, d in space.items() if d.kind in ("uniform", "loguniform")),
                   tuple((f, d.args[0]) for f, d in space.items() if d.kind == "same_as"))

    def __call__(self, config: dict) -> dict:
        for field, low, high in self.bounds:
            config[field] = min(max(config[field], low), high)
        for field, source in self.ties:
            config[field] = config[source]
        return config


def scheduler(space: spaces.Space, interval: int):
    """Ray's PopulationBasedTraining for `space`, perturbing every `interval` epochs."""
    from ray.tune.schedulers import PopulationBasedTraining

    check_space(space)
    found = mutations(space)
    if not found:
        raise ConfigError("--space", f"PBT needs a searched field it may change mid-run, one of "
                                     f"{list(MUTABLE)}; the space varies none")
    # Synchronous PBT (Jaderberg et al. 2017, appendix A.1): the population is ranked when every
    # trial has reached the same epoch, so a GAN trial is never judged against one trained longer,
    # and the weaker half always exploits (asynchronous ranking depends on who reports first).
    return PopulationBasedTraining(time_attr="epoch", perturbation_interval=interval, synch=True,
                                   hyperparam_mutations=found, custom_explore_fn=Explore.of(space))
