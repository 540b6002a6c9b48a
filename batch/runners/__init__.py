"""Runners feed the flow with chunks and keep the run's manifest: in this process (``local``),
on a Ray cluster (``ray``), or one static shard of the inputs per worker (``sharding``)."""
