-- zeltkv: an embedded key-value store for Lua (see README.md and API.md).
-- The engine and the Lua 5.x binding are C (zeltkv.core); this file is the
-- module users require, so that LuaJIT can put its FFI front end in front.
local core = require("zeltkv.core")
return core
