-- spec/summary_handler.lua: a busted output handler for spec/run.sh.
--
-- One line per test ("ok N - name" / "not ok N - name", then the failure message and
-- place as "#" lines, like busted's TAP handler), and as the very last line
--     P passed, F failed
-- where F counts failures and errors (including errors outside an `it`, such as a spec
-- file that does not load). Pending tests are neither.

local pretty = require("pl.pretty")

return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.base")()
  local counter = 0

  local function out(line)
    io.write(line, "\n")
    io.flush()
  end

  local function show_failure(t, label)
    local message = t.message
    if message == nil then
      message = "nil error"
    elseif type(message) ~= "string" then
      local mt = getmetatable(message)
      if type(message) == "table" and not (type(mt) == "table" and mt.__tostring) then
        message = pretty.write(message)
      else
        message = tostring(message)
      end
    end
    out(("not ok %d - %s"):format(counter, label or t.name))
    local trace = t.element and t.element.trace
    if trace and trace.short_src then
      out(("# %s @ %s"):format(trace.short_src, tostring(trace.currentline)))
    end
    out("# " .. message:gsub("\n", "\n# "))
    if options.verbose and t.trace and t.trace.traceback then
      out("# " .. t.trace.traceback:gsub("^\n", ""):gsub("\n", "\n# "))
    end
  end

  handler.suiteReset = function()
    counter = 0
    return nil, true
  end

  handler.testEnd = function(element, parent, status)
    counter = counter + 1
    if status == "success" then
      out(("ok %d - %s"):format(counter, handler.getFullName(element)))
    elseif status == "pending" then
      out(("ok %d - # SKIP %s"):format(counter, handler.getFullName(element)))
    elseif status == "failure" then
      show_failure(handler.failures[#handler.failures])
    elseif status == "error" then
      show_failure(handler.errors[#handler.errors])
    end
    return nil, true
  end

  -- errors outside an `it` (a file that fails to load, a failing before_each, ...)
  handler.error = function(element)
    if element.descriptor ~= "it" then
      counter = counter + 1
      local t = handler.errors[#handler.errors]
      show_failure(t, (t and t.name or "?") .. " (" .. tostring(element.descriptor) .. ")")
    end
    return nil, true
  end

  handler.suiteEnd = function()
    local passed = handler.successesCount
    local failed = handler.failuresCount + handler.errorsCount
    out(("%d passed, %d failed"):format(passed, failed))
    return nil, true
  end

  busted.subscribe({ "suite", "reset" }, handler.suiteReset)
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "error" }, handler.error)
  busted.subscribe({ "failure" }, handler.error)

  return handler
end
