"""Canonical JSON: the one serialisation used for every manifest, config and index we write.

Sorted keys, no insignificant whitespace, UTF-8 without ASCII escaping: the same object always gives
the same bytes, hence the same digest, whatever the Python version or dict insertion order.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` deterministically; NaN and infinities are refused (they are not JSON)."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")
