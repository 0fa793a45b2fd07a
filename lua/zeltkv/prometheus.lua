-- zeltkv.prometheus(kv [, labels]): a driver's stats() in the Prometheus text exposition
-- format (version 0.0.4), for a /metrics endpoint.  `kv` is a driver, or a list of
-- { driver, labels } pairs rendered as one exposition (each metric family once, with a
-- sample per store).  `labels` is a table of label names to strings (or numbers); every
-- sample also carries driver="memory"|"shared"|"redis" and, for a shared segment,
-- name="SEGMENT".  Only the fields a driver's stats() has are rendered.
local core = require("zeltkv.core")
core._own()   -- an error names the user's line, not this file's

local M = {}

-- the families: the stats() field, the metric, its type, its help text, and a scale
-- (nanoseconds to seconds), in the order they are written
local FAMILIES = {
  { "keys", "zeltkv_keys", "gauge", "Keys held (live, and expired ones not yet freed)." },
  { "bytes_used", "zeltkv_bytes_used", "gauge", "Bytes of the store in use." },
  { "capacity", "zeltkv_capacity_bytes", "gauge", "Most bytes the store may use." },
  { "free_bytes", "zeltkv_free_bytes", "gauge", "capacity - bytes_used." },
  { "size", "zeltkv_segment_size_bytes", "gauge", "Bytes of the shared segment, as grown." },
  { "namespaces", "zeltkv_namespaces", "gauge", "Namespace records, the root included." },
  { "gets", "zeltkv_gets_total", "counter", "get() calls." },
  { "hits", "zeltkv_hits_total", "counter", "get() calls that found the key." },
  { "misses", "zeltkv_misses_total", "counter", "get() calls that did not find the key." },
  { "sets", "zeltkv_sets_total", "counter", "Writes that stored a value (set, setnx that set, incr)." },
  { "deletes", "zeltkv_deletes_total", "counter", "del() calls that removed a key." },
  { "evictions", "zeltkv_evictions_total", "counter", "Keys evicted by evict = \"lru\"." },
  { "expired_freed", "zeltkv_expired_total", "counter", "Expired keys whose memory was freed." },
  { "gc_runs", "zeltkv_gc_runs_total", "counter", "Completed expiry sweeps." },
  { "commits", "zeltkv_atomic_commits_total", "counter", "Outermost atomic() calls committed." },
  { "rollbacks", "zeltkv_atomic_rollbacks_total", "counter", "Outermost atomic() calls rolled back." },
  { "lock_waits", "zeltkv_lock_waits_total", "counter", "Lock takings that waited for another holder." },
  { "lock_wait_ns", "zeltkv_lock_wait_seconds_total", "counter", "Time spent waiting for the lock.", 1e-9 },
  { "lock_wait_max_ns", "zeltkv_lock_wait_max_seconds", "gauge", "The longest wait for the lock.", 1e-9 },
  { "lock_recoveries", "zeltkv_lock_recoveries_total", "counter", "Dead lock holders recovered from." },
}

local function bad(msg) core._raise("INVALID_VALUE", "prometheus: " .. msg) end

-- a label value, escaped as the format wants (backslash, double quote, newline)
local function escape(v)
  return (v:gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- '{k="v",...}' for a store: the user's labels sorted by name, then driver and name
local function label_text(st, labels)
  if labels ~= nil and type(labels) ~= "table" then
    bad("labels must be a table of names to strings, got " .. type(labels))
  end
  local names, seen = {}, {}
  for k, v in pairs(labels or {}) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") or k:sub(1, 2) == "__" then
      bad("a label name must match [a-zA-Z_][a-zA-Z0-9_]* (not __...), got " .. tostring(k))
    end
    if k == "driver" or (k == "name" and st.name) then
      bad("label '" .. k .. "' is zeltkv's own")
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      bad("label '" .. k .. "' must be a string or a number, got " .. type(v))
    end
    names[#names + 1] = k
    seen[k] = tostring(v)
  end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = k .. '="' .. escape(seen[k]) .. '"' end
  parts[#parts + 1] = 'driver="' .. escape(tostring(st.driver or "unknown")) .. '"'
  if st.name then parts[#parts + 1] = 'name="' .. escape(st.name) .. '"' end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function number_text(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%.0f", v) end
  return string.format("%.17g", v)
end

-- the stores to render: { { stats, label text }, ... }
local function collect(kv, labels)
  local list = kv
  if type(kv) ~= "table" or kv[1] == nil then list = { { kv, labels } } end
  local stores, seen = {}, {}
  for i, pair in ipairs(list) do
    if type(pair) ~= "table" or pair[1] == nil then
      bad("entry " .. i .. " of the list must be { driver, labels }")
    end
    local drv = pair[1]
    local ok, st = pcall(function() return drv:stats() end)
    if not ok then
      if type(st) == "table" and st.code then error(st, 0) end
      bad("entry " .. i .. " is not a driver (it has no stats())")
    end
    local lt = label_text(st, pair[2])
    if seen[lt] then bad("two stores with the same labels " .. lt) end
    seen[lt] = true
    stores[#stores + 1] = { st, lt }
  end
  return stores
end

function M.render(kv, labels)
  if kv == nil then bad("a driver (or a list of { driver, labels }) is needed") end
  local stores = collect(kv, labels)
  local out = {}
  for _, f in ipairs(FAMILIES) do
    local field, metric, kind, help, scale = f[1], f[2], f[3], f[4], f[5]
    local started = false
    for _, s in ipairs(stores) do
      local v = s[1][field]
      if type(v) == "number" then
        if not started then
          out[#out + 1] = "# HELP " .. metric .. " " .. help
          out[#out + 1] = "# TYPE " .. metric .. " " .. kind
          started = true
        end
        out[#out + 1] = metric .. s[2] .. " " .. number_text(scale and v * scale or v)
      end
    end
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

return M
