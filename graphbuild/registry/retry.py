"""Bounded retries with exponential backoff and jitter, for 429, 5xx and broken connections."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport import Response

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` counts the first try. Delays are ``base * 2**n`` capped at ``max_delay``, with
    jitter so parallel uploads that failed together do not retry in lockstep."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A Retry-After beyond this is capped: a push should fail in minutes, not hang for hours.
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return cap * (0.5 + self.rng.random() / 2)

    def delay_for(self, attempt: int, response: Response | None) -> float:
        """Retry-After when the registry sent one (429/503), else the backoff."""
        after = retry_after(response) if response is not None else None
        if after is not None:
            return min(after, self.max_retry_after)
        return self.backoff(attempt)


def is_retryable(response: Response) -> bool:
    # 501 means the registry lacks a feature: asking again will not help.
    code = response.status_code
    return code in RETRYABLE_STATUS or (code >= 500 and code != 501)


def retry_after(response: Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
