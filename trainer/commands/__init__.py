"""Sub-commands of ``cxr-train`` (see :mod:`trainer.cli`)."""
