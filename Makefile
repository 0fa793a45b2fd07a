# zeltkv -- build, test, bench, demo.
#
#   make            build the Lua 5.4 module and the C library
#   make test       install what is missing, then every test (C, specs, examples,
#                   sanitizers, valgrind); ends with "N passed, N failed"
#   make demo       build and run the examples with readable output
#   make bench      print the benchmark figures
#   make install    install the module (prefer: luarocks --lua-version=5.4 make)
#
# Variables worth overriding: CC, CFLAGS, LUA_VERSION (5.4, 5.1 or jit), PREFIX, DESTDIR.

SHELL       := /bin/bash
ifeq ($(origin CC),default)
CC          := gcc
endif
LUA_VERSION ?= 5.4
PREFIX      ?= /usr/local
DESTDIR     ?=

ifeq ($(LUA_VERSION),jit)
LUA         ?= luajit
LUA_INCDIR  ?= /usr/include/luajit-2.1
FLAVOUR     := luajit
else
LUA         ?= lua$(LUA_VERSION)
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
FLAVOUR     := lua$(LUA_VERSION)
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -Iinclude
LIBS    := -lcjson -lpthread -lm

ENGINE_SRC := src/alloc.c src/arena.c src/index.c src/ops.c src/txn.c
BINDING_SRC := src/lzeltkv.c
HEADERS := include/zeltkv.h src/internal.h src/compat.h
B       := build
MODULE  := $(B)/$(FLAVOUR)/zeltkv/core.so
LIBA    := $(B)/libzeltkv.a
CTESTS  := $(patsubst spec/c/%.c,$(B)/test/%,$(wildcard spec/c/test_*.c))
RESULTS := $(B)/results

LMOD_ENV = LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(B)/$(FLAVOUR)/?.so;;'

# Debian packages the build and the tests use (installed by `make deps`)
PKGS_BUILD := gcc make pkg-config lua5.4 liblua5.4-dev lua-busted libcjson-dev libxxhash-dev luarocks
PKGS_TEST  := $(PKGS_BUILD) valgrind clang libclang-rt-14-dev lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev \
              luajit2 libluajit2-5.1-dev nginx libnginx-mod-http-lua curl
PKGS_BENCH := redis-server redis-tools gnuplot-nox lua-cjson

.PHONY: all deps deps-bench check spec spec-all spec-drivers examples sanitize valgrind rockcheck nginx-test shdict-diff fuzz \
        test demo bench install clean

all: $(MODULE) $(LIBA)

# ---- packages -----------------------------------------------------------------
deps:
	@./tools/deps.sh $(PKGS_TEST)

deps-bench:
	@./tools/deps.sh $(PKGS_BENCH)

