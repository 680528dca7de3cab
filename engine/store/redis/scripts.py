"""Lua scripts shared by several Redis stores."""

from __future__ import annotations

#: Delete KEYS[1] only while it still holds ARGV[1]: a key that expired and was claimed
#: meanwhile by someone else (another lease owner, a restarted engine with the same id,
#: another request with the same idempotency key) is left alone. Returns 1 if deleted.
DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
