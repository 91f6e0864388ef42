"""What a trial needs against what the cluster holds, from node lists alone (no Ray)."""

import pytest

from tune.resources import Cluster, PlanError, cluster_from, plan_resources


def test_resources_follow_the_cluster():
    gpus = Cluster(cpus=(16, 16), gpus=(4, 4))
    r = plan_resources(gpus, gpus_per_trial=2, cpus_per_trial=4, cpu_replicas=0, trials=10)
    assert (r.replicas, r.concurrent, r.cpu_replicas) == (2, 4, 0)
    assert plan_resources(gpus, None, 1, 0, trials=3).gpus_per_trial == 1
    cpus = Cluster(cpus=(2,), gpus=(0,))
    r = plan_resources(cpus, None, cpus_per_trial=2, cpu_replicas=0, trials=5)
    assert (r.gpus_per_trial, r.cpu_replicas, r.concurrent) == (0, 2, 1)
    with pytest.raises(PlanError, match="4 on its largest node") as error:
        plan_resources(gpus, 5, 1, 0, trials=1)  # 8 GPUs in all, but a trial spans one node
    assert error.value.exit_code == 2


def test_an_autoscaling_cluster_counts_the_nodes_it_may_add():
    # The KubeRay sweep cluster idles with its head only; its GPU group scales from 0 to 4 nodes.
    head = {"CPU": 4.0}
    idle = cluster_from([head], None, trials=8)
    with pytest.raises(PlanError, match="more than the Ray cluster has: 0 GPU"):
        plan_resources(idle, 1, 1, 0, trials=8)
    groups = [(head, 1), ({"CPU": 8.0, "GPU": 1.0}, 4)]
    scaling = cluster_from([head], groups, trials=8)
    r = plan_resources(scaling, 1, 6, 0, trials=8)
    assert scaling.autoscaling and (r.gpus_per_trial, r.concurrent) == (1, 4)
    with pytest.raises(PlanError, match="can have, with its autoscaler: 4 GPU"):
        plan_resources(scaling, 2, 6, 0, trials=8)
    unlimited = cluster_from([head], [({"CPU": 8.0, "GPU": 2.0}, -1)], trials=3)
    assert plan_resources(unlimited, 2, 1, 0, trials=3).concurrent == 3


def test_a_cluster_that_grows_trusts_the_explicit_resources():
    # KubeRay's sweep cluster when the sweep starts: a head of 0 CPUs, no worker; Ray 2.60 does
    # not say what the autoscaler may add, --max-concurrent-trials (the manifests' maxReplicas) does.
    idle = cluster_from([{"CPU": 0.0}], None, trials=8, grows_to=4)
    r = plan_resources(idle, 1, 6, 0, trials=8)
    assert (r.gpus_per_trial, r.cpus_per_trial, r.concurrent, r.trusted) == (1, 6, 4, True)
    assert "(as given: no node has them yet" in r.describe()
    assert plan_resources(idle, 1, 6, 0, trials=3).concurrent == 3
    with pytest.raises(PlanError, match="--gpus-per-trial is needed"):
        plan_resources(idle, None, 6, 0, trials=8)  # GPU or CPU trials: nothing to tell from
    with pytest.raises(PlanError, match="--cpus-per-trial 0: GPUs must be >= 0 and CPUs >= 1"):
        plan_resources(idle, 1, 0, 0, trials=8)  # never fits anywhere
    # A worker already up that holds a trial: not "trusted", still capped by what it grows to.
    up = cluster_from([{"CPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}], None, trials=8, grows_to=4)
    r = plan_resources(up, None, 6, 0, trials=8)
    assert (r.gpus_per_trial, r.concurrent, r.trusted) == (1, 4, False)
    with pytest.raises(PlanError, match="must be positive"):
        cluster_from([], None, trials=8, grows_to=0)


def test_a_cluster_that_cannot_grow_says_how_to_declare_that_it_does():
    head_only = cluster_from([{"CPU": 0.0}], None, trials=2)
    with pytest.raises(PlanError, match="more than the largest node .* pass --max-concurrent-trials"):
        plan_resources(head_only, 0, 1, 0, trials=2)


def test_a_trial_of_several_workers_needs_that_many_places_at_once():
    # Four GPU nodes of 8 CPUs: a 2-worker trial of 1 GPU + 6 CPUs per worker takes two of them.
    nodes = Cluster(cpus=(8, 8, 8, 8), gpus=(1, 1, 1, 1))
    r = plan_resources(nodes, 1, 6, 0, trials=8, workers=2)
    assert (r.concurrent, r.replicas, r.workers) == (2, 2, 2)
    assert r.describe() == "2 Ray Train workers x (1 GPU(s) + 6 CPU(s)), 2 replicas"
    # A worker's GPUs share its node; the workers need not: 8 GPUs on 4 nodes hold 4 x 2 GPUs.
    assert plan_resources(Cluster((8,) * 4, (2,) * 4), 2, 1, 0, trials=1, workers=4).concurrent == 1
    with pytest.raises(PlanError, match=r"a trial of 5 workers needs 5 places of 1 GPU\(s\) \+ 6 CPU\(s\) "
                                        r"at once; the Ray cluster holds 4: lower --set num_workers=N"):
        plan_resources(nodes, 1, 6, 0, trials=8, workers=5)
    with pytest.raises(PlanError, match=r"--set gpus_per_worker=2 is more than .*\(a worker's GPUs must "
                                        r"share a node\); use --set gpus_per_worker=1"):
        plan_resources(nodes, 2, 6, 0, trials=8, workers=2)
    # CPU workers are one replica each, whatever their CPUs: MultiWorkerMirroredStrategy mirrors
    # over one CPU device per worker.
    cpus = plan_resources(Cluster(cpus=(2, 2), gpus=(0, 0)), 0, 2, 0, trials=3, workers=2)
    assert (cpus.cpu_replicas, cpus.replicas, cpus.concurrent) == (1, 2, 1)
    # On a cluster that grows, the workers' request is taken as given, as a trial's is.
    idle = cluster_from([{"CPU": 0.0}], None, trials=4, grows_to=1)
    r = plan_resources(idle, 0, 1, 0, trials=4, workers=2)
    assert r.trusted and r.concurrent == 1
    assert r.describe().startswith("2 Ray Train workers x (1 CPU(s), 1 CPU replica(s)), 2 replicas (as given")
