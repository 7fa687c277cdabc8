"""Training and testing generated networks: ``archspec train``, ``archspec test``
and ``archspec verify --train`` (docs/training.md).

The entry points are :func:`train` (options in, a run directory out) and
:func:`test` (trained weights and a test set in, a report out); each framework's
trainer is ``archspec.training.<target>.Trainer``.
"""

from archspec.training.run import Options, Result, TestReport, format_test, test, train

__all__ = ["Options", "Result", "TestReport", "format_test", "test", "train"]
