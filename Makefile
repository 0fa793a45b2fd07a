# zeltkv -- build, test, demo, bench, install, dist.
#
#   make              the Lua module (LUA_VERSION, default 5.4) and the C libraries
#   make test         install the missing Debian packages, then every suite of mk/;
#                     ends with "N passed, N failed" (build/results/SUITE/ has its logs);
#                     TEST_JOBS suites at a time (default: the CPUs); LONG=1: long runs
#   make demo         build and run the examples with readable output
#   make bench        print the benchmark figures
#   make install      the Lua module, its Lua files, the C header and libraries, zeltkv.pc
#   make dist         build/dist/: a source tarball and a .src.rock
#   make SUITE        one suite of `make test` alone (`make list-suites` names them)
#
# Variables: CC, CPPFLAGS, CFLAGS, LDFLAGS; LUA_VERSION (5.1 5.2 5.3 5.4 jit); LUA (the
# interpreter); LUA_INCDIR (else pkg-config finds the Lua headers); PREFIX, DESTDIR,
# LIBDIR, INCLUDEDIR, LUA_LIBDIR, LUA_SHAREDIR, DATADIR; WERROR=1 (warnings as errors; on when
# CI=true); B (the build directory).
#
# The test suites live in mk/*.mk, one file each (see mk/README.md to add one).

SHELL       := /bin/bash
ifeq ($(origin CC),default)
CC          := gcc
endif
LUA_VERSION ?= 5.4
B           ?= build
RESULTS     ?= $(B)/results
# one home for the version: the C header
VERSION     := $(shell sed -n 's/^\#define ZKV_VERSION "\(.*\)"/\1/p' include/zeltkv.h)
SOMAJOR     := 0

# ---- Lua -----------------------------------------------------------------------
# FLAVOUR names the build directory of the module; LUA_ABI the directory an
# interpreter looks in (LuaJIT looks where Lua 5.1 does).
ifeq ($(LUA_VERSION),jit)
LUA         ?= luajit
FLAVOUR     := luajit
LUA_ABI     := 5.1
LUA_PC_NAMES := luajit
else
LUA         ?= lua$(LUA_VERSION)
FLAVOUR     := lua$(LUA_VERSION)
LUA_ABI     := $(LUA_VERSION)
LUA_PC_NAMES := lua$(LUA_VERSION) lua-$(LUA_VERSION) lua$(subst .,,$(LUA_VERSION))
endif
ifdef LUA_INCDIR
LUA_CFLAGS  ?= -I$(LUA_INCDIR)
else
LUA_PC      ?= $(firstword $(foreach p,$(LUA_PC_NAMES),$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p))))
LUA_CFLAGS  ?= $(if $(LUA_PC),$(shell pkg-config --cflags $(LUA_PC)))
endif

# ---- flags ---------------------------------------------------------------------
# CPPFLAGS, CFLAGS and LDFLAGS are the user's; what the sources need is added here.
CFLAGS      ?= -O2 -g
WARN        := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
ifneq ($(filter true 1 yes,$(CI) $(WERROR)),)
WARN        += -Werror
endif
ZKV_CPPFLAGS = -Iinclude $(CPPFLAGS)
ZKV_CFLAGS   = -std=c11 $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -fvisibility=hidden
# SANFLAGS: instrumentation compiled into every object and test and linked into every binary
# (mk/80-sanitize.mk builds the tree once with ASan+UBSan in $(B)/asan)
SANFLAGS    ?=
CJSON_LIBS  ?= $(or $(shell pkg-config --libs libcjson 2>/dev/null),-lcjson)
ENGINE_LIBS := -lpthread -lm
DEPFLAGS     = -MMD -MP

