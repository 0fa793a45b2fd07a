# Packaging: the build honours CPPFLAGS, LDFLAGS, CFLAGS, LUA_INCDIR and pkg-config; the rock
# built by luarocks for every Lua; make install into a temporary prefix and used from Lua,
# LuaJIT and C; make dist and its .src.rock installed offline; tools/deps.sh and make demo as
# a user who is not root.
SUITES += buildcheck rockcheck installcheck distcheck depscheck
PKGS_buildcheck   :=
PKGS_rockcheck    := luarocks git zip unzip $(foreach v,5.1 5.2 5.3 5.4 jit,$(PKGS_LUA_$(v)))
PKGS_installcheck := $(PKGS_LUA_5.4) $(PKGS_LUA_jit) pkg-config
PKGS_distcheck    := luarocks git zip unzip $(PKGS_LUA_5.4)
PKGS_depscheck    :=

.PHONY: buildcheck rockcheck installcheck distcheck depscheck
buildcheck rockcheck installcheck distcheck depscheck:
	$(call need,$(PKGS_$@))
	@mkdir -p $(RESULTS)
	@bash spec/packaging/$@.sh 2>&1 | tee $(RESULTS)/$@.log; \
	  exit $${PIPESTATUS[0]}
