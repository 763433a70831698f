"""JSON from files CXR Lens did not write (bundle metadata, Keras configs): every way it can
be bad is one :class:`JsonError` with a plain reason, never a traceback.

``json.loads`` raises ``UnicodeDecodeError`` (bytes that are not UTF-8), ``JSONDecodeError``
(not JSON), a bare ``ValueError`` for an integer longer than Python converts (4,300 digits by
default: ``sys.get_int_max_str_digits``) and ``RecursionError`` for deep nesting.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class JsonError(ValueError):
    """A JSON document could not be read; ``str()`` says why in plain words."""


def loads(data: bytes | str) -> Any:
    """``json.loads`` of UTF-8 ``data``, or :class:`JsonError`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise JsonError(f"it is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise JsonError(f"it is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except RecursionError as exc:
        raise JsonError("it is nested too deeply") from exc
    except ValueError as exc:  # int max str digits
        if "digits" not in str(exc):
            raise JsonError(f"it cannot be read as JSON ({exc})") from exc
        limit = sys.get_int_max_str_digits() or 4300
        raise JsonError(
            f"it holds a number with more than {limit:,} digits, which no real model or bundle has"
        ) from exc


__all__ = ["JsonError", "loads"]
