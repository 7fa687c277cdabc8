"""archspec: one framework-neutral CNN spec, four frameworks that agree."""

__version__ = "0.1.0"
