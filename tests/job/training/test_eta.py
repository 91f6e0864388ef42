"""The progress line's ETA ignores the warm-up epochs (tracing, XLA compile, cache fill) and says so
until it has timed an epoch after them."""

from job.training.eta import Eta


def test_eta_waits_for_the_warm_up_then_times_the_epochs_after_it():
    now = [0.0]
    eta = Eta(epochs=10, start_epoch=0, warmup=2, clock=lambda: now[0])
    for done, seconds in ((1, 600.0), (2, 30.0)):  # the first epoch compiles: 60x a later one
        now[0] += seconds
        eta.update(done)
        assert eta.text() == "ETA after 2 warm-up epochs (tracing, compiling)"
    now[0] += 10.0
    eta.update(3)
    assert eta.seconds() == 70.0 and eta.text() == "ETA 1m10s"  # 7 epochs left at 10 s


def test_a_resumed_run_warms_up_again_and_a_finished_one_says_zero():
    now = [0.0]
    eta = Eta(epochs=6, start_epoch=4, warmup=2, clock=lambda: now[0])
    now[0] += 100.0
    eta.update(5)
    assert eta.seconds() is None
    now[0] += 100.0
    eta.update(6)
    assert eta.text() == "ETA 0m00s"
