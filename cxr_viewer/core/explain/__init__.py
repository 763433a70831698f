"""Explanation methods behind one interface (see :mod:`.base` and :mod:`.registry`)."""
