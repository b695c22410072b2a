"""The ranking's Lua scripts: each sums or reads what one request needs inside Redis in ONE read-only call
(no per-item round trips, no per-pair Python callbacks). Called by aura/ranking/ranker.py and reader.py,
which hold the Redis Cluster path (the same answers from pipelined reads) beside each call.

``USERS_LUA``: "users like you did lately"; ``KNN_LUA``: the recency kNN of every list source;
``SIMILAR_LUA``: similar items / also bought; ``CANDS_LUA``: the user's precomputed pool
(aura/state/pools.py) with its head's filter records, marking the pool as wanted when it is unusable;
``FIRST_LUA``: the bounded first pass's reads; ``COLD_LUA``: both in one call (the pool, and the first
pass's reads when there is no usable pool).
"""

from __future__ import annotations

# "Users like you did lately": KEYS are the neighbours' sequences (recs_user_seq), ARGV = items per
# neighbour, decay, then each neighbour's similarity; returns [item, sum_v sim_v * decay**pos * w, ...].
USERS_LUA = """
local m, decay = tonumber(ARGV[1]), tonumber(ARGV[2])
local acc, order = {}, {}
for i, key in ipairs(KEYS) do
  local f = tonumber(ARGV[2 + i])
  for _, e in ipairs(redis.call('LRANGE', key, 0, m - 1)) do
    local item, w = string.match(e, '^(.*)|([^|]*)|[^|]*|[^|]*$')
    if item then
      local v = acc[item]
      if v == nil then order[#order + 1] = item; v = 0 end
      acc[item] = v + f * tonumber(w)
    end
    f = f * decay
  end
end
local flat = {}
for _, j in ipairs(order) do
  flat[#flat + 1] = j
  flat[#flat + 1] = {double = acc[j]}
end
return flat
"""


# The recency kNN of every list source in ONE read-only script call: KEYS are the neighbour lists,
# source-major (``n_src`` blocks of ``n_rec`` keys, newest recent item first); ARGV = list_k, n_src,
# n_rec, then the factor ``decay**r * weight_r`` of each recent item. Returns per source a flat
# [item, score, ...] of ``sum_r factor_r * sim(r, item)`` over the top ``list_k`` of each list (the
# same sums, in the same order, as ``recency_knn``; scores as RESP3 doubles, parsed by hiredis; a RESP2
# client gets them as exact decimal strings).
KNN_LUA = """
local k, ns, nr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for s = 0, ns - 1 do
  local acc, order = {}, {}
  for r = 1, nr do
    local f = tonumber(ARGV[3 + r])
    local lst = redis.call('ZREVRANGE', KEYS[s * nr + r], 0, k - 1, 'WITHSCORES')
    for i = 1, #lst, 2 do
      local j = lst[i]
      local v = acc[j]
      if v == nil then
        order[#order + 1] = j
        acc[j] = f * tonumber(lst[i + 1])
      else
        acc[j] = v + f * tonumber(lst[i + 1])
      end
    end
  end
  local flat = {}
  for _, j in ipairs(order) do
    flat[#flat + 1] = j
    flat[#flat + 1] = {double = acc[j]}
  end
  out[s + 1] = flat
end
return out
"""



# Similar items / also bought in ONE read-only script call: KEYS are the item's neighbour
# lists (one per source, all ``{item}``-tagged) and last the filter-record hash; ARGV = the item, the
# entries read per list, how many of the best to check against the filter records, then each source's
# weight. Per source the list is normalised to a maximum of 1 (``normalise``: the same branches), the
# weighted scores are summed in source order, the item itself is dropped, the candidates are ordered
# by score (ties: first proposed first, as Python's stable sort), the first ``keep`` are checked
# against their filter records (deleted "-" and unavailable "0|..." dropped; unknown items kept), and
# the survivors are returned flat [item, score, ...] in that order. The final (-score, id) order and
# the cut to ``limit`` happen in Python (Lua compares strings with the server's locale). The same
# answer as ``similar_reference`` (the former two-round-trip code; tested on random data).
SIMILAR_LUA = """
local item, n, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ns = #KEYS - 1
local acc, order = {}, {}
for s = 1, ns do
  local w = tonumber(ARGV[3 + s])
  local lst = redis.call('ZREVRANGE', KEYS[s], 0, n - 1, 'WITHSCORES')
  local m = #lst / 2
  if m > 0 then
    -- ZREVRANGE: the first score is the maximum, the last the minimum
    local top, lo = tonumber(lst[2]), tonumber(lst[2 * m])
    local shift, span = 0, top
    if top <= 0 or top == math.huge then
      shift, span = lo, top - lo
      if span == 0 then span = 1 end
    end
    for i = 1, m do
      local j = lst[2 * i - 1]
      local x = w * ((tonumber(lst[2 * i]) - shift) / span)
      local v = acc[j]
      if v == nil then
        order[#order + 1] = j
        acc[j] = 0 + x
      else
        acc[j] = v + x
      end
    end
  end
end
local cand = {}
for idx, j in ipairs(order) do
  if j ~= item then cand[#cand + 1] = idx end
end
if #cand == 0 then return {} end
table.sort(cand, function(a, b)
  local sa, sb = acc[order[a]], acc[order[b]]
  if sa ~= sb then return sa > sb end
  return a < b
end)
local head = {}
for i = 1, math.min(keep, #cand) do head[i] = order[cand[i]] end
local recs = redis.call('HMGET', KEYS[ns + 1], unpack(head))
local flat = {}
for i, j in ipairs(head) do
  local r = recs[i]
  if not r or string.sub(r, 1, 2) == '1|' then
    flat[#flat + 1] = j
    flat[#flat + 1] = {double = acc[j]}
  end
end
return flat
"""


