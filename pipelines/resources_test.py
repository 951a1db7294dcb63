"""HeldPoolAsyncWrapper: one thread pool per step for the DoFn's life, however many steps run
their pools in the process."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.async_dofn import AsyncWrapper

from pipelines.resources import HeldPoolAsyncWrapper


class _Echo(beam.DoFn):
    def process(self, element):
        yield element


def pool_of(wrapper: AsyncWrapper, built: list[object]) -> object:
    """The pool the wrapper's own submits get (as AsyncWrapper.schedule_item acquires it)."""
    def build() -> object:
        built.append(wrapper)
        return AsyncWrapper.initialize_pool(2)()
    return AsyncWrapper._pool[wrapper._uuid].acquire(build)


def test_each_step_keeps_its_pool_while_other_steps_use_theirs() -> None:
    """Three steps submitting in turn: each step's pool is built once. Beam's AsyncWrapper alone
    builds a new pool on nearly every submit, since the process keeps only the last pool any
    step acquired."""
    held, plain = ([cls(_Echo(), parallelism=2) for _ in range(3)]
                   for cls in (HeldPoolAsyncWrapper, AsyncWrapper))
    for wrapper in (*held, *plain):
        wrapper.setup()
    built_held: list[object] = []
    built_plain: list[object] = []
    first = [pool_of(wrapper, built_held) for wrapper in held]
    for _ in range(5):
        assert [pool_of(wrapper, built_held) for wrapper in held] == first
        for wrapper in plain:
            pool_of(wrapper, built_plain)
    assert built_held == []  # built by setup, and never again
    assert len(built_plain) > len(plain)  # what the wrapper fixes: pools rebuilt
