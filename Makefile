# The two commands of the README:
#   make run    build, start a local redis-server if REDIS_URL does not answer, start the stack
#   make test   build and run every test (C++ unit and integration, Python interop)
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: run test deps venv build unit interop chaos clean

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

clean:
	rm -rf $(BUILD)
