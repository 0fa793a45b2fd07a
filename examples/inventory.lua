-- inventory.lua: a multi-step order inside atomic, rolled back on failure.
--
-- An order takes stock of several items, records itself and bumps a counter.
-- When any item is short, atomic raises and every write the order had already
-- made (stock taken from earlier items included) is undone.  A nested atomic
-- that fails undoes only its own writes, so the outer order can go on.

local zeltkv = require("zeltkv")

local kv = zeltkv.memory()
local stock = kv:namespace("stock")
local orders = kv:namespace("orders")
local stats = kv:namespace("stats")

stock:set("widget", 10)
stock:set("gadget", 3)
stock:set("giftwrap", 0)

local function show(label)
  print(("  %-38s widget=%d gadget=%d orders=%d"):format(label,
    stock:get("widget"), stock:get("gadget"), stats:get("orders") or 0))
end

-- place(id, lines) takes every line's quantity from stock, or nothing at all.
local function place(id, lines)
  return kv:atomic(function()
    for _, line in ipairs(lines) do
      local have = stock:get(line.sku) or 0
      if have < line.qty then
        error({ reason = "out of stock", sku = line.sku, have = have, want = line.qty })
      end
      stock:set(line.sku, have - line.qty)
    end
    orders:set(id, { lines = lines, status = "placed" })
    return stats:incr("orders")
  end)
end

show("initial stock:")

local n = place("order:1", { { sku = "widget", qty = 4 }, { sku = "gadget", qty = 1 } })
show("order:1 (4 widget, 1 gadget) placed:")
assert(n == 1 and stock:get("widget") == 6 and stock:get("gadget") == 2)
assert(orders:get("order:1").status == "placed")

-- order:2 takes 5 widgets, then finds only 2 gadgets: the widgets come back.
local lines = { { sku = "widget", qty = 5 }, { sku = "gadget", qty = 3 } }
local ok, err = pcall(place, "order:2", lines)
print(("  order:2 (5 widget, 3 gadget) failed: %s %s (have %d, want %d)"):format(
  err.reason, err.sku, err.have, err.want))
show("after the rollback:")
assert(not ok and type(err) == "table" and err.sku == "gadget", "the same error value is raised")
assert(stock:get("widget") == 6, "widgets taken before the failure are put back")
assert(stock:get("gadget") == 2 and orders:has("order:2") == false)
assert(stats:get("orders") == 1)

-- order:3 asks for gift wrap as an optional extra in a nested atomic: it fails,
-- only the extra is undone, and the order itself goes through.
local wrapped
n = kv:atomic(function()
  local count = place("order:3", { { sku = "widget", qty = 1 } })
  wrapped = pcall(kv.atomic, kv, function()
    orders:set("order:3", { lines = { { sku = "widget", qty = 1 } }, status = "wrapped" })
    local w = stock:get("giftwrap")
    if w < 1 then error("no gift wrap left", 0) end
    stock:set("giftwrap", w - 1)
  end)
  return count
end)
show("order:3 placed, gift wrap " .. (wrapped and "added:" or "skipped:"))
assert(n == 2 and wrapped == false)
assert(stock:get("widget") == 5 and stock:get("giftwrap") == 0)
assert(orders:get("order:3").status == "placed", "the failed inner atomic is undone alone")

kv:close()
print("inventory: ok")
