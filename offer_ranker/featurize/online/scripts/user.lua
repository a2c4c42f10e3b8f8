-- A user's state (one string, layout in offer_ranker/featurize/online/codec.py) read, changed and
-- written back inside Redis. Times are µs since the epoch (exact as Lua numbers below 2^53);
-- nil is NULL. Prepended to page.lua, event.lua and feedback.lua.

-- The value is read as one table of bytes (string.byte of the whole string: one call instead of
-- one per byte) and written as a table of bytes turned into a string at the end: several times
-- faster in Redis's Lua than byte-by-byte string calls.

local function rd_varint(s, i)
  local n, mul = 0, 1
  while true do
    local b = s[i]
    i = i + 1
    if b < 128 then return n + b * mul, i end
    n = n + (b - 128) * mul
    mul = mul * 128
  end
end

local function wr_varint(out, n)
  while n >= 128 do
    out[#out + 1] = n % 128 + 128
    n = math.floor(n / 128)
  end
  out[#out + 1] = n
end

local function to_bytes(value)
  local s = {}
  for k = 1, #value, 4000 do
    for _, b in ipairs({string.byte(value, k, math.min(k + 3999, #value))}) do s[#s + 1] = b end
  end
  return s
end

local function to_string(out)
  local parts = {}
  for k = 1, #out, 4000 do parts[#parts + 1] = string.char(unpack(out, k, math.min(k + 3999, #out))) end
  return table.concat(parts)
end

local LATEST = 'latest'

local function rd_time(s, i, base)
  local z
  z, i = rd_varint(s, i)
  if z == 0 then return nil, i end
  if z == 1 then return LATEST, i end
  z = z - 2
  if z % 2 == 0 then return base + z / 2, i end
  return base - (z + 1) / 2, i
end

local function wr_time(out, t, base, latest)
  if not t then
    out[#out + 1] = 0
    return
  end
  if t == latest then
    out[#out + 1] = 1
    return
  end
  local d = t - base
  if d >= 0 then wr_varint(out, 2 * d + 2) else wr_varint(out, -2 * d + 1) end
end

local NAN = {0, 0, 0, 0, 0, 0, 248, 127}

-- the state of a user: counts {requests, impressions, clicks, conversions}, times, extras (kept as
-- they are encoded: tables of bytes), entries (offer key -> {imp, clk, conv, seen}); offer key = catalogue code
-- (a number) or 's' .. the offer id for an offer the catalogue does not know
local function decode(value, base, layout)
  local u = {counts = {0, 0, 0, 0}, extras = {}, entries = {}}
  if not value then
    for k = 1, #layout do
      if layout:sub(k, k) == 'n' then u.extras[k] = NAN else u.extras[k] = {0} end
    end
    return u
  end
  local s = to_bytes(value)
  local i = 2
  for k = 1, 4 do u.counts[k], i = rd_varint(s, i) end
  u.last_visit, i = rd_time(s, i, base)
  u.last_click, i = rd_time(s, i, base)
  u.signup, i = rd_time(s, i, base)
  for k = 1, #layout do
    local start = i
    if layout:sub(k, k) == 'n' then i = i + 8 else local _; _, i = rd_varint(s, i) end
    u.extras[k] = {unpack(s, start, i - 1)}
  end
  local npages, pages = 0, {}
  npages, i = rd_varint(s, i)
  for k = 1, npages do
    if k == 1 then pages[1], i = rd_time(s, i, base)
    else local d; d, i = rd_varint(s, i); pages[k] = pages[k - 1] - d end
  end
  if u.last_visit == LATEST then u.last_visit = pages[1] end
  local n, code = 0, 0
  n, i = rd_varint(s, i)
  for _ = 1, n do
    local d
    d, i = rd_varint(s, i)
    code = code + d
    local key = code
    if code == 0 then
      local len
      len, i = rd_varint(s, i)
      key = 's' .. string.sub(value, i, i + len - 1)
      i = i + len
    end
    local p = s[i]
    i = i + 1
    if p ~= 0 then
      u.entries[key] = {p % 4, math.floor(p / 4) % 2, math.floor(p / 8) % 2, pages[math.floor(p / 16) + 1]}
    else
      local a, b, c, t
      a, i = rd_varint(s, i)
      b, i = rd_varint(s, i)
      c, i = rd_varint(s, i)
      t, i = rd_time(s, i, base)
      u.entries[key] = {a, b, c, t}
    end
  end
  return u
end

local function encode(u, base)
  local seen, pages = {}, {}
  for _, e in pairs(u.entries) do
    if e[1] > 0 and e[4] and not seen[e[4]] then
      seen[e[4]] = true
      pages[#pages + 1] = e[4]
    end
  end
  table.sort(pages, function(a, b) return a > b end)
  while #pages > 15 do table.remove(pages) end
  local out = {1}
  for k = 1, 4 do wr_varint(out, u.counts[k]) end
  wr_time(out, u.last_visit, base, pages[1])
  wr_time(out, u.last_click, base)
  wr_time(out, u.signup, base)
  for k = 1, #u.extras do
    for _, b in ipairs(u.extras[k]) do out[#out + 1] = b end
  end
  local page_of = {}
  wr_varint(out, #pages)
  for k, t in ipairs(pages) do
    page_of[t] = k - 1
    if k == 1 then wr_time(out, t, base) else wr_varint(out, pages[k - 1] - t) end
  end
  local keys = {}
  for key in pairs(u.entries) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta == 'string' end
    return a < b
  end)
  wr_varint(out, #keys)
  local previous = 0
  for _, key in ipairs(keys) do
    local e = u.entries[key]
    local number = key
    if type(key) == 'string' then number = 0 end
    wr_varint(out, number - previous)
    previous = number
    if number == 0 then
      local id = key:sub(2)
      wr_varint(out, #id)
      for k = 1, #id do out[#out + 1] = string.byte(id, k) end
    end
    local page = e[4] and page_of[e[4]]
    if e[1] >= 1 and e[1] <= 3 and e[2] <= 1 and e[3] <= 1 and page then
      out[#out + 1] = e[1] + 4 * e[2] + 8 * e[3] + 16 * page
    else
      out[#out + 1] = 0
      wr_varint(out, e[1])
      wr_varint(out, e[2])
      wr_varint(out, e[3])
      wr_time(out, e[4], base)
    end
  end
  return to_string(out)
end

-- one event at time t on the offer with key okey: kind 'impression', 'click' or 'conversion'
local function apply(u, kind, okey, t)
  local e = u.entries[okey]
  if not e then
    e = {0, 0, 0, nil}
    u.entries[okey] = e
  end
  if kind == 'impression' then
    if u.last_visit ~= t then u.counts[1] = u.counts[1] + 1 end
    if not u.last_visit or t > u.last_visit then u.last_visit = t end
    u.counts[2] = u.counts[2] + 1
    e[1] = e[1] + 1
    if not e[4] or t > e[4] then e[4] = t end
  elseif kind == 'click' then
    u.counts[3] = u.counts[3] + 1
    if not u.last_click or t > u.last_click then u.last_click = t end
    e[2] = e[2] + 1
  else
    u.counts[4] = u.counts[4] + 1
    e[3] = e[3] + 1
  end
end

local function offer_key(code, id)
  code = tonumber(code)
  if code == 0 then return 's' .. id end
  return code
end

