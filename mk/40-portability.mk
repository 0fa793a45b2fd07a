# Portability: the whole build with clang (warnings as errors), its C tests and the Lua
# 5.4 specs on the clang module; the engine and its C tests cross-built for aarch64 and
# run under qemu-aarch64 (the lock, the atomics and the lock-free reads as Arm code: the
# acquire/release instructions and barriers the compiler emits for them). qemu-user on an
# x86-64 host runs that code on the host's stronger (TSO) memory order, so it cannot show
# every reordering an Arm CPU would make: real Arm hardware remains the full test.
SUITES += clang aarch64
PKGS_clang   := clang lua-busted
PKGS_aarch64 := gcc-aarch64-linux-gnu qemu-user

.PHONY: clang aarch64
CLANG_B := $(B)/clang
clang:
	$(call need,$(PKGS_clang))
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory B=$(CLANG_B) CC=clang WERROR=1 all ctests
	@rc=0; for t in $(patsubst $(B)/%,$(CLANG_B)/%,$(CTESTS)); do echo "== clang $$t"; \
	  log=$(RESULTS)/clang-$$(basename $$t).log; $(TEST_LIGHT) $$t > $$log 2>&1 || rc=1; \
	  tail -n 1 $$log; done; \
	  ZELTKV_CPATH='$(CLANG_B)/$(FLAVOUR)/?.so' LUA=$(LUA) ./spec/run.sh > $(RESULTS)/clang-spec.log 2>&1 || \
	  { rc=1; grep -v '^ok ' $(RESULTS)/clang-spec.log | tail -n 40; }; \
	  echo "clang specs ($(FLAVOUR)): $$(tail -n 1 $(RESULTS)/clang-spec.log)"; exit $$rc

# The cross compiler does not search /usr/include: xxhash.h (header only) is given alone.
AARCH64_B  := $(B)/aarch64
# which C tests run under qemu (all by default; `make aarch64 AARCH64_TESTS=test_shared` for one)
AARCH64_TESTS ?= $(notdir $(CTESTS))
AARCH64_CC ?= aarch64-linux-gnu-gcc
QEMU_AARCH64 ?= qemu-aarch64
# An address-space limit for the tests under qemu: a shared segment reserves address space
# for its largest size (ZKV_MAX_SEGMENT, 1 TiB; arena.c map_segment), and qemu-user keeps
# flags for every page of a guest mapping: each open took 30 s. Under the limit the
# reservation falls back to a smaller one (as under any rlimit; 6 GiB: 2 GiB), and an open takes 0.2 s.
AARCH64_VMEM_KB ?= 6291456
aarch64:
	$(call need,$(PKGS_aarch64) libxxhash-dev)
	@mkdir -p $(RESULTS) $(AARCH64_B)/inc
	@ln -sf $$(echo '#include <xxhash.h>' | $(CC) -M -E -x c - | grep -o '[^ ]*/xxhash.h' | head -n 1) \
	  $(AARCH64_B)/inc/xxhash.h
	@$(MAKE) --no-print-directory B=$(AARCH64_B) CC=$(AARCH64_CC) WERROR=1 \
	  CPPFLAGS='-I$(AARCH64_B)/inc $(CPPFLAGS)' LDFLAGS='-static $(LDFLAGS)' ctests
	@ulimit -v $(AARCH64_VMEM_KB); \
	  rc=0; for t in $(addprefix $(AARCH64_B)/test/,$(AARCH64_TESTS)); do echo "== qemu-aarch64 $$t"; \
	  readelf -h $$t | grep -q AArch64 || { echo "$$t is not an aarch64 binary"; rc=1; }; \
	  log=$(RESULTS)/aarch64-$$(basename $$t).log; $(TEST_LIGHT) $(QEMU_AARCH64) $$t > $$log 2>&1 || rc=1; \
	  tail -n 1 $$log; done; exit $$rc
