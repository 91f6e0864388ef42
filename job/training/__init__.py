"""One training run under MirroredStrategy: devices, data, augment, models, step, standing_stats,
plan, loop.

Knows the strategy, the models, the optimizers and the data; reports each epoch through callbacks;
knows nothing of Ray and never branches on a URI's scheme.
"""
