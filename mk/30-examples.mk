# The examples run as they are, each in a private segment directory.
SUITES += examples
PKGS_examples :=

.PHONY: examples
examples: $(MODULE)
	@mkdir -p $(RESULTS)
	@pass=0; fail=0; for e in examples/*.lua examples/shdict/cron.lua; do \
	  args=; [ $$e = examples/shdict/cron.lua ] && args=--demo; \
	  d=$$(mktemp -d); log=$(RESULTS)/example-$$(basename $$e .lua).out; \
	  if $(LMOD_ENV) ZELTKV_SHM_DIR=$$d $(LUA) $$e $$args > $$log 2>&1; \
	  then pass=$$((pass+1)); echo "ok   $$e"; else fail=$$((fail+1)); echo "FAIL $$e"; \
	  cat $$log; fi; rm -rf $$d; done; \
	  echo "examples: $$pass passed, $$fail failed" | tee $(RESULTS)/examples.log; \
	  [ $$fail -eq 0 ] && [ $$pass -gt 0 ]