# ---- build --------------------------------------------------------------------
$(B)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBA): $(patsubst src/%.c,$(B)/obj/%.o,$(ENGINE_SRC))
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(MODULE): $(ENGINE_SRC) $(BINDING_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(LUA_INCDIR) -shared $(ENGINE_SRC) $(BINDING_SRC) -o $@ $(LIBS)

# ---- C tests ------------------------------------------------------------------
$(B)/test/%: spec/c/%.c spec/c/harness.h $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -Iinclude -Ispec/c $< $(LIBA) -o $@ $(LIBS)

check: $(CTESTS)
	@mkdir -p $(RESULTS)
	@for t in $(CTESTS); do echo "== $$t"; $$t > $(RESULTS)/c-$$(basename $$t).log 2>&1; rc=$$?; \
	  tail -n 3 $(RESULTS)/c-$$(basename $$t).log; [ $$rc -eq 0 ] || exit 1; done

# ---- Lua specs and examples ----------------------------------------------------
spec: $(MODULE)
	@mkdir -p $(RESULTS)
	@ZELTKV_CPATH='$(B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh 2>&1 | tee $(RESULTS)/spec-$(FLAVOUR).log; \
	  exit $${PIPESTATUS[0]}

# the whole suite under each interpreter: Lua 5.4, 5.3, 5.2, 5.1, LuaJIT
spec-all:
	@for v in 5.4 5.3 5.2 5.1 jit; do $(MAKE) --no-print-directory LUA_VERSION=$$v all spec || exit 1; done

# luarocks builds and installs the rock from a clean checkout, offline, into a
# private tree; the installed module then loads from another folder
rockcheck:
	@mkdir -p $(RESULTS)
	@tmp=$$(mktemp -d); git clone -q . $$tmp/src && cp -f *.rockspec $$tmp/src/ && \
	  ( cd $$tmp/src && luarocks --lua-version=5.4 --tree $$tmp/tree make > $$tmp/log 2>&1 ) && \
	  ( cd $$tmp && eval "$$(luarocks --lua-version=5.4 --tree $$tmp/tree path)" && \
	    lua5.4 -e 'local z = require("zeltkv"); assert(z.memory():namespace("a"):set("k", 1))' ); \
	  rc=$$?; [ $$rc -eq 0 ] && r="1 passed, 0 failed" || { cat $$tmp/log; r="0 passed, 1 failed"; }; \
	  echo "rockcheck: $$r" | tee $(RESULTS)/rockcheck.log; rm -rf $$tmp; exit $$rc

# real nginx with 2 workers (LuaJIT build)
nginx-test:
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory LUA_VERSION=jit all
	@bash spec/nginx/run.sh 2>&1 | tee $(RESULTS)/nginx.log; exit $${PIPESTATUS[0]}

# the ngx.shared.DICT drop-in against a real lua_shared_dict, call by call
shdict-diff:
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory LUA_VERSION=jit all
	@bash spec/shdict_diff/run.sh 2>&1 | tee $(RESULTS)/shdict-diff.log; exit $${PIPESTATUS[0]}

# the contract specs (store, bad inputs, atomic) on each driver: ZELTKV_DRIVER picks it
# (spec/helpers.lua H.driver); the memory leg is the plain `spec` run
CONTRACT_SPECS := spec/02-store_spec.lua spec/03-bad_inputs_spec.lua spec/04-atomic_spec.lua
spec-drivers: $(MODULE)
	@mkdir -p $(RESULTS)
	@ZELTKV_DRIVER=shared ZELTKV_CPATH='$(B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh $(CONTRACT_SPECS) \
	  > $(RESULTS)/spec-driver-shared.log 2>&1; rc=$$?; \
	  echo "shared driver: $$(tail -n 1 $(RESULTS)/spec-driver-shared.log)"; \
	  [ $$rc -eq 0 ] || { grep -A3 '^not ok' $(RESULTS)/spec-driver-shared.log | head -40; exit 1; }

examples: $(MODULE)
	@mkdir -p $(RESULTS)
	@pass=0; fail=0; for e in examples/*.lua examples/shdict/cron.lua; do \
	  args=; [ $$e = examples/shdict/cron.lua ] && args=--demo; \
	  if $(LMOD_ENV) ZELTKV_SHM_DIR=$$(mktemp -d) $(LUA) $$e $$args > $(RESULTS)/example-$$(basename $$e .lua).log 2>&1; \
	  then pass=$$((pass+1)); echo "ok   $$e"; else fail=$$((fail+1)); echo "FAIL $$e"; \
	  cat $(RESULTS)/example-$$(basename $$e .lua).log; fi; done; \
	  echo "examples: $$pass passed, $$fail failed" | tee $(RESULTS)/examples.log; \
	  [ $$fail -eq 0 ] && [ $$pass -gt 0 ]

# ---- sanitizers and valgrind ---------------------------------------------------
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
$(B)/asan/$(FLAVOUR)/zeltkv/core.so: $(ENGINE_SRC) $(BINDING_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g $(ASAN_FLAGS) -fPIC -fvisibility=hidden -Iinclude \
	  -I$(LUA_INCDIR) -shared $(ENGINE_SRC) $(BINDING_SRC) -o $@ $(LIBS)

$(B)/asan/test/%: spec/c/%.c spec/c/harness.h $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g $(ASAN_FLAGS) -Iinclude -Isrc -Ispec/c $< \
	  $(ENGINE_SRC) -o $@ $(LIBS)

sanitize: $(B)/asan/$(FLAVOUR)/zeltkv/core.so $(patsubst $(B)/test/%,$(B)/asan/test/%,$(CTESTS))
	@mkdir -p $(RESULTS)
	@for t in $(patsubst $(B)/test/%,$(B)/asan/test/%,$(CTESTS)); do echo "== asan $$t"; \
	  ASAN_OPTIONS=detect_leaks=1 $$t > $(RESULTS)/asan-$$(basename $$t).log 2>&1; rc=$$?; \
	  tail -n 3 $(RESULTS)/asan-$$(basename $$t).log; [ $$rc -eq 0 ] || exit 1; done
	@echo "== asan specs ($(FLAVOUR))"
	@ZELTKV_CPATH='$(B)/asan/$(FLAVOUR)/?.so' LUA=$(LUA) \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 ./spec/run.sh > $(RESULTS)/asan-spec.log 2>&1; rc=$$?; \
	  tail -n 1 $(RESULTS)/asan-spec.log; [ $$rc -eq 0 ] || { tail -n 40 $(RESULTS)/asan-spec.log; exit 1; }

# ThreadSanitizer (clang) over the C tests where threads share a store: every
# field they touch is checked for access outside the lock, not only results
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer -Wno-unknown-warning-option
$(B)/tsan/test/%: spec/c/%.c spec/c/harness.h $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g $(TSAN_FLAGS) -Iinclude -Isrc -Ispec/c $< \
	  $(ENGINE_SRC) -o $@ $(LIBS)

TSAN_RUNS := test_threads: \
             test_shared:shared_four_threads,shared_thread_dies,shared_two_handles,shared_nested_handles
tsan: $(B)/tsan/test/test_threads $(B)/tsan/test/test_shared
	@mkdir -p $(RESULTS)
	@export TSAN_OPTIONS="suppressions=$(CURDIR)/spec/c/tsan.supp halt_on_error=1 exitcode=66" \
	  ZKV_TEST_LIGHT=1; \
	for r in $(TSAN_RUNS); do t=$${r%%:*}; sel=$$(echo $${r#*:} | tr , ' '); \
	  echo "== tsan $$t $$sel"; log=$(RESULTS)/tsan-$$t.log; \
	  $(B)/tsan/test/$$t $$sel > $$log 2>&1; rc=$$?; tail -n 1 $$log; \
	  [ $$rc -eq 0 ] || { grep -A30 'WARNING: ThreadSanitizer' $$log | head -60; exit 1; }; done

valgrind: $(CTESTS)
	@mkdir -p $(RESULTS)
	@for t in $(CTESTS); do echo "== valgrind $$t"; \
	  ZKV_TEST_LIGHT=1 valgrind -q --error-exitcode=1 --leak-check=full $$t > $(RESULTS)/vg-$$(basename $$t).log 2>&1; rc=$$?; \
	  tail -n 3 $(RESULTS)/vg-$$(basename $$t).log; [ $$rc -eq 0 ] || exit 1; done

# libFuzzer (clang, ASan+UBSan) mutating segment files; bounded in time
fuzz:
	@mkdir -p $(RESULTS)
	@FUZZ_TIME=$${FUZZ_TIME:-30} bash spec/fuzz/run.sh 2>&1 | tail -n 5 | tee $(RESULTS)/fuzz.log; \
	  exit $${PIPESTATUS[0]}

# ---- the two commands ----------------------------------------------------------
test: deps
	@rm -rf $(RESULTS)
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory spec-all
	@$(MAKE) --no-print-directory spec-drivers
	@$(MAKE) --no-print-directory examples
	@$(MAKE) --no-print-directory rockcheck
	@$(MAKE) --no-print-directory nginx-test
	@$(MAKE) --no-print-directory shdict-diff
	@$(MAKE) --no-print-directory sanitize
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory fuzz
	@./tools/summary.sh $(RESULTS)

demo: deps all
	@for e in examples/ratelimit.lua examples/lock.lua examples/session.lua examples/inventory.lua; do \
	  echo; echo "=== $$e"; $(LMOD_ENV) $(LUA) $$e || exit 1; done

bench: deps all
	@-./tools/deps.sh $(PKGS_BENCH)
	@$(LMOD_ENV) $(LUA) bench/bench.lua
	@echo
	@$(LMOD_ENV) ZELTKV_SHM_DIR=$${ZELTKV_SHM_DIR:-/dev/shm} $(LUA) bench/shared.lua
	@echo
	@$(MAKE) --no-print-directory LUA_VERSION=jit all
	@bash bench/nginx/run.sh

# ---- install ---------------------------------------------------------------------
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/zeltkv $(DESTDIR)$(LUA_SHAREDIR)/zeltkv
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/zeltkv/core.so
	install -m 0644 lua/zeltkv.lua $(DESTDIR)$(LUA_SHAREDIR)/zeltkv.lua

clean:
	rm -rf $(B)
