"""The processor benchmark (``python -m tests.bench``, ``make bench``): the pipeline against its ceilings.

It runs real processes against a real Kafka-protocol broker and Postgres, side by side in one run:

- ``pipeline``: one ``iopcare worker`` (the code under test) into a fresh database;
- ``noop``: a Faust agent with the pipeline's exact app settings that acks and does nothing (the
  framework ceiling, :mod:`tests.bench.noop_worker`);
- ``naive``: a consumer that writes each event with its own autocommit statements, no batching
  (:mod:`tests.bench.naive_consumer`);
- ``scaling``: two pipeline workers in one consumer group;
- ``latency``: publish-to-visible-state latency at a steady rate;
- ``memory``: the worker's RSS after touching many patients' state.

Results are printed and written to ``docs/benchmarks.md`` (never asserted in timed tests).
"""
