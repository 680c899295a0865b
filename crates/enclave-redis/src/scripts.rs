//! The Lua scripts behind every operation that must be atomic across servers.
//!
//! Redis runs a script alone: no other client's command interleaves, so a check and the
//! write it guards (the seq of an append, the token compare-and-set, the client position
//! and the inbox entry it admits, a producer's lease and the `final` that ends its session)
//! happen as one step for every server sharing the store. Each script touches only the keys
//! of one session, which share a hash tag (the condition a Redis Cluster would set).
//!
//! Replies: a table whose first element is a status — `1` done, `-1` the session is not
//! (or no longer) there, `-2` out of order (with the expected seq), `-3` the session already
//! has its `final`, `-4` the inbox is full.

use redis::Script;

/// Helpers every script that reports retention starts with.
const PRELUDE: &str = r"
local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end
-- Appends are contiguous and trimming removes a prefix, so the oldest retained event is
-- the one after the last that left.
local function retention(meta, events)
  local h = redis.call('HMGET', meta, 'last', 'bytes', 'evicted', 'cseq')
  local last = tonumber(h[1]) or 0
  local evicted = tonumber(h[3]) or 0
  local count = redis.call('XLEN', events)
  local first = last + 1
  if count > 0 then first = evicted + 1 end
  return {1, last, count, tonumber(h[2]) or 0, evicted, tonumber(h[4]) or 0, first}
end
";

/// KEYS: meta. ARGV: the keys' expiry (ms since the Unix epoch), then field/value pairs.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// KEYS: meta, events. Reply: nil, or {meta as a flat list, retained count}.
const LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local all = redis.call('HGETALL', KEYS[1])
return {all, redis.call('XLEN', KEYS[2])}
";

/// KEYS: meta, events. ARGV: seq, event JSON, bytes, 1 for a `final`.
const APPEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local h = redis.call('HMGET', KEYS[1], 'last', 'expired', 'ttl', 'fin_seq')
if h[2] == '1' then return {-1} end
local last = tonumber(h[1])
if tonumber(ARGV[1]) ~= last + 1 then return {-2, last + 1} end
if h[4] then return {-3} end
redis.call('XADD', KEYS[2], ARGV[1] .. '-0', 'e', ARGV[2], 'b', ARGV[3])
-- The stream keeps its expiry once set (XADD and XTRIM leave it).
if last == 0 then redis.call('PEXPIREAT', KEYS[2], h[3]) end
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'fin_seq', ARGV[1]) end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta, events. Reply: retention.
const RETENTION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta, events. ARGV: through. `MINID` trimming, with the bytes of what left.
const TRIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local through = tonumber(ARGV[1])
local gone = redis.call('XRANGE', KEYS[2], '-', ARGV[1] .. '-0')
if #gone > 0 then
  local sum = 0
  for _, entry in ipairs(gone) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'b' then sum = sum + tonumber(f[i + 1]) end
    end
  end
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', through + 1))
  redis.call('HINCRBY', KEYS[1], 'bytes', -sum)
  local evicted = tonumber(redis.call('HGET', KEYS[1], 'evicted')) or 0
  local last_gone = seq_of(gone[#gone][1])
  if last_gone > evicted then redis.call('HSET', KEYS[1], 'evicted', last_gone) end
end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta. ARGV: expected current, expected previous, next current, next previous
/// (hex; empty for none). Reply: 1 swapped, 0 changed by someone else, -1 unknown.
const SWAP_TOKENS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local h = redis.call('HMGET', KEYS[1], 'tok', 'ptok')
if h[1] ~= ARGV[1] or (h[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'tok', ARGV[3], 'ptok', ARGV[4])
return 1
";

/// KEYS: meta. ARGV: seq. Reply: {1, highest held}.
const ADVANCE_CLIENT_SEQ: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local held = tonumber(redis.call('HGET', KEYS[1], 'cseq')) or 0
local seq = tonumber(ARGV[1])
if seq > held then
  held = seq
  redis.call('HSET', KEYS[1], 'cseq', ARGV[1])
end
return {1, held}
";

/// KEYS: meta. ARGV: the new state (empty: unchanged), tool calls to add, finish time
/// (empty: none).
const PROGRESS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[1]) end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'tools', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'fin', ARGV[3]) end
return 1
";

/// KEYS: meta. ARGV: field/value pairs.
const PUT_META: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
";

/// KEYS: meta, inbox. ARGV: the inbox bound, then per item: kind (`m` message, `c`
/// cancel), seq (0: the next), body. Messages at or below the highest seq held are skipped.
/// Reply: {1, highest held}.
const FORWARD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local h = redis.call('HMGET', KEYS[1], 'cseq', 'expired', 'ttl')
if h[2] == '1' then return {-1} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[1]) then return {-4} end
local held = tonumber(h[1]) or 0
local i = 2
while i <= #ARGV do
  local kind, seq, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if kind == 'm' then
    if seq == 0 then seq = held + 1 end
    if seq > held then
      held = seq
      redis.call('XADD', KEYS[2], '*', 'k', 'm', 's', string.format('%d', seq), 'j', body)
    end
  else
    redis.call('XADD', KEYS[2], '*', 'k', 'c', 'j', body)
  end
  i = i + 3
