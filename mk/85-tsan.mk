# ThreadSanitizer (clang) over the C tests where threads share a store: every field they
# touch is checked for access outside the lock, not only the results. The lock-free
# seqlock reads are the one suppression (spec/c/tsan.supp says why).
SUITES += tsan
PKGS_tsan := clang libclang-rt-14-dev

.PHONY: tsan
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer -Wno-unknown-warning-option
# test:selection (comma-separated test names, or parts of them; none = every test of the
# file): every C test that starts threads on a store
TSAN_RUNS := test_threads: \
             test_shared:shared_four_threads,shared_thread_dies,shared_two_handles,shared_nested_handles,shared_txn_isolation \
             test_engine:threadsafe_memory_store \
             test_segment_life:failure_detail_is_per_thread,fork_while_a_thread_holds

$(B)/tsan/test/%: spec/c/%.c spec/c/harness.h $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(ZKV_CPPFLAGS) -Isrc -Ispec/c -std=c11 $(WARN) -O1 -g $(TSAN_FLAGS) $< \
	  $(ENGINE_SRC) -o $@ $(ENGINE_LIBS)

tsan: $(foreach r,$(TSAN_RUNS),$(B)/tsan/test/$(firstword $(subst :, ,$(r))))
	$(call need,$(PKGS_tsan))
	@mkdir -p $(RESULTS)
	@export TSAN_OPTIONS="suppressions=$(CURDIR)/spec/c/tsan.supp halt_on_error=1 exitcode=66" \
	  $(TEST_LIGHT); rc=0; \
	for r in $(TSAN_RUNS); do t=$${r%%:*}; sel=$$(echo $${r#*:} | tr , ' '); \
	  echo "== tsan $$t $$sel"; log=$(RESULTS)/tsan-$$t.log; \
	  $(B)/tsan/test/$$t $$sel > $$log 2>&1 || { rc=1; grep -A30 'WARNING: ThreadSanitizer' $$log | head -60; }; \
	  tail -n 1 $$log; done; exit $$rc
