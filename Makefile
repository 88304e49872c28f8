# deeprec — GNU Make build.
#   make            CLI (build/deeprec) and library (build/libdeeprec.a)
#   make test       check-layers, then unit tests, normal build and ASan+UBSan build
#   make check-layers  includes against the layering (DESIGN.md section 2, DEPS_* below)
#   make demo       the main job on the embedded default dataset
#   make bench      benchmark programs in build/bench/
#   make fuzz       libFuzzer targets (clang), each run FUZZ_SECONDS
#   make deps       install missing Debian packages (as root) or print the command
# PORTABLE=1 disables -march=native.
# MPI=1 builds the data-parallel layer with OpenMPI (default: on when mpicc is found);
# MPI=0 builds the single-process stand-ins (docs/distributed.md).

CC      ?= gcc
BUILD   ?= build
SAN     ?= 0
PORTABLE ?= 0

# The modules in dependency order (higher first); a module's lib links with those after it.
MODULES := cli serve pipeline eval rl agent llm trm text data nn gguf base
# Per-module dependencies, used to link each module's test binary.
DEPS_base  :=
DEPS_gguf  := base
DEPS_nn    := base
DEPS_data  := gguf base
DEPS_text  := gguf base
DEPS_eval  := agent llm trm text data gguf nn base
DEPS_trm   := data nn gguf base
DEPS_llm   := text nn gguf base
DEPS_agent := llm trm text data nn gguf base
DEPS_rl    := agent llm trm text data nn gguf base
DEPS_pipeline := eval rl agent llm trm text data nn gguf base
DEPS_serve := eval agent llm trm text data nn gguf base

NATIVE := $(shell if [ "$(PORTABLE)" != 1 ] && echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null; then echo -march=native; fi)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
               -Iinclude -Isrc -fopenmp -g
ifeq ($(SAN),1)
  CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS_SAN := -fsanitize=address,undefined
else
  CFLAGS_OPT := -O3 $(NATIVE)
  LDFLAGS_SAN :=
endif
# OpenBLAS built for OpenMP (Debian libopenblas-openmp-dev): it shares our OpenMP thread
# pool, so BLAS threads never compete with spinning OpenMP workers (the pthread build
# made multi-threaded runs many times slower on a busy 2-core machine).
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_DIR  := /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_INC  := /usr/include/$(MULTIARCH)/openblas-openmp
comma := ,
BLAS_LIBS := $(if $(wildcard $(BLAS_DIR)/libopenblas.so),-L$(BLAS_DIR) -Wl$(comma)-rpath$(comma)$(BLAS_DIR)) -lopenblas
CFLAGS_BASE += $(if $(wildcard $(BLAS_INC)/cblas.h),-I$(BLAS_INC))
CFLAGS  += $(CFLAGS_BASE) $(CFLAGS_OPT)
LDLIBS  := $(BLAS_LIBS) -lmicrohttpd -lcurl -ljansson -lz -lm -fopenmp -lpthread $(LDFLAGS_SAN)

.DEFAULT_GOAL := all
# MPI: only src/base/dist.c includes mpi.h; everything links libmpi.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
  ifeq ($(shell command -v mpicc 2>/dev/null),)
    $(error MPI=1 needs mpicc: apt-get install libopenmpi-dev openmpi-bin (or make deps))
  endif
  MPI_CFLAGS := -DDR_MPI $(shell mpicc --showme:compile 2>/dev/null)
  LDLIBS += $(shell mpicc --showme:link 2>/dev/null)
endif
$(BUILD)/obj/base/dist.o: CFLAGS += $(MPI_CFLAGS)
# A switch of MPI must rebuild dist.o: the choice is recorded in a stamp it depends on.
$(BUILD)/obj/base/dist.o: $(BUILD)/mpi.$(MPI)
$(BUILD)/mpi.$(MPI):
	@mkdir -p $(dir $@) && rm -f $(BUILD)/mpi.* && touch $@

