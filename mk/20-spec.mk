# The busted specs (spec/*_spec.lua) under every Lua: spec runs them under LUA_VERSION,
# spec-all under each of LUA_VERSIONS.
LUA_VERSIONS := 5.4 5.3 5.2 5.1 jit
SUITES   += spec-all
PKGS_spec := lua-busted
PKGS_spec-all := lua-busted $(foreach v,$(LUA_VERSIONS),$(PKGS_LUA_$(v)))

.PHONY: spec spec-all
spec: $(MODULE)
	$(call need,$(PKGS_spec))
	@mkdir -p $(RESULTS)
	@ZELTKV_CPATH='$(B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh 2>&1 | tee $(RESULTS)/spec-$(FLAVOUR).log; \
	  exit $${PIPESTATUS[0]}

spec-all:
	@rc=0; for v in $(LUA_VERSIONS); do \
	  $(MAKE) --no-print-directory LUA_VERSION=$$v module spec || rc=1; done; exit $$rc
