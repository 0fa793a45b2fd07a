# Real nginx with 2 workers (LuaJIT build); the ngx.shared.DICT drop-in against a real
# lua_shared_dict, call by call; require("zeltkv.shdict").zone(): ngx.shared.NAME's lifecycle
# across reload, upgrade, restart.
PKGS_NGINX := nginx libnginx-mod-http-lua curl $(PKGS_LUA_jit)
SUITES += nginx-test shdict-diff shdict-zone
SUITES_NET += nginx-test shdict-diff shdict-zone
PKGS_nginx-test := $(PKGS_NGINX)
PKGS_shdict-diff := $(PKGS_NGINX)
PKGS_shdict-zone := $(PKGS_NGINX)

.PHONY: nginx-test shdict-diff shdict-zone
nginx-test:
	$(call need,$(PKGS_nginx-test))
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory LUA_VERSION=jit module
	@bash spec/nginx/run.sh 2>&1 | tee $(RESULTS)/nginx.log; exit $${PIPESTATUS[0]}

shdict-diff:
	$(call need,$(PKGS_shdict-diff))
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory LUA_VERSION=jit module
	@bash spec/shdict_diff/run.sh 2>&1 | tee $(RESULTS)/shdict-diff.log; exit $${PIPESTATUS[0]}

shdict-zone:
	$(call need,$(PKGS_shdict-zone))
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory LUA_VERSION=jit module
	@bash spec/shdict_diff/zone.sh 2>&1 | tee $(RESULTS)/shdict-zone.log; exit $${PIPESTATUS[0]}
