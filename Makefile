# product-photo-api - one hand-written GNU Makefile.
#
#   make              build build/product-photo-api and build/kie-sim (release, -O2)
#   make run          run the server on :8000 (reads .env)
#   make sim          run the server and the KIE simulator together (no KIE key needed)
#   make test         unit tests + end-to-end tests (+ S3, browser, infra suites)
#   make test-asan    the same tests against an AddressSanitizer+UBSan build
#   make test-valgrind  unit + end-to-end tests under valgrind
#   make bench        the benchmark (see bench/README.md)
#   make fuzz         libFuzzer targets, FUZZ_SECONDS each
#   make deps         install every build and test dependency (Debian 12, needs root)
#   make deps-build   install only what building needs (used by the Dockerfile)
#   make lint         banned-call check
#
# Each build type has its own directory (build/obj-release, build/obj-asan), so
# objects never mix. V=1 shows the commands.

BUILD ?= release
CC ?= cc
PKGS := libmicrohttpd libcurl libcjson vips sqlite3
PKG_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN := -Wall -Wextra -Werror -Wshadow -Wconversion -Wno-sign-conversion -Wformat=2 -Wvla
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ibuild/gen $(PKG_CFLAGS) -MMD -MP -DPPA_HAVE_S3
LIBS := $(PKG_LIBS) -luuid -lcrypto -lz -lpthread -lm

ifeq ($(BUILD),asan)
  OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  BIN := build/asan
else ifeq ($(BUILD),debug)
  OPT := -O0 -g
  BIN := build/debug
else
  OPT := -O2 -g
  BIN := build
endif
OBJ := build/obj-$(BUILD)
CFLAGS := $(CFLAGS_BASE) $(OPT) $(EXTRA_CFLAGS)
LDFLAGS := $(OPT)

ifeq ($(V),1)
  Q :=
else
  Q := @
endif

