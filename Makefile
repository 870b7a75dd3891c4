# The two commands of the README:
#   make run    build, start a local redis-server if REDIS_URL does not answer, start the stack
#   make test   build and run every test (C++ unit and integration, Python interop)
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: run test deps venv build unit interop chaos florence-base-check florence-bf16-agreement clean

run: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) --target celeriac -j $(JOBS)
	scripts/run-local.sh

test: deps venv build
	scripts/test.sh

deps:
	scripts/install-deps.sh

venv:
	scripts/setup-venv.sh

build:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

interop: build venv
	.venv/bin/python -m pytest tests/interop -q

# Issue 3's chaos test at full size (5,000 tasks, 10 worker SIGKILLs, one redis-server kill).
chaos: build venv
	CELERIAC_BIN=$(BUILD)/celeriac .venv/bin/python tests/chaos/chaos.py

# Issue 5's acceptance on the full Florence-2-base configuration with random weights (made
# locally, never committed; needs .venv-ml and, for the parsed results, Microsoft's
# processing_florence2.py: REMOTE_CODE=path/processing_florence2.py).
BASE_DIR ?= .cache/florence-2-base-random
florence-base-check: build
	test -d $(BASE_DIR) || (scripts/setup-ml-venv.sh && .venv-ml/bin/python scripts/fixtures/make_florence_base_random.py --out $(BASE_DIR) $(BASE_FLAGS))
	test -f $(BASE_DIR)/reference/parsed.json || .venv-ml/bin/python scripts/fixtures/make_florence_parsed.py --remote-code $(REMOTE_CODE) --reference $(BASE_DIR)/reference
	export CELERIAC_FLORENCE_BASE=$(abspath $(BASE_DIR)) OMP_WAIT_POLICY=PASSIVE; \
	  $(BUILD)/src/florence/celeriac_florence_model_test --gtest_filter='*Base*' && \
	  $(BUILD)/src/florence/celeriac_florence_generate_model_test --gtest_filter='Base*'

# The same on weights that bf16 really rounds (random fp32 weights as drawn, 12 pairs): fp32
# must stay token-identical; the bf16 decoder option's agreement is printed (issue 5's report).
florence-bf16-agreement:
	$(MAKE) florence-base-check BASE_DIR=.cache/florence-2-base-unrounded \
	  BASE_FLAGS="--unrounded --pairs 12"

clean:
	rm -rf $(BUILD)