# The precomputed pool in ONE read-only call: KEYS = the placement hash, the user's pool hash, the filter
# records, the user's recommender state (its fence ``_off``); ARGV = how many of the pool's first ids to
# read records for. Returns {placement HMGET, pool HMGET + the user's fence + the length of the pool's
# rest, the head's records}. The pool's format is aura/state/pools.py's: ids best first, ``CANDS_SEP``
# (``\31`` in Lua) separated, the first ``CANDS_HEAD`` in ``ids`` (with ``scores``, ``sources``), the others in
# ``ids_rest`` (``CANDS_REST``), so that a plain request copies ~1 KB out of Redis instead of the whole
# pool (~10 KB); ARGV[6] = '1' reads the whole pool (the rest appended to the head). The pool and the
# state share the user's hash tag; the placement and filter hashes do not (Redis Cluster:
# ``Recommender.from_precomputed``'s other path).
#
# Pools on demand: KEYS[5] = the wanted set (``recs_cands_wanted``), ARGV[2] = this request's member
# (``wanted_member``), ARGV[3] = now (ms), ARGV[4] = the set's bound (0: do not mark), ARGV[5] = the age
# (ms) after which a usable pool is re-ranked (0: never). When there is no usable pool (none, or ranked
# before the user's last applied event: its ``off`` is not the user's ``_off``), or the pool served is
# older than that age (it does not see lists republished since: served, and refreshed behind), the
# request marks (placement, user) as wanted (ZADD, then the oldest beyond the bound dropped): the
# worker ranks that pool on its next tick (streams/usercands.py). A hit on a young pool writes nothing.
#
# The placement's ``batch`` (the lists its ``ease`` source reads) comes back with its weights: the
# reader refreshes its cache of it (``Ranker.resolve_batch``) without a round trip of its own.
#
# KEYS[6] (optional) = the user's identity hash: its preference fields (aura/ranking/preferences.py
# ``PREF_FIELDS``) come back as the fourth element, so the preferences cost no extra round trip.
_CANDS_FN = """
local function pool_read(KEYS, ARGV)
local p = redis.call('HMGET', KEYS[1], 'weights', 'model_id', 'version', 'batch')
local c = redis.call('HMGET', KEYS[2], 'weights', 'strategy', 'ids', 'scores', 'sources', 'used', 'off')
c[#c + 1] = redis.call('HGET', KEYS[4], '_off')
c[#c + 1] = redis.call('HSTRLEN', KEYS[2], 'ids_rest')
if ARGV[6] == '1' and c[3] and c[9] > 0 then
  local r = redis.call('HMGET', KEYS[2], 'ids_rest', 'scores_rest', 'sources_rest')
  c[3] = c[3] .. '\\31' .. r[1]
  c[4] = c[4] .. ',' .. r[2]
  c[5] = c[5] .. '\\31' .. r[3]
end
local ids = c[3]
local bound = tonumber(ARGV[4] or '0')
local want = bound > 0 and (not ids or c[7] ~= (c[8] or '-1'))
if bound > 0 and not want and tonumber(ARGV[5]) > 0 then
  want = tonumber(redis.call('HGET', KEYS[2], 'time') or '0') + tonumber(ARGV[5]) <= tonumber(ARGV[3])
end
if want then
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
  local n = redis.call('ZCARD', KEYS[5])
  if n > bound then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, n - bound - 1) end
end
local u = {}
if KEYS[6] then
  u = redis.call('HMGET', KEYS[6], 'p:blocked_items', 'p:categories', 'p:brands', 'p:price_range')
end
if not ids or ids == '' then return {p, c, {}, u} end
local first, head, pos = tonumber(ARGV[1]), {}, 1
while #head < first do
  local e = string.find(ids, '\\31', pos, true)
  if e then
    head[#head + 1] = string.sub(ids, pos, e - 1)
    pos = e + 1
  else
    head[#head + 1] = string.sub(ids, pos)
    break
  end
end
return {p, c, redis.call('HMGET', KEYS[3], unpack(head)), u}
end
"""
CANDS_LUA = _CANDS_FN + "return pool_read(KEYS, ARGV)\n"



