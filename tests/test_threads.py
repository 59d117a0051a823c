"""The thread policy: when no count is fixed, the trainer runs the faster of all cores and one, as its
own calls measure them, and notices within seconds when that changes (a neighbour starts or stops);
a fixed count never changes. The calls here are made up: their rates and durations are given."""

import os

from fastmlp.training.threads import (
    ThreadChooser,
    available_cores,
    fixed_threads,
    limit_threads,
    single_threaded_blas,
    thread_env,
    usable_cores,
)


def run(chooser, rates, calls, seconds_per_call=0.1):
    """``calls`` calls, each on the chooser's current count at ``rates[count]`` samples/s; the counts used."""
    used = []
    for _ in range(calls):
        threads = chooser.current
        used.append(threads)
        chooser.record(threads, int(rates[threads] * seconds_per_call), seconds_per_call)
    return used


def test_both_counts_are_tried_then_the_faster_runs_with_a_probe_every_few_seconds():
    chooser = ThreadChooser(2, probe_seconds=2.0)
    used = run(chooser, {2: 180_000, 1: 130_000}, 100)
    assert used[:6] == [2, 1, 2, 1, 2, 1]  # turns: a warm-up call each, then two counted calls each
    later = used[6:]
    assert 1 <= later.count(1) <= len(later) * 0.1 / 2.0 + 1  # one probe per 2 s of training in 0.1 s calls
    assert later.count(2) > 0.9 * len(later)


def test_a_count_that_keeps_losing_by_far_is_probed_less_and_less_often():
    chooser = ThreadChooser(2, probe_seconds=2.0)
    used = run(chooser, {2: 14_000, 1: 7_000}, 600)  # 60 s of training; one thread at half speed
    probes = used[6:].count(1)
    assert 2 <= probes <= 6  # after 2, 4, 8, 16, 32 s: not 30 probes


def test_more_threads_keep_being_probed_every_few_seconds_while_one_thread_wins():
    """Beside a busy neighbour one thread runs; all cores are tried again at least every
    MORE_PROBE_LIMIT x probe_seconds of training, so the neighbour's leaving is noticed within seconds
    (fewer threads, losing alike, are probed less and less often: the test above)."""
    chooser = ThreadChooser(2, probe_seconds=2.0)
    used = run(chooser, {2: 40_000, 1: 125_000}, 600)  # 60 s of training in 0.1 s calls
    probes = [i for i, c in enumerate(used) if c == 2 and i >= 6]
    longest = ThreadChooser.MORE_PROBE_LIMIT * 2.0 / 0.1 + 2  # calls (and the probe's own, and rounding)
    assert max(b - a for a, b in zip([5] + probes, probes + [len(used)])) <= longest
    assert len(probes) < 60 / 2.0 / 2  # and it backs off up to that: fewer than one probe per 2 s
    assert used[-1] == 1


def test_fewer_threads_take_over_only_when_clearly_faster():
    """In a slow episode two threads may look a little slower than one; one thread must be
    FEWER_MARGIN times faster to take over, at the start or from a probe."""
    margin = ThreadChooser.FEWER_MARGIN
    chooser = ThreadChooser(2, probe_seconds=1.0)
    used = run(chooser, {2: 120_000, 1: int(120_000 * (margin - 0.05))}, 60)  # 6 s: start, then five probes
    assert used[6:].count(2) >= 48 and used[-1] == 2
    used = run(chooser, {2: 120_000, 1: int(120_000 * (margin + 0.05))}, 20)
    assert used[-5:] == [1] * 5  # clearly faster: the next probe takes over
    chooser = ThreadChooser(2, probe_seconds=1.0)
    run(chooser, {2: 120_000, 1: int(120_000 * (margin + 0.05))}, 6)
    assert chooser.incumbent == 1  # and at the start


def test_a_start_misjudged_in_a_slow_episode_is_corrected_at_the_first_probe():
    """Two threads ran slow through the whole start (the machine's episode, not the count): two
    threads get their first probe after probe_seconds of training, not later, and take over."""
    chooser = ThreadChooser(2, probe_seconds=1.0)
    assert run(chooser, {2: 40_000, 1: 130_000}, 6) == [2, 1, 2, 1, 2, 1]
    used = run(chooser, {2: 180_000, 1: 130_000}, 14)
    assert used[:9] == [1] * 9 and used[9:] == [2] * 5  # probed 1 s of training after its last call; it wins


