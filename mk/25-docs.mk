# The documentation: every Lua and C code block of README.md and docs/*.md runs, and every link
# resolves (spec/docs/doccheck.lua; the rules are in docs/contributing.md).
SUITES += docs
SUITES_NET += docs
# nginx for the `lua nginx` and `nginx get=` blocks; a Redis server and LuaSocket for `lua redis`
PKGS_docs := $(PKGS_LUA_5.4) $(PKGS_LUA_jit) nginx libnginx-mod-http-lua curl redis-server redis-tools lua-socket

.PHONY: docs
docs: lib
	$(call need,$(PKGS_docs))
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 module
	@$(MAKE) --no-print-directory LUA_VERSION=jit module
	@mkdir -p $(RESULTS)
	@B=$(B) CC=$(CC) lua5.4 spec/docs/doccheck.lua 2>&1 | tee $(RESULTS)/docs.log; exit $${PIPESTATUS[0]}