# The bounded first pass (``Ranker.bounded``) in ONE read-only call: KEYS = round trip (1)'s keys in the
# order of ``Ranker.first_commands`` (placement, the user's sequence, seen items, recommender state (its
# MF factors) and batch candidates, neighbours, identity hash, the trending lists, the popular list);
# ARGV = the sequence entries read, how many of them feed the kNN, the ids read per candidate list,
# list_k, decay, the number of trending keys, the MF factors' field, then per list source the two
# halves of its neighbour-list key around the item id (layout.py spells the key:
# ``recs_item_similar("\0", source)``). Returns round trip (1)'s replies (the neighbours not read: the
# first pass skips "users like you") followed by, per list source, the flat recency kNN over the newest
# items' lists, as ``KNN_LUA`` sums it (an entry ``item|weight|time|bought`` is split at its last three
# bars, as ``seq_item`` does). Every list source is summed (the weights are only known here as JSON):
# the caller keeps the weighed ones; the lists read are short.
_FIRST_FN = """
local function first_pass(KEYS, ARGV)
local nseq, nrec, n, k = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local decay, ntr = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
out[1] = redis.call('HMGET', KEYS[1], 'weights', 'model_id', 'version')
out[2] = redis.call('LRANGE', KEYS[2], 0, nseq - 1)
out[3] = redis.call('ZRANGE', KEYS[3], 0, -1)
out[4] = redis.call('HGET', KEYS[4], ARGV[7])
out[5] = redis.call('ZREVRANGE', KEYS[5], 0, n - 1, 'WITHSCORES')
out[6] = {}
out[7] = redis.call('HGETALL', KEYS[7])
for t = 1, ntr + 1 do
  out[7 + t] = redis.call('ZREVRANGE', KEYS[7 + t], 0, n - 1)
end
local items, factors = {}, {}
for r = 1, math.min(nrec, #out[2]) do
  local item, w = string.match(out[2][r], '^(.*)|([^|]*)|[^|]*|[^|]*$')
  if not item then break end
  items[r] = item
  factors[r] = (decay ^ (r - 1)) * tonumber(w)
end
local s = 8
while ARGV[s] do
  local acc, order = {}, {}
  for r = 1, #items do
    local lst = redis.call('ZREVRANGE', ARGV[s] .. items[r] .. ARGV[s + 1], 0, k - 1, 'WITHSCORES')
    for i = 1, #lst, 2 do
      local j = lst[i]
      local v = acc[j]
      if v == nil then
        order[#order + 1] = j
        acc[j] = factors[r] * tonumber(lst[i + 1])
      else
        acc[j] = v + factors[r] * tonumber(lst[i + 1])
      end
    end
  end
  local flat = {}
  for _, j in ipairs(order) do
    flat[#flat + 1] = j
    flat[#flat + 1] = {double = acc[j]}
  end
  out[#out + 1] = flat
  s = s + 2
end
return out
end
"""
FIRST_LUA = _FIRST_FN + "return first_pass(KEYS, ARGV)\n"


# A user's first request in ONE call: the pool read (``CANDS_LUA``: KEYS[1..6], ARGV[1..6]) and, when it
# finds no usable pool (none, or ranked before the user's last applied event), the bounded first pass's
# reads (``FIRST_LUA``: the other KEYS and ARGV) as a fifth element, so that a request without a pool
# costs one script call and one HMGET instead of three round trips. A pool that is usable here but
# ranked with other weights (checked by the caller) gets no fifth element: the caller reads it then.
COLD_LUA = _CANDS_FN + _FIRST_FN + """
local ck, ca, fk, fa = {}, {}, {}, {}
for i = 1, 6 do ck[i] = KEYS[i]; ca[i] = ARGV[i] end
for i = 7, #KEYS do fk[#fk + 1] = KEYS[i] end
for i = 7, #ARGV do fa[#fa + 1] = ARGV[i] end
local r = pool_read(ck, ca)
local c = r[2]
if not c[3] or c[7] ~= (c[8] or '-1') then r[5] = first_pass(fk, fa) end
return r
"""