# ---- sources -------------------------------------------------------------------
# The Lua binding is src/lua/*.c; every file of src/ itself is the engine, which knows nothing
# of Lua (an engine file may start with any letter: src/lock.c is the engine's).
BINDING_SRC := $(sort $(wildcard src/lua/*.c))
ENGINE_SRC  := $(sort $(wildcard src/*.c))
ENGINE_OBJ  := $(patsubst src/%.c,$(B)/obj/%.o,$(ENGINE_SRC))
BINDING_OBJ := $(patsubst src/%.c,$(B)/$(FLAVOUR)/obj/%.o,$(BINDING_SRC))
HEADERS     := $(wildcard include/*.h src/*.h src/lua/*.h)
MODULE      := $(B)/$(FLAVOUR)/zeltkv/core.so
LIBA        := $(B)/libzeltkv.a
LIBSO       := $(B)/libzeltkv.so.$(VERSION)
CTESTS      := $(patsubst spec/c/%.c,$(B)/test/%,$(wildcard spec/c/test_*.c))

LMOD_ENV     = LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(B)/$(FLAVOUR)/?.so;;'

# ---- Debian packages -------------------------------------------------------------
# Each target installs only what it needs: $(call need,PKGS) at the top of a recipe
# installs the missing ones as root, else prints the apt-get line and stops.
PKGS_LUA_5.1 := lua5.1 liblua5.1-0-dev
PKGS_LUA_5.2 := lua5.2 liblua5.2-dev
PKGS_LUA_5.3 := lua5.3 liblua5.3-dev
PKGS_LUA_5.4 := lua5.4 liblua5.4-dev
PKGS_LUA_jit := luajit2 libluajit2-5.1-dev
PKGS_BUILD   := gcc pkg-config libcjson-dev libxxhash-dev $(PKGS_LUA_$(LUA_VERSION))
PKGS_BENCH   := $(PKGS_BUILD) $(PKGS_LUA_jit) nginx libnginx-mod-http-lua curl redis-server \
                redis-tools gnuplot-nox lua-cjson lua-socket
need = @./tools/deps.sh $(1)

# ---- the build -------------------------------------------------------------------
.PHONY: all lib module ctests deps test list-suites demo bench install uninstall dist clean

all: module lib
module: $(MODULE)
lib: $(LIBA) $(LIBSO)
ctests: $(CTESTS)

$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ZKV_CPPFLAGS) $(ZKV_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/$(FLAVOUR)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	@[ -n "$(strip $(LUA_CFLAGS))" ] || { echo "no Lua $(LUA_VERSION) headers: install" \
	  "$(PKGS_LUA_$(LUA_VERSION)), or give LUA_INCDIR=/path/to/lua/include" >&2; exit 1; }
	$(CC) $(ZKV_CPPFLAGS) $(LUA_CFLAGS) $(ZKV_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(LIBA): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

$(LIBSO): $(ENGINE_OBJ)
	$(CC) -shared -Wl,-soname,libzeltkv.so.$(SOMAJOR) $(SANFLAGS) $(LDFLAGS) $^ -o $@ $(ENGINE_LIBS)
	ln -sf $(notdir $@) $(B)/libzeltkv.so.$(SOMAJOR)
	ln -sf libzeltkv.so.$(SOMAJOR) $(B)/libzeltkv.so

# the module holds the engine (no dependency on libzeltkv.so at run time)
$(MODULE): $(BINDING_OBJ) $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SANFLAGS) $(LDFLAGS) $^ -o $@ $(CJSON_LIBS) $(ENGINE_LIBS)

# C tests: against the static library, at -O1 (faster to build, still optimised)
$(B)/test/%: spec/c/%.c $(wildcard spec/c/*.h) $(HEADERS) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ZKV_CPPFLAGS) -Isrc -Ispec/c -std=c11 $(WARN) -O1 -g $(SANFLAGS) $< $(LIBA) -o $@ $(LDFLAGS) $(ENGINE_LIBS)

# the floor of a C-function store (bench/floor.c), a Lua module of its own
$(B)/bench/$(FLAVOUR)/zkvfloor.so: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(LUA_CFLAGS) -std=c11 $(WARN) -O2 -fPIC -shared $< -o $@ $(LDFLAGS)

# C benchmarks (make bench): against the static library, optimised
$(B)/bench/%: bench/%.c $(HEADERS) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ZKV_CPPFLAGS) -std=c11 $(WARN) -O2 $< $(LIBA) -o $@ $(LDFLAGS) $(ENGINE_LIBS)

-include $(shell find $(B)/obj $(B)/$(FLAVOUR)/obj -name "*.d" 2>/dev/null)

# ---- test suites -------------------------------------------------------------------
# Each mk/*.mk adds its suite's name to SUITES, its packages to PKGS_<name>, and a
# target of that name that leaves "N passed, N failed" as the last line of its logs
# in $(RESULTS). `make test` runs every suite (a failed one does not stop the others)
# through tools/suite.sh, which counts a suite that fails without reporting a failed
# test, or reports no test at all, as one failure.
# The C tests' randomized and stress loops (kills, mutations, rounds) run at their full count
# natively (make check). Under ASan, valgrind, clang, qemu and TSan they run light
# (ZKV_TEST_LIGHT=1: the same tests and checks, fewer rounds); LONG=1 (make test LONG=1,
# make valgrind LONG=1, ...) runs them at full count there too, many times longer.
LONG        ?=
TEST_LIGHT   = $(if $(filter-out 0 no,$(LONG)),,ZKV_TEST_LIGHT=1)
SUITES :=
SUITES_NET :=
include $(sort $(wildcard mk/*.mk))

deps:
	$(call need,$(sort $(PKGS_BUILD) $(foreach s,$(SUITES),$(PKGS_$(s)))))

# make test builds what several suites share first (every module of LUA_VERSIONS, the C
# libraries and tests), then runs the suites side by side, each through tools/suite.sh with its
# logs in $(RESULTS)/<suite>/ and its output printed whole when it ends (SUITE_SYNC): TEST_JOBS
# at a time (default: the CPUs), the longest first (SUITES_FIRST), and beside them, in a lane
# of their own, one after the other, the suites that start servers on 127.0.0.1 (SUITES_NET:
# nginx listens with reuseport, so two of them could share a port; they mostly wait on
# sockets and sleeps, not the CPU). TEST_JOBS=1 runs every suite one by one.
TEST_JOBS    ?= $(shell nproc 2>/dev/null || echo 1)
SUITES_FIRST := valgrind sanitize spec-all redis-test check fuzz aarch64 clang
TEST_ORDER    = $(foreach s,$(SUITES_FIRST),$(filter $(s),$(SUITES))) $(filter-out $(SUITES_FIRST),$(SUITES))
TEST_SIDE     = $(filter-out 1,$(TEST_JOBS))
TEST_NET      = $(addprefix run-,$(filter $(SUITES_NET),$(TEST_ORDER)))
TEST_CPU      = $(addprefix run-,$(if $(TEST_SIDE),$(filter-out $(SUITES_NET),$(TEST_ORDER)),$(TEST_ORDER)))

test: deps
	@rm -rf $(RESULTS); mkdir -p $(RESULTS)
	@for v in $(LUA_VERSIONS); do $(MAKE) --no-print-directory -j$(TEST_JOBS) LUA_VERSION=$$v module || exit 1; done
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) all ctests
	@start=$$(date +%s); export SUITE_SYNC=$(if $(TEST_SIDE),1); net=; \
	  $(if $(TEST_SIDE),$(if $(TEST_NET),$(MAKE) --no-print-directory -j1 $(TEST_NET) & net=$$!;)) \
	  $(MAKE) --no-print-directory -j$(TEST_JOBS) $(TEST_CPU); \
	  [ -z "$$net" ] || wait $$net; \
	  ./tools/summary.sh $(RESULTS) $$(( $$(date +%s) - start ))

.PHONY: $(addprefix run-,$(SUITES))
$(addprefix run-,$(SUITES)): run-%:
	@RESULTS=$(RESULTS) ./tools/suite.sh $* $(MAKE) --no-print-directory RESULTS=$(RESULTS)/$* $*

list-suites:
	@$(foreach s,$(SUITES),echo "$(s): $(strip $(PKGS_$(s)))";)

# ---- demo and bench ----------------------------------------------------------------
DEMO_EXAMPLES := examples/ratelimit.lua examples/lock.lua examples/session.lua examples/inventory.lua
demo:
	$(call need,$(PKGS_BUILD))
	@$(MAKE) --no-print-directory module
	@for e in $(DEMO_EXAMPLES); do echo; echo "=== $$e"; $(LMOD_ENV) $(LUA) $$e || exit 1; done

bench:
	$(call need,$(PKGS_BENCH))
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -s $(B)/bench/$(FLAVOUR)/zkvfloor.so
	@$(LMOD_ENV) ZELTKV_FLOOR=$(B)/bench/$(FLAVOUR)/zkvfloor.so $(LUA) bench/bench.lua
	@echo
	@$(LMOD_ENV) ZELTKV_SHM_DIR=$${ZELTKV_SHM_DIR:-/dev/shm} $(LUA) bench/shared.lua
	@echo
	@$(MAKE) --no-print-directory -s $(B)/bench/snapshot && $(B)/bench/snapshot
	@echo
	@$(MAKE) --no-print-directory -s $(B)/bench/holds && $(B)/bench/holds
	@echo
	@$(MAKE) --no-print-directory -s $(B)/bench/hotpath && ZELTKV_SHM_DIR=$${ZELTKV_SHM_DIR:-/dev/shm} $(B)/bench/hotpath
	@echo
	@$(MAKE) --no-print-directory LUA_VERSION=jit module
	@bash bench/nginx/run.sh
	@echo
	@bash bench/redis-driver.sh

# ---- install ---------------------------------------------------------------------
# Lua files go where the interpreter of LUA_VERSION looks under PREFIX (LuaJIT: 5.1).
PREFIX       ?= /usr/local
DESTDIR      ?=
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
DATADIR      ?= $(PREFIX)/share/zeltkv
BINDIR       ?= $(PREFIX)/bin
# bin/zkv, installed: it finds the module where this installs it, whatever the Lua's paths
ZKV_PATHS = package.path = "$(LUA_SHAREDIR)/?.lua;$(LUA_SHAREDIR)/?/init.lua;" .. package.path; \
  package.cpath = "$(LUA_LIBDIR)/?.so;" .. package.cpath
LUA_FILES    := $(patsubst lua/%,%,$(shell find lua -name '*.lua' | sort))

# zeltkv.pc names the directories relative to ${prefix} where they are under PREFIX
PC_SED = -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(ENGINE_LIBS)|' \
         -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
         -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|'

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(LUA_LIBDIR)/zeltkv
	install -m 0644 include/zeltkv.h $(DESTDIR)$(INCLUDEDIR)/zeltkv.h
	install -m 0644 $(LIBA) $(DESTDIR)$(LIBDIR)/libzeltkv.a
	install -m 0755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libzeltkv.so.$(VERSION)
	ln -sf libzeltkv.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libzeltkv.so.$(SOMAJOR)
	ln -sf libzeltkv.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libzeltkv.so
	sed $(PC_SED) tools/zeltkv.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/zeltkv.pc
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/zeltkv/core.so
	for f in $(LUA_FILES); do install -D -m 0644 lua/$$f $(DESTDIR)$(LUA_SHAREDIR)/$$f || exit 1; done
	install -d $(DESTDIR)$(DATADIR)/types
	install -m 0644 types/*.lua $(DESTDIR)$(DATADIR)/types/
	install -d $(DESTDIR)$(BINDIR)
	sed -e '1s|.*|#!/usr/bin/env $(LUA)|' -e 's|^local _ = nil -- ZKV_PATHS$$|$(ZKV_PATHS)|' bin/zkv \
	  > $(DESTDIR)$(BINDIR)/zkv && chmod 0755 $(DESTDIR)$(BINDIR)/zkv

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/zeltkv.h $(DESTDIR)$(LIBDIR)/libzeltkv.a \
	  $(DESTDIR)$(LIBDIR)/libzeltkv.so* $(DESTDIR)$(PKGCONFIGDIR)/zeltkv.pc \
	  $(DESTDIR)$(LUA_LIBDIR)/zeltkv/core.so $(addprefix $(DESTDIR)$(LUA_SHAREDIR)/,$(LUA_FILES)) \
	  $(addprefix $(DESTDIR)$(DATADIR)/,$(wildcard types/*.lua)) $(DESTDIR)$(BINDIR)/zkv
	-rmdir $(DESTDIR)$(LUA_LIBDIR)/zeltkv $(DESTDIR)$(LUA_SHAREDIR)/zeltkv $(DESTDIR)$(DATADIR)/types \
	  $(DESTDIR)$(DATADIR) 2>/dev/null

# ---- dist --------------------------------------------------------------------------
ROCKSPEC := $(firstword $(wildcard zeltkv-*.rockspec))
# The rockspec lists the sources again (LuaRocks' builtin build needs them): say so at once
# when a file of src/ is missing there or gone from src/ (the rockcheck suite fails on it)
ROCK_SRC := $(if $(ROCKSPEC),$(shell grep -o '"src/[^"]*\.c"' $(ROCKSPEC) | tr -d '"'))
ROCK_DIFF := $(filter-out $(ROCK_SRC),$(ENGINE_SRC) $(BINDING_SRC)) $(filter-out $(ENGINE_SRC) $(BINDING_SRC),$(ROCK_SRC))
ifneq ($(strip $(if $(ROCKSPEC),$(ROCK_DIFF))),)
ifeq ($(MAKELEVEL),0)
$(warning $(ROCKSPEC) and src/ differ in $(strip $(ROCK_DIFF)): update the rockspec's zeltkv.core sources)
endif
endif
dist:
	@./tools/dist.sh $(B)/dist $(ROCKSPEC)

clean:
	rm -rf $(B)
