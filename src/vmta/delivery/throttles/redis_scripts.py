"""The Lua scripts behind ``RedisThrottles``.

Redis runs a script atomically (no other command runs in between), so "count the live
leases, then add one" cannot race with another node doing the same. Every script reads
the time from Redis (``TIME``, microseconds) and never takes a time from the caller: the
nodes' clocks may disagree, the one Redis server's clock is the single clock of every
lease and every pacing slot. Since Redis 5 scripts replicate their effects, not their
text, so a write after ``TIME`` is allowed (and replicas get the same scores).

Times are whole microseconds. They are written with ``%.0f``: Lua would otherwise turn a
16-digit number into "1.7e+15" and lose the microseconds.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function num(x) return string.format('%.0f', x) end
"""

# KEYS[1]: the sorted set of leases of one throttle key (member: token, score: expiry).
# ARGV: limit, token, lease length (us). Returns 1 when the lease was taken, else 0.
ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], num(now + ttl), ARGV[2])
redis.call('PEXPIRE', KEYS[1], num(math.ceil(ttl / 1000)))
return 1
"""
)

# KEYS[1]: as above. ARGV: lease length (us), then token, limit, token, limit, ...
# Extends each token's lease. A token whose lease already expired (this node could not
# reach Redis in time) is taken again if its key has room; otherwise it is returned as
# lost: the connection it stood for is open but no longer counted.
RENEW = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
local ttl = tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local token = ARGV[i]
  local limit = tonumber(ARGV[i + 1])
  if redis.call('ZSCORE', KEYS[1], token) or redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], num(now + ttl), token)
  else
    table.insert(lost, token)
  end
end
redis.call('PEXPIRE', KEYS[1], num(math.ceil(ttl / 1000)))
return lost
"""
)

# KEYS[1]: the pacing state of one throttle key: the earliest time (us) the next message
# may go (GCRA's theoretical arrival time; no burst, so it is also the next slot).
# ARGV: interval (us). Returns {1, now} when a slot is taken for a message going now,
# {0, wait in us} otherwise (nothing taken). The key expires once its time has passed
# (with a minute to spare): an absent key means "may go now", which is then true.
RESERVE = (
    _NOW
    + """
local interval = tonumber(ARGV[1])
local next_slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_slot > now then
  return {0, next_slot - now}
end
redis.call('SET', KEYS[1], num(now + interval), 'PX', num(math.ceil(interval / 1000) + 60000))
return {1, now}
"""
)
