"""Many training runs: Ray Tune sweeps around `job.training.loop.fit`, results and the best in a bucket.

`tune` imports `job`; `job` never imports `tune` or Ray. The rooms:
- `space`: the search space, its file format and the check of every value it can draw;
- `resources`: what a trial needs against what the cluster holds; `plan`: the printed plan;
- `pbt`: what population-based training may vary, and its scheduler;
- `sweep`: the Ray wiring (`covidct sweep`); `trainable`: one trial = one run of `fit`;
- `report` (outcomes and report.md), `best` (`covidct best`), `progress`, `layout`, `cli`.
"""
