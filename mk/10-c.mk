# The C tests (spec/c/): the whole C API, shared segments with threads and processes,
# random transactions, the crash soak, damaged-segment mutations.
SUITES  += check
PKGS_check :=

check: $(CTESTS)
	@mkdir -p $(RESULTS)
	@rc=0; for t in $(CTESTS); do echo "== $$t"; log=$(RESULTS)/c-$$(basename $$t).log; \
	  $$t > $$log 2>&1 || rc=1; tail -n 3 $$log; done; \
	echo "== tools/layers.sh (the engine's files call only the ones below them)"; \
	tools/layers.sh $(B)/obj > $(RESULTS)/c-layers.log 2>&1 || rc=1; tail -n 2 $(RESULTS)/c-layers.log; \
	exit $$rc
