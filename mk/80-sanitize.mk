# ASan+UBSan (the C tests, the specs of LUA_VERSION, the edges, model and garbage specs on 5.1 and LuaJIT),
# valgrind (the C tests, light), and the libFuzzer target that mutates segment files (clang,
# bounded in time).
SUITES += sanitize valgrind fuzz
PKGS_sanitize := lua-busted $(PKGS_LUA_5.1) $(PKGS_LUA_jit)
PKGS_valgrind := valgrind
PKGS_fuzz     := clang libclang-rt-14-dev

.PHONY: sanitize valgrind fuzz
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# the whole tree built once with them in $(ASAN_B): engine objects, module and C tests
ASAN_B      := $(B)/asan
ASAN_CTESTS := $(patsubst $(B)/test/%,$(ASAN_B)/test/%,$(CTESTS))
# the edges spec (issue 9's finalizer repros), the model and the garbage fuzz also under the
# Luas whose lua_pushlstring collects before it copies (src/lua/binding.h, push_read), with
# their own read path (push_read's copy, the C binding beside LuaJIT's FFI front end): about
# 6-7 CPU s each (the model and the garbage fuzz add 1-2 s) and a build
ASAN_EDGES_LUAS := 5.1 jit
ASAN_EDGES_SPECS := spec/13-edges_spec.lua spec/15-model_spec.lua spec/16-garbage_spec.lua

sanitize:
	$(call need,$(PKGS_sanitize))
	@$(MAKE) --no-print-directory B=$(ASAN_B) CFLAGS='-O1 -g' SANFLAGS='$(ASAN_FLAGS)' module ctests
	@mkdir -p $(RESULTS)
	@rc=0; for t in $(ASAN_CTESTS); do echo "== asan $$t"; log=$(RESULTS)/asan-$$(basename $$t).log; \
	  ASAN_OPTIONS=detect_leaks=1 $(TEST_LIGHT) $$t > $$log 2>&1 || rc=1; tail -n 3 $$log; done; \
	  echo "== asan specs ($(FLAVOUR))"; \
	  ZELTKV_CPATH='$(ASAN_B)/$(FLAVOUR)/?.so' LUA=$(LUA) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 ./spec/run.sh > $(RESULTS)/asan-spec.log 2>&1 || \
	  { rc=1; tail -n 40 $(RESULTS)/asan-spec.log; }; tail -n 1 $(RESULTS)/asan-spec.log; \
	  for v in $(ASAN_EDGES_LUAS); do \
	    $(MAKE) --no-print-directory B=$(ASAN_B) CFLAGS='-O1 -g' SANFLAGS='$(ASAN_FLAGS)' LUA_VERSION=$$v module || rc=1; \
	    d=$$([ $$v = jit ] && echo luajit || echo lua$$v); echo "== asan edges, model, garbage ($$d)"; \
	    ZELTKV_CPATH="$(ASAN_B)/$$d/?.so" LUA=$$d \
	    LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	    ASAN_OPTIONS=detect_leaks=0 ./spec/run.sh $(ASAN_EDGES_SPECS) > $(RESULTS)/asan-edges-$$d.log 2>&1 || \
	    { rc=1; tail -n 40 $(RESULTS)/asan-edges-$$d.log; }; tail -n 1 $(RESULTS)/asan-edges-$$d.log; done; \
	  exit $$rc

# a mutation costs a fork and a whole store under valgrind: 50 random ones, not the light 200
VALGRIND_LIGHT = $(if $(TEST_LIGHT),ZKV_MUTATIONS=50)
valgrind: $(CTESTS)
	$(call need,$(PKGS_valgrind))
	@mkdir -p $(RESULTS)
	@rc=0; for t in $(CTESTS); do echo "== valgrind $$t"; log=$(RESULTS)/vg-$$(basename $$t).log; \
	  $(TEST_LIGHT) $(VALGRIND_LIGHT) valgrind -q --error-exitcode=1 --leak-check=full $$t > $$log 2>&1 || rc=1; \
	  tail -n 3 $$log; done; exit $$rc

fuzz:
	$(call need,$(PKGS_fuzz))
	@mkdir -p $(RESULTS)
	@FUZZ_TIME=$${FUZZ_TIME:-30} bash spec/fuzz/run.sh 2>&1 | tail -n 5 | tee $(RESULTS)/fuzz.log; \
	  exit $${PIPESTATUS[0]}
