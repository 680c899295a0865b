//! The Lua scripts behind every operation that must be atomic across servers.
//!
//! Redis runs a script alone: no other client's command interleaves, so a check and the
//! write it guards (the seq of an append, the token compare-and-set, the client position
//! and the inbox entry it admits, a producer's lease and the `final` that ends its session)
//! happen as one step for every server sharing the store. Each script touches only the keys
//! of one session, which share a hash tag (the condition a Redis Cluster would set).
//!
//! Replies: a table whose first element is a status — `1` done, `-1` the session is not
//! (or no longer) there, `-2` out of order (with the expected seq, the one found and the
//! last), `-3` the session already has its `final`, `-4` the inbox is full; `2` (append) the
//! events were there already.

use redis::Script;

/// Helpers every script that reports retention starts with.
const PRELUDE: &str = r"
local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end
-- Redis's own clock, the same for every server (their clocks may disagree).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function field_of(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
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

/// KEYS: meta, events. Reply: nil, or {meta as a flat list, `retention` as every script
/// that answers with it replies}.
const LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return {redis.call('HGETALL', KEYS[1]), retention(KEYS[1], KEYS[2])}
";

/// KEYS: meta, events. ARGV: a batch of events, four values each: seq, event JSON, bytes,
/// 1 for a `final`. The seqs must be consecutive from the last one + 1, or nothing is
/// appended: {-2, the seq expected, the seq found instead, the last seq}. Each entry carries
/// `c`, the bytes appended through it, so trimming knows what left without reading it.
/// A batch already there with the same JSON, every event of it (a retry whose answer was
/// lost: the script appends all of a batch or none of it), replies `2` with the retention:
/// it landed once. A last group `p`, state, tool calls, finished-at (as PROGRESS takes
/// them) records what the batch changed in the metadata, in the same step.
const APPEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local h = redis.call('HMGET', KEYS[1], 'last', 'expired', 'ttl', 'fin_seq', 'tot', 'cut')
if h[2] == '1' then return {-1} end
local last = tonumber(h[1])
local n = #ARGV / 4
local p = nil
if ARGV[#ARGV - 3] == 'p' then
  p = #ARGV - 3
  n = n - 1
end
local first = tonumber(ARGV[1])
if first <= last then
  local e = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', string.format('%d', n))
  local same = #e == n
  for i = 1, #e do
    local j = 4 * i - 3
    if e[i][1] ~= ARGV[j] .. '-0' or field_of(e[i][2], 'e') ~= ARGV[j + 1] then
      same = false
    end
  end
  if same then
    local r = retention(KEYS[1], KEYS[2])
    r[1] = 2
    return r
  end
  return {-2, last + 1, first, last}
end
if h[4] then return {-3, last} end
local expected = last + 1
for i = 1, 4 * n, 4 do
  local seq = tonumber(ARGV[i])
  if seq ~= expected then return {-2, expected, seq, last} end
  expected = expected + 1
end
local tot = tonumber(h[5]) or 0
for i = 1, 4 * n, 4 do
  tot = tot + tonumber(ARGV[i + 2])
  redis.call('XADD', KEYS[2], ARGV[i] .. '-0', 'e', ARGV[i + 1], 'c', string.format('%d', tot))
  if ARGV[i + 3] == '1' then redis.call('HSET', KEYS[1], 'fin_seq', ARGV[i]) end
end
-- The stream keeps its expiry once set (XADD and XTRIM leave it).
if last == 0 then redis.call('PEXPIREAT', KEYS[2], h[3]) end
local bytes = tot - (tonumber(h[6]) or 0)
redis.call('HSET', KEYS[1], 'last', ARGV[4 * n - 3], 'tot', string.format('%d', tot),
  'bytes', string.format('%d', bytes))
if p then
  if ARGV[p + 1] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[p + 1]) end
  if ARGV[p + 2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'tools', ARGV[p + 2]) end
  if ARGV[p + 3] ~= '' then redis.call('HSET', KEYS[1], 'fin', ARGV[p + 3]) end
