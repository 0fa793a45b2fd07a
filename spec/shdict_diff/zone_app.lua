-- spec/shdict_diff/zone_app.lua: the handlers of spec/shdict_diff/zone.sh.
--
-- Like the libraries it stands for (a lock, a rate limiter, a cache), every handler looks its
-- dict up by name at request time, ngx.shared[name], never holding a dict object of its own.
--
--   GET /w?dict=NAME&k=KEY&v=VALUE   ngx.shared[NAME]:set(KEY, VALUE)        -> "ok"
--   GET /r?dict=NAME&k=KEY           ngx.shared[NAME]:get(KEY)               -> "GEN VALUE" (or
--                                    "GEN nil"), GEN the configuration's generation
--   GET /lock?dict=NAME&k=KEY        a lock as lua-resty-lock takes one: add(key, true, ttl)
--                                    then delete(key)                        -> "locked" / "busy"
--   GET /limit?dict=NAME&k=KEY       a counter as lua-resty-limit-traffic's limit-count keeps
--                                    it: incr(key, 1, 0, window)             -> the count
--   GET /kind?dict=NAME              "zeltkv" or "shdict": what ngx.shared[NAME] is
--   GET /locked?dict=NAME            a read-modify-write of the key "n" under such a lock,
--                                    waited for as lua-resty-lock does (ngx.sleep between tries),
--                                    the lock held across a yield             -> "ok"
--   GET /limit_full?dict=NAME        a limit-count limiter (incr(key, -1, 10, 60)) asked 50
--                                    times while other writes fill the dict 3 times over
--                                    -> "accepted N"

local M = {}

local function dict()
  local name = ngx.var.arg_dict
  local d = ngx.shared[name]
  if not d then
    ngx.status = 404
    ngx.say("no ngx.shared.", tostring(name))
    return ngx.exit(404)
  end
  return d
end

function M.write()
  local ok, err = dict():set(ngx.var.arg_k, ngx.var.arg_v)
  ngx.say(ok and "ok" or ("failed: " .. tostring(err)))
end

function M.read()
  local v = dict():get(ngx.var.arg_k)
  ngx.say(tostring(package.loaded.zone_gen), " ", tostring(v))
end

function M.lock()
  local d = dict()
  local ok, err = d:add(ngx.var.arg_k, true, 5)
  if not ok then
    ngx.say(err == "exists" and "busy" or ("failed: " .. tostring(err)))
    return
  end
  local held = d:get(ngx.var.arg_k)
  d:delete(ngx.var.arg_k)
  ngx.say(held and "locked" or "lost")
end

function M.limit()
  local n, err = dict():incr(ngx.var.arg_k, 1, 0, 60)
  ngx.say(tostring(n or err))
end

function M.locked()
  local d = dict()
  local step, waited = 0.001, 0
  while true do
    local ok, err = d:add("lk", true, 10)
    if ok then break end
    if err ~= "exists" or waited > 10 then ngx.say("failed: ", tostring(err)); return end
    ngx.sleep(step)
    waited = waited + step
    step = math.min(step * 2, 0.01)
  end
  local n = d:get("n") or 0
  ngx.sleep(0.001)                         -- another request runs here, and finds it locked
  d:set("n", n + 1)
  d:delete("lk")
  ngx.say("ok")
end

function M.limit_full()
  local d = dict()
  local filler = string.rep(".", 1024)
  local per = math.ceil(3 * d:capacity() / #filler / 50)
  local accepted, j = 0, 0
  for _ = 1, 50 do
    local remaining = d:incr("client", -1, 10, 60)
    if remaining and remaining >= 0 then accepted = accepted + 1 end
    for _ = 1, per do j = j + 1; d:set("noise" .. j, filler) end
  end
  ngx.say("accepted ", accepted)
end

function M.kind()
  ngx.say(type(rawget(dict(), 1)) == "userdata" and "shdict" or "zeltkv")  -- a zone is { zone_ud }
end

return M
