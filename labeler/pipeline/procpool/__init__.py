"""Child processes for CPU-bound work on hostile input, each job under a wall-time and a memory limit.

`pool.ProcessPool` runs jobs (top-level functions with picklable arguments) in a fixed number of children started
with the service; `child` is the loop each child runs. Image hashing uses it (`labeler.pipeline.hashing`), and any
other kind of job with the same needs (video hashing, say) can share the same pool or start one of its own.
"""