SRCS := $(wildcard src/*.c)
LIB_SRCS := $(filter-out src/main.c $(EXCLUDE),$(SRCS))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(OBJ)/%.o) $(OBJ)/web_assets.o
SIM_SRCS := $(wildcard tools/kie-sim/*.c)
SIM_OBJS := $(SIM_SRCS:tools/kie-sim/%.c=$(OBJ)/sim/%.o)
UNIT_TESTS := $(patsubst tests/unit/test_%.c,$(BIN)/test_%,$(wildcard tests/unit/test_*.c))
WEB_FILES := web/index.html web/core.js web/send.js web/setup.js web/credits.js web/batch.js web/app.js web/app.css docs/openapi.json

PYTHON := /usr/bin/python3

.PHONY: check fuzz-ci all run sim test test-unit test-e2e test-sim test-s3 test-browser test-infra test-openapi test-asan \
        test-valgrind bench fuzz deps deps-build lint clean image test-image

all: $(BIN)/product-photo-api $(BIN)/kie-sim

$(BIN)/product-photo-api: $(OBJ)/main.o $(LIB_OBJS) | $(BIN)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BIN)/kie-sim: $(SIM_OBJS) | $(BIN)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BIN)/test_%: tests/unit/test_%.c $(LIB_OBJS) | $(BIN)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $^ $(LIBS)

# The S3 task store against a running S3 server (tests/s3/run.sh starts s3rver).
$(BIN)/taskstore_live: tests/s3/taskstore_live.c $(LIB_OBJS) | $(BIN)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $^ $(LIBS)

$(OBJ)/%.o: src/%.c | $(OBJ)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(OBJ)/sim/%.o: tools/kie-sim/%.c | $(OBJ)/sim
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The web page is built into the binary.
build/embed: tools/embed.c | build
	$(Q)$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ $<

build/gen/web_assets.c: build/embed $(WEB_FILES) | build/gen
	@echo "  EMBED   $(WEB_FILES)"
	$(Q)build/embed $@ $(WEB_FILES)

$(OBJ)/web_assets.o: build/gen/web_assets.c | $(OBJ)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

build build/gen $(OBJ) $(OBJ)/sim:
	$(Q)mkdir -p $@
ifneq ($(BIN),build)
$(BIN):
	$(Q)mkdir -p $@
endif

-include $(wildcard $(OBJ)/*.d $(OBJ)/sim/*.d)

run: all
	$(BIN)/product-photo-api serve

# The whole flow without a KIE account: the simulator on :8001, the server on
# :8000 pointed at it (see README "Try it without a KIE key").
sim: all
	tools/run-sim.sh $(BIN)

# ---- tests ------------------------------------------------------------------

test: test-unit test-e2e test-sim test-s3 test-browser test-infra test-openapi

test-unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $(VALGRIND) $$t; done

test-e2e: all
	PPA_BIN=$(abspath $(BIN))/product-photo-api KIE_SIM_BIN=$(abspath $(BIN))/kie-sim PPA_VALGRIND="$(VALGRIND)" \
	  $(PYTHON) -m pytest -q $(PYTEST_ARGS) tests/e2e

test-sim: all
	KIE_SIM=$(abspath $(BIN))/kie-sim bash tests/sim/test_kie_sim.sh

test-s3: all $(BIN)/taskstore_live
	PPA_BIN=$(abspath $(BIN))/product-photo-api KIE_SIM_BIN=$(abspath $(BIN))/kie-sim \
	  TASKSTORE_LIVE=$(abspath $(BIN))/taskstore_live bash tests/s3/run.sh

test-browser: all
	PPA_BIN=$(abspath $(BIN))/product-photo-api KIE_SIM_BIN=$(abspath $(BIN))/kie-sim bash tests/browser/run.sh

test-infra: all
	PPA_BIN=$(abspath $(BIN))/product-photo-api bash tests/infra/run.sh

# The document the binary serves, linted with Redocly's recommended rules (npm @redocly/cli).
test-openapi: all
	PPA_BIN=$(abspath $(BIN))/product-photo-api bash tests/openapi/run.sh

test-asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(MAKE) BUILD=asan test-unit test-e2e test-sim test-s3

# Everything CI runs (the README's test command is `make deps && make check`).
check: lint test test-image test-asan test-valgrind fuzz-ci

VALGRIND_CMD := valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --track-fds=no
# VIPS_NOVECTOR=1: libvips' SIMD paths are code ORC generates at run time,
# which valgrind cannot follow (false invalid reads, "lost" buffers); the C
# paths compute the same images. JSIMD_FORCENONE=1: the same for libjpeg-turbo's
# SIMD encoder, whose vector reads past a row's end show as uninitialised
# values in jpeg_write_scanlines for some widths (the C path reports nothing).
test-valgrind:
	VIPS_NOVECTOR=1 JSIMD_FORCENONE=1 $(MAKE) BUILD=debug VALGRIND="$(VALGRIND_CMD)" PYTEST_ARGS="-n 2" test-unit test-e2e

bench: all
	bash bench/run.sh

FUZZ_SECONDS ?= 60
fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# CI: replay the kept crashing inputs, then fuzz each target for 20 s (7 targets, 2 at a time; `make fuzz` runs longer).
fuzz-ci:
	bash tests/fuzz/regress.sh
	FUZZ_JOBS=2 bash tests/fuzz/run.sh 20

# ---- container image (tests/container/README.md) ---------------------------------

# The Dockerfile built offline with buildah into build/image (base images made with debootstrap, a stand-in
# for the Lambda Web Adapter stage), exported as build/image/product-photo-api.tar; prints the sizes.
image:
	bash tests/container/image.sh build

# Dockerfile/compose checks, then the image run like `docker run` and like Lambda (KIE simulator from this build).
test-image: all image
	KIE_SIM_BIN=$(abspath $(BIN))/kie-sim bash tests/container/run.sh

# ---- dependencies (Debian 12) -------------------------------------------------

BUILD_DEPS := build-essential pkg-config libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev uuid-dev \
  libssl-dev zlib1g-dev libvips-dev libsqlite3-dev
TEST_DEPS := curl ca-certificates python3 python3-pytest python3-pytest-xdist valgrind clang libclang-rt-14-dev awscli fonts-liberation \
  chromium nginx-light wrk python3-fastapi python3-uvicorn python3-multipart python3-httpx \
  libvips-tools libheif-examples libimage-exiftool-perl python3-pil imagemagick time bc zip
# make image / make test-image: buildah (chroot isolation, no daemon), debootstrap (base images), ip, YAML for compose
IMAGE_DEPS := buildah debootstrap iproute2 python3-yaml

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

deps-build:
	$(APT) update
	$(APT) install -y --no-install-recommends $(BUILD_DEPS)

deps:
	$(APT) update
	$(APT) install -y --no-install-recommends $(BUILD_DEPS) $(TEST_DEPS) $(IMAGE_DEPS)
	command -v node >/dev/null && command -v npm >/dev/null || \
	  $(APT) install -y --no-install-recommends nodejs npm

lint:
	@! grep -nE '\b(sprintf|strcpy|strcat|atoi|atol|gets|strtok|system)\(' src/*.c tools/kie-sim/*.c \
	  || (echo "lint: banned call"; exit 1)
	@echo "lint: ok"

clean:
	rm -rf build