end
redis.call('HSET', KEYS[1], 'cseq', string.format('%d', held))
redis.call('PEXPIREAT', KEYS[2], h[3])
return {1, held}
";

/// KEYS: meta, events, inbox. Drops events and inbox, keeps the record marked expired.
const EXPIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('DEL', KEYS[2], KEYS[3])
local last = redis.call('HGET', KEYS[1], 'last')
redis.call('HSET', KEYS[1], 'expired', '1', 'bytes', '0', 'evicted', last)
return 1
";

/// KEYS: meta. One more connection attached.
const ATTACH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HINCRBY', KEYS[1], 'att', 1)
redis.call('HDEL', KEYS[1], 'det')
return 1
";

/// KEYS: meta. ARGV: now (ms). One connection fewer; the time when none is left.
const DETACH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'att', -1)
if n <= 0 then redis.call('HSET', KEYS[1], 'att', '0', 'det', ARGV[1]) end
return 1
";

/// KEYS: meta. ARGV: lease end (ms). Reply: 1 renewed, 0 nothing left to renew.
const RENEW: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'fin_seq', 'expired')
if h[1] or h[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'lease', ARGV[1])
return 1
";

/// KEYS: meta, events. ARGV: the last seq the caller saw, now (ms), the `final` event's
/// JSON (seq = that last + 1), its bytes. Appends it only if the producer's lease ran out,
/// nothing was appended since, and the session has no `final`. Reply: 1 appended, 0 not.
const FAIL_PRODUCER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'last', 'fin_seq', 'lease', 'expired', 'ttl')
if h[2] or h[4] == '1' then return 0 end
if tonumber(h[1]) ~= tonumber(ARGV[1]) then return 0 end
if (tonumber(h[3]) or 0) > tonumber(ARGV[2]) then return 0 end
local seq = string.format('%d', tonumber(h[1]) + 1)
redis.call('XADD', KEYS[2], seq .. '-0', 'e', ARGV[3], 'b', ARGV[4])
redis.call('PEXPIREAT', KEYS[2], h[5])
redis.call('HSET', KEYS[1], 'last', seq, 'fin_seq', seq, 'state', 'failed', 'fin', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[4])
return 1
";

/// The compiled scripts (each is sent once per connection and then called by its SHA-1).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) load: Script,
    pub(crate) append: Script,
    pub(crate) retention: Script,
    pub(crate) trim: Script,
    pub(crate) swap_tokens: Script,
    pub(crate) advance_client_seq: Script,
    pub(crate) put_meta: Script,
    pub(crate) progress: Script,
    pub(crate) forward: Script,
    pub(crate) expire: Script,
    pub(crate) attach: Script,
    pub(crate) detach: Script,
    pub(crate) renew: Script,
    pub(crate) fail_producer: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            create: Script::new(CREATE),
            load: with_prelude(LOAD),
            append: with_prelude(APPEND),
            retention: with_prelude(RETENTION),
            trim: with_prelude(TRIM),
            swap_tokens: Script::new(SWAP_TOKENS),
            advance_client_seq: Script::new(ADVANCE_CLIENT_SEQ),
            put_meta: Script::new(PUT_META),
            progress: Script::new(PROGRESS),
            forward: Script::new(FORWARD),
            expire: Script::new(EXPIRE),
            attach: Script::new(ATTACH),
            detach: Script::new(DETACH),
            renew: Script::new(RENEW),
            fail_producer: Script::new(FAIL_PRODUCER),
        }
    }
}
