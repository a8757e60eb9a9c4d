"""Per-user RPM/TPM limits (GCRA): in Redis, shared by all gateway processes, or in process."""

from solaris.limits.gcra import Limit, LocalLimiter, Verdict
from solaris.limits.limiter import RateLimiter

__all__ = ["Limit", "LocalLimiter", "RateLimiter", "Verdict"]
