# The busted specs (spec/*_spec.lua) under every Lua: spec runs them under LUA_VERSION,
# spec-all under each of LUA_VERSIONS.
LUA_VERSIONS := 5.4 5.3 5.2 5.1 jit
SUITES   += spec-all spec-drivers
# redis-server and lua-socket: spec/13-cli_spec.lua runs zkv against redis:// URLs (pending
# without them)
PKGS_spec := lua-busted redis-server lua-socket
PKGS_spec-drivers := lua-busted
PKGS_spec-all := $(PKGS_spec) $(foreach v,$(LUA_VERSIONS),$(PKGS_LUA_$(v)))

# LONG=1: the dump/load round trip of spec/13-snapshot_spec.lua with 1,000,000 keys (about
# 25 CPU s per run) instead of 20,000
SNAPSHOT_KEYS = $(if $(filter-out 0 no,$(LONG)),ZELTKV_SNAPSHOT_KEYS=1000000)

.PHONY: spec spec-all spec-drivers
spec: $(MODULE)
	$(call need,$(PKGS_spec))
	@mkdir -p $(RESULTS)
	@$(SNAPSHOT_KEYS) ZELTKV_CPATH='$(B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh 2>&1 | tee $(RESULTS)/spec-$(FLAVOUR).log; \
	  exit $${PIPESTATUS[0]}

spec-all:
	@rc=0; for v in $(LUA_VERSIONS); do \
	  $(MAKE) --no-print-directory LUA_VERSION=$$v module spec || rc=1; done; exit $$rc

# the contract specs (store, bad inputs, atomic, expiry, dump and load) on each driver:
# ZELTKV_DRIVER picks it (spec/helpers.lua H.driver); the memory leg is the plain `spec`
# run, the redis legs are in mk/70-redis.mk
CONTRACT_SPECS := spec/02-store_spec.lua spec/03-bad_inputs_spec.lua spec/04-atomic_spec.lua \
                  spec/05-expiry_spec.lua spec/13-snapshot_spec.lua
spec-drivers: $(MODULE)
	$(call need,$(PKGS_spec-drivers))
	@mkdir -p $(RESULTS)
	@$(SNAPSHOT_KEYS) ZELTKV_DRIVER=shared ZELTKV_CPATH='$(B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh $(CONTRACT_SPECS) \
	  > $(RESULTS)/spec-driver-shared.log 2>&1; rc=$$?; \
	  echo "shared driver: $$(tail -n 1 $(RESULTS)/spec-driver-shared.log)"; \
	  [ $$rc -eq 0 ] || { grep -A3 '^not ok' $(RESULTS)/spec-driver-shared.log | head -40; exit 1; }
