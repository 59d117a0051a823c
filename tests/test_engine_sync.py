"""How a call's threads share work: claims hand every part to exactly one thread, barriers order the
phases, and the pool runs one kernel on any number of threads (more threads than cores included)."""

import numba
import numpy as np
import pytest

from fastmlp.engine import pool
from fastmlp.engine.jit import kernel
from fastmlp.engine.sync import ABORT, SYNC_SLOTS, barrier, claim


@kernel(nogil=True)
def _claim_all(t, threads, counters, owner, order, parts, spin):
    """Every thread claims parts from its end (thread t from end t % 2) until none is left, marking
    each part's owner and the order in which it took it."""
    b = claim(counters, 0, t % 2, parts)
    k = 0
    while b >= 0:
        owner[b] += 1 + 1000 * t
        order[b] = k
        k += 1
        acc = 0.0
        for i in range(spin):  # some work per part, so that the threads overlap
            acc += np.sqrt(i + b)
        if acc < 0:
            owner[b] = -1
        b = claim(counters, 0, t % 2, parts)
    return 0


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_every_part_is_claimed_exactly_once_whatever_the_threads(threads):
    counters, sync = np.zeros(1, np.int64), np.zeros(SYNC_SLOTS, np.int64)
    owner, order = np.zeros(20_001, np.int64), np.zeros(20_001, np.int64)
    pool.run(_claim_all, threads, sync, counters, owner, order, owner.size, 200)
    assert (owner % 1000 == 1).all()  # each part marked once, by one thread
    front, back = counters[0] & 0xFFFFFFFF, counters[0] >> 32
    assert front + back == owner.size + threads  # each thread's last claim came back empty
    if threads <= 2:  # thread 0 alone at the front: its parts are a prefix, taken in order
        k = int((owner // 1000 == 0).sum())
        assert (owner[:k] // 1000 == 0).all()
        np.testing.assert_array_equal(order[:k], np.arange(k))


def test_two_threads_meet_where_the_faster_one_got_to():
    """From opposite ends: the front thread's parts are 0 .. k - 1 in order, the back thread's the
    rest from the last one down, whoever is faster."""
    counters, sync = np.zeros(1, np.int64), np.zeros(SYNC_SLOTS, np.int64)
    owner, order = np.zeros(501, np.int64), np.zeros(501, np.int64)
    pool.run(_claim_all, 2, sync, counters, owner, order, owner.size, 2000)
    k = int((owner == 1).sum())
    assert (owner[:k] == 1).all() and (owner[k:] == 1001).all()
    np.testing.assert_array_equal(order[:k], np.arange(k))
    np.testing.assert_array_equal(order[k:], np.arange(owner.size - k)[::-1])


def test_claim_types_only_a_flat_int64_counter_array():
    @numba.njit
    def bad(counters):
        return claim(counters, 0, 0, 4)

    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(2, np.int32))


@kernel(nogil=True)
def _phases(t, threads, sync, counters, log, phases):
    """Each phase, every thread writes its number into the phase's row, then checks after the
    barrier that every thread of the phase has written (row complete) and that no thread has
    started the next one; the barrier also resets the claim counters."""
    for ph in range(phases):
        log[ph, t] = ph + 1
        counters[0] += 1 if t == 0 else 0
        if not barrier(sync, threads, counters):
            return -1
        for u in range(threads):
            if log[ph, u] != ph + 1:
                return -2
        if counters[0] != 0:
            return -3
        if ph + 1 < phases and log[ph + 1, t] != 0:
            return -4
        if not barrier(sync, threads, counters):
            return -1
    return 0


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 8])
def test_a_barrier_lets_no_thread_into_the_next_phase_before_all_have_finished_this_one(threads):
    sync, counters = np.zeros(SYNC_SLOTS, np.int64), np.zeros(1, np.int64)
    log = np.zeros((200, threads), np.int64)
    assert pool.run(_phases, threads, sync, sync, counters, log, 200) == 0
    assert (log == np.arange(1, 201)[:, None]).all()


@kernel(nogil=True)
def _fails_in_thread_one(t, threads, sync, counters, out):
    """Thread 1 stops before the first barrier, as a failing thread would, and raises the abort flag;
    the others must come back from the barrier instead of waiting for it forever."""
    if t == 1:
        sync[ABORT] = 1
        return 0
    out[t] = 1 if barrier(sync, threads, counters) else 2
    return 0


def test_an_aborted_call_releases_the_threads_waiting_at_a_barrier():
    sync, counters, out = np.zeros(SYNC_SLOTS, np.int64), np.zeros(1, np.int64), np.zeros(3, np.int64)
    pool.run(_fails_in_thread_one, 3, sync, sync, counters, out)
    assert out[0] == 2 and out[2] == 2


def test_an_error_in_a_pooled_thread_reaches_the_caller_and_the_pool_still_works():
    sync, counters = np.zeros(SYNC_SLOTS, np.int64), np.zeros(1, np.int64)
    owner, order = np.zeros(10, np.int64), np.zeros(10, np.int64)
    with pytest.raises(numba.core.errors.TypingError):  # a wrong argument type: the dispatcher raises in every thread
        pool.run(_claim_all, 2, sync, counters, owner, order, owner.size, "not a number")
    counters[:] = 0
    pool.run(_claim_all, 2, sync, counters, owner, order, owner.size, 10)
    assert (owner % 1000 == 1).all()