# Modules that have sources.
LIB_MODULES := $(filter-out cli,$(foreach m,$(MODULES),$(if $(wildcard src/$(m)/*.c),$(m))))
lib_of = $(BUILD)/lib/libdeeprec_$(1).a
objs_of = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(wildcard src/$(1)/*.c))
libs_for = $(foreach d,$(1),$(if $(filter $(d),$(LIB_MODULES)),$(call lib_of,$(d))))

ALL_LIB_OBJS := $(foreach m,$(LIB_MODULES),$(call objs_of,$(m)))
CLI_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(wildcard src/cli/*.c))
TEST_MODULES := $(foreach m,$(MODULES),$(if $(wildcard tests/$(m)/*.c),$(m)))
TEST_BINS := $(foreach m,$(TEST_MODULES),$(BUILD)/tests/test_$(m))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.PHONY: all test test-normal test-san demo bench fuzz fuzz-merge deps clean tests-bin check-layers
all: deps-check $(BUILD)/deeprec $(BUILD)/libdeeprec.a

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP -c $< -o $@

$(BUILD)/obj/bench/%.o: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Test fixtures shared by several modules' tests (tests/common: the tiny random LLM), linked
# into the test binaries of the modules named here, each of which links llm, text and agent.
TEST_COMMON := $(wildcard tests/common/*.c)
TEST_COMMON_USERS := agent rl serve
test_srcs_of = $(wildcard tests/$(1)/*.c) tests/harness.c $(if $(filter $(1),$(TEST_COMMON_USERS)),$(TEST_COMMON))

define MODULE_RULES
$(call lib_of,$(1)): $(call objs_of,$(1))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/tests/test_$(1): $(patsubst tests/%.c,$(BUILD)/obj/tests/%.o,$(call test_srcs_of,$(1))) $(call libs_for,$(1) $(DEPS_$(1))) Makefile
	@mkdir -p $$(dir $$@)
	$(CC) -o $$@ $$(filter %.o,$$^) -Wl,--start-group $$(filter %.a,$$^) -Wl,--end-group $(LDLIBS)
endef
$(foreach m,$(filter-out cli,$(MODULES)),$(eval $(call MODULE_RULES,$(m))))
# The CLI's tests drive $(DEEPREC_BIN) as a user would; they link only the base library.
$(BUILD)/tests/test_cli: $(patsubst tests/%.c,$(BUILD)/obj/tests/%.o,$(wildcard tests/cli/*.c) tests/harness.c) $(call libs_for,base) Makefile
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(filter %.o,$^) $(call libs_for,base) $(LDLIBS)

$(BUILD)/libdeeprec.a: $(ALL_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/deeprec: $(CLI_OBJS) $(call libs_for,$(LIB_MODULES)) Makefile
	$(CC) -o $@ $(CLI_OBJS) -Wl,--start-group $(call libs_for,$(LIB_MODULES)) -Wl,--end-group $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(call libs_for,$(LIB_MODULES)) Makefile
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< -Wl,--start-group $(call libs_for,$(LIB_MODULES)) -Wl,--end-group $(LDLIBS)

tests-bin: $(TEST_BINS) $(BUILD)/deeprec

# Includes against the layering of ../shared/DESIGN.md section 2 (and the DEPS above), then
# the checker's own test on small trees with each kind of violation.
check-layers:
	@tools/check_layers.sh . && tools/check_layers_test.sh && echo "check-layers: ok"

# The layering first; then the suite twice: optimised build and ASan+UBSan build; one summary
# line at the end. The test binaries wait passively, as deeprec and the benches do (dr_threads_prefer_passive):
# spinning OpenMP workers cost a shared machine's other jobs (and the suite) their cores.
test: deps-check check-layers
	$(MAKE) --no-print-directory tests-bin
	$(MAKE) --no-print-directory tests-bin BUILD=build/san SAN=1
	OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 DEEPREC_BIN=$(CURDIR)/build/deeprec \
	  tests/run_all.sh $(TEST_BINS) $(patsubst build/%,build/san/%,$(TEST_BINS))

bench: $(BENCH_BINS)

# ---- fuzzing (clang + libFuzzer) ----
FUZZ_SECONDS ?= 60
FUZZ_BINS := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_CFLAGS := $(CFLAGS_BASE) -O1 -g -fsanitize=fuzzer-no-link,address,undefined
FUZZ_LIB_OBJS := $(patsubst src/%.c,build/fuzz/obj/%.o,$(foreach m,$(LIB_MODULES),$(wildcard src/$(m)/*.c)))
build/fuzz/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@
build/fuzz/libdeeprec.a: $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^
# Linked through an archive so each target pulls only the objects it uses.
build/fuzz/%: fuzz/%.c build/fuzz/libdeeprec.a
	@mkdir -p $(dir $@)
	clang $(CFLAGS_BASE) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< build/fuzz/libdeeprec.a $(BLAS_LIBS) -lmicrohttpd -lcurl -ljansson -lz -lm -fopenmp
# The corpora live in fuzz/corpus/TARGET (kept in the repository); a run reads them and
# writes what it finds to build/fuzz/corpus/TARGET (the first directory given is the one
# libFuzzer adds to). `make fuzz-merge` folds new coverage back into fuzz/corpus.
# A crash, leak or sanitizer report stops the run with a non-zero status.
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/$$n- \
	    build/fuzz/corpus/$$n fuzz/corpus/$$n > build/fuzz/$$n.log 2>&1; rc=$$?; \
	  grep -E 'stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY' build/fuzz/$$n.log; \
	  [ $$rc -eq 0 ] || { echo "$$n failed (exit $$rc): build/fuzz/$$n.log"; exit 1; }; done
fuzz-merge: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  $$f -merge=1 fuzz/corpus/$$n build/fuzz/corpus/$$n 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new' || true; done

# ---- set-up ----
DEB_PACKAGES := gcc make libopenblas-openmp-dev libjansson-dev zlib1g-dev libmicrohttpd-dev libcurl4-openssl-dev
# Optional: `make deps` installs them, the build only uses them when present.
DEB_OPTIONAL := libopenmpi-dev openmpi-bin
deps:
	@tools/deps.sh $(DEB_PACKAGES)
	@tools/deps.sh $(DEB_OPTIONAL) || echo "deeprec: OpenMPI is optional (data-parallel runs, docs/distributed.md)" >&2
deps-check:
	@tools/deps.sh $(DEB_PACKAGES)

demo: all
	@tools/demo.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