def test_one_slow_call_at_the_start_does_not_hand_the_run_to_the_slower_count():
    """A disturbance only slows a call: the start judges each count by its fastest call."""
    chooser = ThreadChooser(2, probe_seconds=2.0)
    run(chooser, {2: 180_000, 1: 130_000}, 2)  # the warm-up calls
    chooser.record(2, 8_000, 0.1)  # the first counted two-thread call ran at 80k samples/s
    used = run(chooser, {2: 180_000, 1: 130_000}, 13)
    assert used[:3] == [1, 2, 1] and used[3:] == [2] * 10


def test_a_sudden_slowdown_of_the_incumbent_is_probed_after_two_slow_calls():
    chooser = ThreadChooser(2, probe_seconds=2.0)
    run(chooser, {2: 180_000, 1: 130_000}, 12)
    used = run(chooser, {2: 40_000, 1: 125_000}, 6)
    assert used[:3] == [2, 2, 1] and used[-3:] == [1, 1, 1]  # probed after the second slow call; then one thread


def test_single_slow_calls_between_normal_ones_cost_no_probe():
    """On a shared machine one call in a few dips; a probe is paid only when the slowness lasts
    (no probe is due by time here: one per 10 s of training)."""
    chooser = ThreadChooser(2, probe_seconds=10.0)
    run(chooser, {2: 180_000, 1: 130_000}, 12)
    used = []
    for _ in range(5):
        used += run(chooser, {2: 40_000, 1: 130_000}, 1) + run(chooser, {2: 180_000, 1: 130_000}, 2)
    assert set(used) == {2}


def test_a_busy_neighbour_is_noticed_and_its_leaving_too():
    chooser = ThreadChooser(2, probe_seconds=2.0)
    run(chooser, {2: 180_000, 1: 130_000}, 50)
    busy = run(chooser, {2: 40_000, 1: 125_000}, 100)  # one core taken: two threads wait for it
    assert busy[-60:].count(1) > 50
    idle = run(chooser, {2: 180_000, 1: 130_000}, 100)
    assert idle[-60:].count(2) > 50


def test_probes_count_training_time_not_pauses_between_calls():
    """A trainer evaluated or paused between calls probes no more often for it."""
    chooser = ThreadChooser(2, probe_seconds=2.0)
    run(chooser, {2: 180_000, 1: 130_000}, 6)
    used = run(chooser, {2: 180_000, 1: 130_000}, 19)  # 1.9 s of training, however long the pauses
    assert used.count(1) <= 1


def test_one_disturbed_call_does_not_change_the_choice():
    chooser = ThreadChooser(2)
    run(chooser, {2: 180_000, 1: 130_000}, 30)
    chooser.record(2, 1_000, 0.1)  # one slow call of the incumbent (10k samples/s): one probe, which loses
    assert run(chooser, {2: 180_000, 1: 130_000}, 6)[1:] == [2] * 5


def test_a_fixed_count_or_a_single_core_never_changes():
    assert set(run(ThreadChooser(2, fixed=2), {2: 10, 1: 1_000_000}, 50)) == {2}
    assert set(run(ThreadChooser(1), {1: 1000}, 20)) == {1}


def test_limit_threads_fixes_the_count_while_it_holds():
    assert fixed_threads() is None
    with limit_threads(1):
        assert fixed_threads() == 1
        with limit_threads(2):
            assert fixed_threads() == 2
        assert fixed_threads() == 1
    assert fixed_threads() is None
    with limit_threads(None):
        assert fixed_threads() is None


def test_the_command_starts_blas_single_threaded_with_its_idle_threads_asleep_whatever_the_environment(monkeypatch):
    for name, value in (("OPENBLAS_NUM_THREADS", "8"), ("MKL_NUM_THREADS", "8"), ("OPENBLAS_THREAD_TIMEOUT", "28")):
        monkeypatch.setenv(name, value)  # restored after the test
    single_threaded_blas()
    assert [os.environ[n] for n in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")] == \
        ["1", "1", "4"]
    assert thread_env(3) == {"FASTMLP_THREADS": "3", "OMP_NUM_THREADS": "1", "OPENBLAS_THREAD_TIMEOUT": "4",
                             "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_a_child_started_with_a_thread_count_uses_at_most_that_many(monkeypatch):
    monkeypatch.setenv("FASTMLP_THREADS", "1")
    assert usable_cores() == 1
    monkeypatch.setenv("FASTMLP_THREADS", "1000")
    assert usable_cores() == available_cores()
    monkeypatch.setenv("FASTMLP_THREADS", "many")
    assert usable_cores() == available_cores()
