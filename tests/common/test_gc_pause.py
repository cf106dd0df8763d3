"""`lovr_common.gc_pause`: the collector's state is the caller's again after each block, whatever happened in it."""

from __future__ import annotations

import gc
import weakref

import pytest

from lovr_common.gc_pause import frozen_heap, gc_paused


def test_a_paused_block_restores_the_collector_even_when_it_raises():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_what_a_block_froze_is_unfrozen_at_its_end_and_a_cycle_then_collected():
    class Node:
        pass

    before = gc.get_freeze_count()
    assert before == 0, "another test left objects frozen"
    with pytest.raises(RuntimeError), frozen_heap() as freeze:
        cycle = Node()
        cycle.me = cycle
        alive = weakref.ref(cycle)
        freeze()
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert alive() is not None  # frozen: out of the collector's reach
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None  # the collector sees the cycle again


def test_objects_the_caller_froze_stay_frozen():
    class Node:
        pass

    cycle = Node()
    cycle.me = cycle
    alive = weakref.ref(cycle)
    gc.freeze()  # the caller's: the cycle among what it froze
    del cycle
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap() as freeze:
            freeze()  # inert: unfreezing at the end would release the caller's objects too
            # Nothing more frozen. (The count may fall: a frozen object nothing refers to any more is freed.)
            assert gc.get_freeze_count() <= frozen
        gc.collect()
        assert alive() is not None  # still frozen after the block: the collector does not see the cycle
    finally:
        gc.unfreeze()
    gc.collect()
    assert alive() is None
