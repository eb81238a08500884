# mycni: build, install, test, demo.  Everything lands in build/ unless installed.
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PREFIX     ?= /opt/mycni
CNI_BIN    ?= /opt/cni/bin
DESTDIR    ?=
ARCH_INC   := /usr/include/$(shell uname -m)-linux-gnu
CLANG      ?= clang
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I$(ARCH_INC) -Ibpf

BPF_SRC    := $(wildcard bpf/*.bpf.c)
BPF_OBJ    := $(patsubst bpf/%.bpf.c,build/bpf/%.bpf.o,$(BPF_SRC))
PY_SRC     := $(shell find libcni plugins -name '*.py' 2>/dev/null)

.PHONY: all deps build bpf bins driver venv install uninstall lint test unit demo \
	conformance bench clean

all: build

# Debian packages (clang, bpftool, go, the reference plugins...); a no-op when present.
deps:
	.ci/install-deps

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

build: bpf bins

bpf: $(BPF_OBJ)
build/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# One bundle, three executables sharing one _internal directory (a one-directory
# build: a one-file build unpacks itself on every CNI call).
bins: build/bin/.stamp
build/bin/.stamp: $(PY_SRC) mycni.spec $(VENV)/.stamp
	$(VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN \
		--distpath build/dist --workpath build/pyinstaller mycni.spec
	rm -rf build/bin && mkdir -p build/bin
	for exe in vxlan mycni-ipam ebpf-redirect; do \
		ln -s ../dist/mycni/$$exe build/bin/$$exe; done
	touch $@

driver: build/cnidriver
build/cnidriver: tests/driver/main.go
	@mkdir -p build
	cd tests/driver && GO111MODULE=off GOPATH=/usr/share/gocode \
		go build -o ../../build/cnidriver .

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bpf $(DESTDIR)$(CNI_BIN)
	rm -rf $(DESTDIR)$(PREFIX)/lib/mycni
	cp -a build/dist/mycni $(DESTDIR)$(PREFIX)/lib/mycni
	install -m 0644 $(BPF_OBJ) $(DESTDIR)$(PREFIX)/bpf/
	for exe in vxlan mycni-ipam ebpf-redirect; do \
		ln -sfn $(PREFIX)/lib/mycni/$$exe $(DESTDIR)$(CNI_BIN)/$$exe; done

uninstall:
	for exe in vxlan mycni-ipam ebpf-redirect; do rm -f $(DESTDIR)$(CNI_BIN)/$$exe; done
	rm -rf $(DESTDIR)$(PREFIX)

# mypy cannot follow the editable install's mapping of plugins/<dir> to a package
# name; the pyinstaller spec stages the same import-name links in build/pysrc.
lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check libcni plugins tests
	$(VENV)/bin/ruff format --check libcni plugins tests
	mkdir -p build/pysrc
	ln -sfn ../../libcni build/pysrc/libcni
	ln -sfn ../../plugins/vxlan build/pysrc/mycni_vxlan
	ln -sfn ../../plugins/ipam build/pysrc/mycni_ipam
	ln -sfn ../../plugins/ebpf-redirect build/pysrc/mycni_ebpf_redirect
	MYPYPATH=build/pysrc $(VENV)/bin/mypy -p libcni -p mycni_vxlan -p mycni_ipam \
		-p mycni_ebpf_redirect

unit: $(VENV)/.stamp
	$(VENV)/bin/pytest -q tests/unit

test: deps build driver lint
	$(VENV)/bin/pytest -q tests

demo: deps build driver
	$(PY) -m tests.demo

# The CNI conformance runner on our three plugins and on the reference host-local
# and bridge (their known gaps are expected failures in their profiles). Every table
# is printed; the target fails if any plugin had an unexpected result.
CONFORMANCE := vxlan:build/bin/vxlan mycni-ipam:build/bin/mycni-ipam \
	ebpf-redirect:build/bin/ebpf-redirect host-local:/usr/lib/cni/host-local \
	bridge:/usr/lib/cni/bridge
conformance: build
	@status=0; for entry in $(CONFORMANCE); do \
		profile=$${entry%%:*}; plugin=$${entry#*:}; \
		echo "== $$profile"; \
		$(PY) -m tests.conformance --profile $$profile --plugin $$plugin \
			--config tests/conformance/templates/$$profile.json || status=1; \
		echo; \
	done; exit $$status

# Not part of `make test`: the datapath and the control plane next to the reference
# plugins, in one run, on throwaway namespaces; results (JSON, Markdown, PNG) in
# build/bench/<date-time>/. Options through BENCH_ARGS, e.g. BENCH_ARGS='--reps 5';
# `$(PY) -m tests.bench --help` lists them. Wants a quiet machine.
BENCH_ARGS ?=
bench: deps build driver
	$(PY) -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf build
