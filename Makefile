# The two commands a new user runs: `make demo` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
DEMO_OUT ?= out/demo

.PHONY: deps configure build test test-torch2 test-sanitize fuzz demo format clean

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The same tests built against PyPI's PyTorch 2.x (CUDA LibTorch, NCCL), in build-torch2.
test-torch2: deps
	bash scripts/test-torch2.sh build-torch2

# The tests built with ASan + UBSan, in build-sanitize, but for the long training ones.
test-sanitize: deps
	bash scripts/test-sanitizers.sh build-sanitize

# libFuzzer with ASan + UBSan on the COCO, results, config and checkpoint readers, FUZZ_SECONDS
# (default 60) each.
fuzz:
	bash scripts/fuzz.sh build-fuzz

demo: build
	bash scripts/demo.sh $(BUILD_DIR)/aligndetr $(DEMO_OUT)

format:
	find src include tests bench -name '*.cpp' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
