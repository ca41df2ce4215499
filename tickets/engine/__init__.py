"""The experiment engine: every command is a graph of jobs that one driver feeds to an executor.

- :mod:`~tickets.engine.graph`: :class:`Graph`, what an experiment kind says about its jobs
  (roots, what a finished job unblocks, priorities, labels, the expected count), and
  :func:`drive`, the one driver.
- :mod:`~tickets.engine.netjob`: :class:`NetworkJob`, the core every network job of every kind
  goes through (inputs -> build -> train -> checksummed files).
- :mod:`~tickets.engine.lifecycle`: opening or resuming a run (fingerprint, lock, checks, run.json).
- :mod:`~tickets.engine.contexts`: a run's :class:`~tickets.components.RunContext`, rebuilt from its
  config.yaml in any process (cached per worker).
- :mod:`~tickets.engine.check`: ``tickets check``, every job's files against their checksums.
"""
