# ASan+UBSan (the C tests and the specs of LUA_VERSION), valgrind (the C tests, light),
# and the libFuzzer target that mutates segment files (clang, bounded in time).
SUITES += sanitize valgrind fuzz
PKGS_sanitize := lua-busted
PKGS_valgrind := valgrind
PKGS_fuzz     := clang libclang-rt-14-dev

.PHONY: sanitize valgrind fuzz
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_MODULE := $(B)/asan/$(FLAVOUR)/zeltkv/core.so
ASAN_CTESTS := $(patsubst $(B)/test/%,$(B)/asan/test/%,$(CTESTS))

$(ASAN_MODULE): $(ENGINE_SRC) $(BINDING_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ZKV_CPPFLAGS) $(LUA_CFLAGS) -std=c11 $(WARN) -O1 -g $(ASAN_FLAGS) -fPIC -fvisibility=hidden \
	  -shared $(ENGINE_SRC) $(BINDING_SRC) -o $@ $(CJSON_LIBS) $(ENGINE_LIBS)

$(B)/asan/test/%: spec/c/%.c spec/c/harness.h $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ZKV_CPPFLAGS) -Isrc -Ispec/c -std=c11 $(WARN) -O1 -g $(ASAN_FLAGS) $< \
	  $(ENGINE_SRC) -o $@ $(ENGINE_LIBS)

sanitize: $(ASAN_MODULE) $(ASAN_CTESTS)
	$(call need,$(PKGS_sanitize))
	@mkdir -p $(RESULTS)
	@rc=0; for t in $(ASAN_CTESTS); do echo "== asan $$t"; log=$(RESULTS)/asan-$$(basename $$t).log; \
	  ASAN_OPTIONS=detect_leaks=1 $$t > $$log 2>&1 || rc=1; tail -n 3 $$log; done; \
	  echo "== asan specs ($(FLAVOUR))"; \
	  ZELTKV_CPATH='$(B)/asan/$(FLAVOUR)/?.so' LUA=$(LUA) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 ./spec/run.sh > $(RESULTS)/asan-spec.log 2>&1 || \
	  { rc=1; tail -n 40 $(RESULTS)/asan-spec.log; }; tail -n 1 $(RESULTS)/asan-spec.log; exit $$rc

valgrind: $(CTESTS)
	$(call need,$(PKGS_valgrind))
	@mkdir -p $(RESULTS)
	@rc=0; for t in $(CTESTS); do echo "== valgrind $$t"; log=$(RESULTS)/vg-$$(basename $$t).log; \
	  ZKV_TEST_LIGHT=1 valgrind -q --error-exitcode=1 --leak-check=full $$t > $$log 2>&1 || rc=1; \
	  tail -n 3 $$log; done; exit $$rc

fuzz:
	$(call need,$(PKGS_fuzz))
	@mkdir -p $(RESULTS)
	@FUZZ_TIME=$${FUZZ_TIME:-30} bash spec/fuzz/run.sh 2>&1 | tail -n 5 | tee $(RESULTS)/fuzz.log; \
	  exit $${PIPESTATUS[0]}
