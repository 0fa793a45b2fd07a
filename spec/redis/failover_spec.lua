-- spec/redis/failover_spec.lua: a master of a cluster with replicas killed under traffic
-- (issue 14, point 7).  The driver must follow the failover by itself: calls during it
-- fail with STORE_OPERATION_FAILED (connection) within `timeout`, never hang, and once
-- a replica has been promoted the same driver works again.  Needs ZELTKV_REDIS_REPLICAS
-- (spec/redis/servers.sh ... replicas: 3 masters, 3 replicas, cluster-node-timeout 1 s).

local H = require("helpers")
local R = require("redis.lib")
local zeltkv = require("zeltkv")
local slotlib = require("zeltkv.slot")

local NODES = R.env("ZELTKV_REDIS_REPLICAS")

describe("a cluster failover", function()
  if not NODES then pending("no cluster with replicas (ZELTKV_REDIS_REPLICAS)") return end
  local nodes = {}
  for n in NODES:gmatch("[^,]+") do nodes[#nodes + 1] = n end

  it("is followed by the driver: calls fail within timeout, then work again", function()
    local kv = zeltkv.redis(H.redis_opts({ cluster = nodes, timeout = 0.5 }))
    local s = kv:namespace("fo")
    s:set("n", 0)
    -- the master that holds the root's slot
    local slot = slotlib.tag_slot("fo")
    local master
    for _, range in ipairs(R.raw(nodes[1], "CLUSTER", "SLOTS")) do
      if slot >= range[1] and slot <= range[2] then master = range[3][1] .. ":" .. range[3][2] end
    end
    assert.truthy(master)
    local info = R.raw(master, "INFO", "server")
    local pid = tonumber(info:match("process_id:(%d+)"))
    assert.truthy(pid)

    local acked, failures, longest, recovered_after = 0, 0, 0, nil
    for _ = 1, 50 do                                  -- traffic before the kill
      s:incr("n")
      acked = acked + 1
    end
    local killed_at = R.now()
    assert.is_true(R.sh("kill -9 " .. pid))
    local deadline = killed_at + 20
    while R.now() < deadline do
      local t0 = R.now()
      local ok, err = pcall(s.incr, s, "n")
      local dt = R.now() - t0
      if dt > longest then longest = dt end
      if ok then
        acked = acked + 1
        if failures > 0 and not recovered_after then recovered_after = R.now() - killed_at end
        if recovered_after and R.now() - killed_at > recovered_after + 0.5 then break end
      else
        failures = failures + 1
        assert.are.equal("STORE_OPERATION_FAILED", err.code, tostring(err))
        assert.are.equal("connection", err.reason, tostring(err))
        R.sleep(0.05)
      end
    end
    assert.is_truthy(recovered_after, "the driver did not recover within 20 s")
    -- no call waited much longer than timeout (connect + reply, and the retries while
    -- the map is read again stay inside it)
    assert.is_true(longest < 0.5 * 2 + 0.5, ("a call took %.2f s"):format(longest))
    local n = s:get("n")
    -- what asynchronous replication can lose: writes acknowledged by the dead master
    -- that had not reached its replica (docs/redis.md); on loopback usually none
    assert.is_true(n <= acked and n >= acked - 50, ("n = %d, acknowledged %d"):format(n, acked))
    print(("# failover: %d calls failed, recovered %.1f s after the kill, longest call %.2f s, "
           .. "%d of %d acknowledged increments kept"):format(failures, recovered_after, longest, n, acked))
    -- and atomic works on the new master
    kv:atomic(function() s:set("n", s:get("n") + 1) end)
    assert.are.equal(n + 1, s:get("n"))
    kv:flush()
    kv:close()
  end)
end)
