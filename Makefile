# The two commands of the README, each doing all the set-up it needs:
#   make demo   the main job
#   make test   every test (C++ with ctest, Python with pytest)
# Idempotent: a second run skips what is done (stamps under build/stamps).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
BUILD_DIR := build/dev
STAMPS := build/stamps
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

APT_PACKAGES := cmake g++ ccache zlib1g-dev libeigen3-dev libgtest-dev libbenchmark-dev dataset-fashion-mnist
NATIVE_SOURCES := $(shell find kernels fakequant observers qat python/src cmake tests/cpp benchmarks examples/cpp \
	-type f \( -name '*.cc' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' \
	-o -name 'CMakeLists.txt' -o -name '*.cmake' \) 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: demo demo-bert test test-cpp test-python build bench deps clean

# The main job: ResNet-18 on Fashion-MNIST, float32 -> QAT -> INT8 file
# (QCONFIG=w4a8 or w4a4_lsq for the low-bit presets). demo-bert: BERT.
QCONFIG ?= int8
demo: build
	$(PY) examples/resnet_qat.py --qconfig $(QCONFIG)

demo-bert: build
	$(PY) examples/bert_qat.py

test: test-cpp test-python

test-cpp: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 600

test-python: build
	$(PY) -m pytest tests/python

bench: build
	$(BUILD_DIR)/benchmarks/bench_kernels --benchmark_min_time=0.2
	for a in default thp reuse; do $(PY) benchmarks/fake_quant_vs_torch.py --allocator $$a; done
	for a in default thp reuse; do $(PY) benchmarks/lsq_vs_torch.py --allocator $$a; done
	$(PY) benchmarks/observers_vs_torch.py
	$(PY) benchmarks/linear_int8_vs_torch.py
	$(PY) benchmarks/deploy_vs_torch.py

build: $(STAMPS)/build

deps: $(STAMPS)/venv

$(STAMPS)/apt: Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$(apt-cache dumpavail 2>/dev/null | head -c 1)" ]; then \
	  echo "the APT package index is empty (the BERT example's corpus reads it): apt-get update"; \
	  $(SUDO) apt-get update -qq; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: requirements-dev.txt $(STAMPS)/apt
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Editable install: scikit-build-core builds into $(BUILD_DIR) (kept, so
# rebuilds are incremental) and Python files are used from python/torchqat.
$(STAMPS)/build: $(STAMPS)/venv $(NATIVE_SOURCES)
	$(PY) -m pip install --no-build-isolation --no-deps -e . \
	  -Cbuild-dir=$(BUILD_DIR) \
	  -Ccmake.define.TORCHQAT_BUILD_TESTS=ON \
	  -Ccmake.define.TORCHQAT_BUILD_BENCHMARKS=ON
	touch $@

clean:
	rm -rf build
