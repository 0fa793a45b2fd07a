-- spec/support/promtext.lua: a strict reader of the Prometheus text exposition format
-- (version 0.0.4), for the tests of zeltkv.prometheus and of the OpenResty /metrics example.
--
--   local P = require("promtext")   -- with spec/support on package.path
--   local fams = P.parse(text)      -- raises "line N: why" on anything the format forbids
--   fams.zeltkv_hits_total.type, fams.zeltkv_hits_total.samples[1].labels.name, .value
--
-- Checked: every line is a HELP, a TYPE or a sample; names and label names are legal;
-- label values are quoted with legal escapes; values are numbers; a family has at most one
-- HELP and one TYPE, both before its samples, and its samples are contiguous; a counter's
-- name ends in _total; no two samples of a family have the same labels; the text ends with
-- a newline.
local P = {}

local NAME = "^[%a_:][%w_:]*$"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function number(s)
  if s == "+Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  return tonumber(s)
end

-- `name{a="x",b="y"} value`: name, labels, value, or nil and why
local function sample(line)
  local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
  if not name then return nil, "no metric name" end
  local labels, keys = {}, {}
  if rest:sub(1, 1) == "{" then
    local i = 2
    while rest:sub(i, i) ~= "}" do
      local k, j = rest:match("^([%a_][%w_]*)=\"()", i)
      if not k then return nil, "bad label at '" .. rest:sub(i) .. "'" end
      if labels[k] then return nil, "label " .. k .. " twice" end
      local v = {}
      i = j
      while true do
        local c = rest:sub(i, i)
        if c == "" then return nil, "unterminated label value" end
        if c == '"' then break end
        if c == "\\" then
          local e = rest:sub(i + 1, i + 1)
          if e == "n" then v[#v + 1] = "\n"
          elseif e == "\\" or e == '"' then v[#v + 1] = e
          else return nil, "bad escape \\" .. e end
          i = i + 2
        else
          v[#v + 1] = c
          i = i + 1
        end
      end
      labels[k] = table.concat(v)
      keys[#keys + 1] = k
      i = i + 1
      if rest:sub(i, i) == "," then i = i + 1 end
    end
    rest = rest:sub(i + 1)
  end
  local vs = rest:match("^ (%S+)$") or rest:match("^ (%S+) %-?%d+$")
  local v = vs and number(vs)
  if not v then return nil, "no number value in '" .. rest .. "'" end
  table.sort(keys)
  local id = {}
  for _, k in ipairs(keys) do id[#id + 1] = k .. "=" .. labels[k] end
  return name, labels, v, table.concat(id, "\0")
end

function P.parse(text)
  assert(type(text) == "string", "the exposition is not a string")
  if text ~= "" and text:sub(-1) ~= "\n" then error("the text does not end with a newline", 0) end
  local fams, order, current, closed = {}, {}, nil, {}
  local function fam(name)
    local f = fams[name]
    if not f then
      f = { name = name, samples = {}, ids = {} }
      fams[name] = f
      order[#order + 1] = name
    end
    return f
  end
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local function bad(why) error(("line %d: %s: %s"):format(n, why, line), 0) end
    if line:match("^#") then
      local kw, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
      if kw == "HELP" or kw == "TYPE" then
        if not name:match(NAME) then bad("bad metric name") end
        local f = fam(name)
        if #f.samples > 0 then bad(kw .. " after the family's samples") end
        if kw == "HELP" then
          if f.help then bad("a second HELP") end
          f.help = rest
        else
          if f.type then bad("a second TYPE") end
          if not TYPES[rest] then bad("unknown type") end
          if rest == "counter" and not name:match("_total$") then bad("a counter not named _total") end
          f.type = rest
        end
      end   -- other comments are allowed
    elseif line:match("^%s*$") then
      bad("an empty line")
    else
      local name, labels, v, id = sample(line)
      if not name then bad(labels) end
      if closed[name] then bad("the family's samples are not together") end
      if current and current ~= name then closed[current] = true end
      current = name
      local f = fam(name)
      if f.ids[id] then bad("two samples with the same labels") end
      f.ids[id] = true
      f.samples[#f.samples + 1] = { labels = labels, value = v }
    end
  end
  return fams, order
end

-- the value of the sample of family `name` whose labels include `want`, or nil
function P.value(fams, name, want)
  local f = fams[name]
  for _, s in ipairs(f and f.samples or {}) do
    local all = true
    for k, v in pairs(want or {}) do
      if s.labels[k] ~= v then all = false end
    end
    if all then return s.value end
  end
  return nil
end

return P