end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta, events. Reply: retention.
const RETENTION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta, events. ARGV: through. `MINID` trimming; the bytes that left are the
/// cumulative count on the last entry that left, read without touching the others.
const TRIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local gone = redis.call('XREVRANGE', KEYS[2], ARGV[1] .. '-0', '-', 'COUNT', 1)
if #gone > 0 then
  local through = tonumber(ARGV[1])
  local cut = tonumber(field_of(gone[1][2], 'c')) or 0
  local tot = tonumber(redis.call('HGET', KEYS[1], 'tot')) or 0
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', through + 1))
  redis.call('HSET', KEYS[1], 'cut', string.format('%d', cut),
    'bytes', string.format('%d', tot - cut))
  local evicted = tonumber(redis.call('HGET', KEYS[1], 'evicted')) or 0
  local last_gone = seq_of(gone[1][1])
  if last_gone > evicted then redis.call('HSET', KEYS[1], 'evicted', last_gone) end
end
return retention(KEYS[1], KEYS[2])
";

/// KEYS: meta. ARGV: expected current, expected previous, next current, next previous,
/// next salt (hex; empty for none). Reply: 1 swapped, 0 changed by someone else, -1
/// unknown. The salt goes with the current token it derived, so comparing the tokens
/// compares it too.
const SWAP_TOKENS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local h = redis.call('HMGET', KEYS[1], 'tok', 'ptok')
if h[1] ~= ARGV[1] or (h[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'tok', ARGV[3], 'ptok', ARGV[4], 'tsalt', ARGV[5])
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
/// cancel), seq (-1: the next), body. Messages at or below the highest seq held are skipped
/// (as the in-memory hub does); cancels are never refused by the bound. Reply: {1, highest
/// held}, or {-4} when messages would overflow the inbox.
const FORWARD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local h = redis.call('HMGET', KEYS[1], 'cseq', 'expired', 'ttl')
if h[2] == '1' then return {-1} end
local held = tonumber(h[1]) or 0
local i = 2
local full = redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[1])
while i <= #ARGV do
  if ARGV[i] == 'm' and full then return {-4} end
  i = i + 3
end
i = 2
while i <= #ARGV do
  local kind, seq, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if kind == 'm' then
    if seq == -1 then seq = held + 1 end
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
local h = redis.call('HMGET', KEYS[1], 'last', 'tot')
redis.call('HSET', KEYS[1], 'expired', '1', 'bytes', '0', 'evicted', h[1], 'cut', h[2] or '0')
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

/// KEYS: meta. ARGV: the lease (ms), from Redis's clock. Reply: 1 renewed, 0 nothing left
/// to renew (removed, expired, or its `final` is there).
const RENEW: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'fin_seq', 'expired')
if h[1] or h[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'lease', string.format('%d', now_ms() + tonumber(ARGV[1])))
return 1
";

/// KEYS: meta, events. ARGV: the last seq the caller saw, the lease it saw, the `final`
/// event's JSON (seq = that last + 1), its bytes. Appends it only if the lease is the one
/// seen and ran out by Redis's clock, nothing was appended since, and the session has no
/// `final`. Reply: 1 appended, 0 not.
const FAIL_PRODUCER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'last', 'fin_seq', 'lease', 'expired', 'ttl', 'tot', 'cut')
if h[2] or h[4] == '1' then return 0 end
if tonumber(h[1]) ~= tonumber(ARGV[1]) then return 0 end
if (h[3] or '0') ~= ARGV[2] then return 0 end
local now = now_ms()
if (tonumber(h[3]) or 0) > now then return 0 end
local seq = string.format('%d', tonumber(h[1]) + 1)
local tot = (tonumber(h[6]) or 0) + tonumber(ARGV[4])
redis.call('XADD', KEYS[2], seq .. '-0', 'e', ARGV[3], 'c', string.format('%d', tot))
redis.call('PEXPIREAT', KEYS[2], h[5])
redis.call('HSET', KEYS[1], 'last', seq, 'fin_seq', seq, 'state', 'failed',
  'fin', string.format('%d', now), 'tot', string.format('%d', tot),
  'bytes', string.format('%d', tot - (tonumber(h[7]) or 0)))
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
            renew: with_prelude(RENEW),
            fail_producer: with_prelude(FAIL_PRODUCER),
        }
    }
}
