# The redis driver (issue 14): its own throw-away servers (unix socket, TCP, TLS with a
# password, a 3-node cluster, a cluster with replicas), the contract specs on each, its
# own spec under Lua 5.4, 5.3, 5.2, 5.1 and LuaJIT, the failover, the examples on redis, and nginx
# (cosockets).  spec/redis/run.sh; `make redis-test LEGS="contract own"` runs some legs.
PKGS_REDIS := redis-server redis-tools lua-socket lua-sec openssl lua-busted
SUITES += redis-test
SUITES_NET += redis-test
PKGS_redis-test := $(PKGS_REDIS) $(PKGS_LUA_5.1) $(PKGS_LUA_5.2) $(PKGS_LUA_5.3) $(PKGS_LUA_jit) nginx libnginx-mod-http-lua curl

.PHONY: redis-test
redis-test:
	$(call need,$(PKGS_redis-test))
	@mkdir -p $(RESULTS)
	@for v in 5.4 5.3 5.2 5.1 jit; do $(MAKE) --no-print-directory LUA_VERSION=$$v module >/dev/null || exit 1; done
	@RESULTS=$(RESULTS) bash spec/redis/run.sh
