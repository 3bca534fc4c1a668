"""Executors decide where work units run; they know nothing about what the stages do.

inline (pipeline.py): one worker in this process. local.py: one process per device
(or --workers N on the CPU). ray.py: the same units as Ray actors. A unit is a list
of (class index, attempt) pairs from the AttemptScheduler; a worker returns the
ledger records of its unit after writing the unit's staged images.
"""
