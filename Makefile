# Each target builds its own virtual environment, so both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Single-threaded BLAS/FFT by default: benchmarks compare one core with one core.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

ASR ?= ../shared/data/asr/manifest.tsv
FOLDS := .cache/kltdct-folds
FOLD_TABLES := $(FOLDS)/whisper-kltdct16-v1-oof0.npz $(FOLDS)/whisper-kltdct16-v1-oof1.npz

.PHONY: demo test bench bench-board lint clean rd tables chromium web-assets web-screenshots emotion-model emotion-eval transfer net-tools

$(VENV)/.stamp-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$*]"
	touch $@

# The Numba kernels' plan and cache first (measured and compiled once per CPU; later runs only check them).
demo: $(VENV)/.stamp-fast,plot,emotion
	$(PY) -m amser_dsp.backends.variants --warm
	$(PY) -m amser_dsp.demo

test: $(VENV)/.stamp-fast,emotion,test chromium net-tools
	$(PY) -m pytest -q
	# Every benchmark's output checks, untimed (anchors that are not installed skip with the reason).
	$(PY) -m pytest -q -ra benchmarks --benchmark-disable -p no:cacheprovider

# Debian's Chromium for the web page's browser tests (tests/web): installed only when missing and only as
# root; otherwise (or if apt cannot reach its mirror) those tests are skipped and say why.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt) for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium: the browser tests will be skipped"; \
	else echo "chromium is missing (apt-get install chromium as root): the browser tests will be skipped"; fi

# The page's table file, from the package's codec tables (committed; a test checks it is up to date).
web-assets: $(VENV)/.stamp-server
	$(PY) -m amser_dsp.web.tables

# The screenshots of docs/web.md, taken by the end-to-end browser test.
web-screenshots: $(VENV)/.stamp-fast,emotion,test chromium
	AMSER_WEB_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/web/test_page_service.py

# The network lab's tools (tests/server/test_transfer_link.py, make transfer) and HAProxy (tests/server/test_replicas.py):
# installed with apt only when missing and only as root; elsewhere those tests skip and say why.
NET_TOOLS ?= ip:iproute2 tc:iproute2 nft:nftables haproxy:haproxy
net-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for t in $(NET_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
		if [ -n "$$missing" ]; then echo "apt-get install$$missing"; apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	fi

# docs/transfer.md: upload time, bytes on the wire and energy over shaped links (needs root for network
# namespaces; about 45 min). BENCH_LOCK=/path makes each run hold that lock (flock) while it times.
transfer: $(VENV)/.stamp-fast,server,test
	@[ "$$(id -u)" = 0 ] || { echo "make transfer needs root (it creates network namespaces): sudo make transfer"; exit 2; }
	$(MAKE) net-tools NET_TOOLS="ip:iproute2 tc:iproute2 nft:nftables ffmpeg:ffmpeg"
	PY=$(PY) benchmarks/transfer/sweep.sh

bench: $(VENV)/.stamp-fast,bench,emotion,whisper-base
	mkdir -p out
	$(PY) -m pytest benchmarks -q --benchmark-json=out/bench.json
	$(PY) benchmarks/report.py out/bench.json
	# Per Whisper model: load time, memory, real-time factor from features, service throughput (docs/models.md).
	$(PY) benchmarks/models.py --json out/models.json

# The board benchmark: short clips and streaming blocks, no torch; anchors only where they install.
bench-board: $(VENV)/.stamp-bench-board
	-$(PIP) install --quiet asrfront kaldi-native-fbank || echo "bench-board: anchors not installable here; they will be skipped"
	$(PY) benchmarks/board.py --json out/board.json

# The shipped KLT-DCT tables, trained on every clip of $(ASR) (about 6 min).
tables: | $(VENV)/.stamp-numba,plot,eval
	$(VENV)/bin/amser train-codec --manifest $(ASR) --out src/amser_dsp/codec/data/kltdct/whisper-kltdct16-v1.npz

# Tables trained without one speaker-disjoint fold, for out-of-fold evaluation.
$(FOLDS)/whisper-kltdct16-v1-oof%.npz: | $(VENV)/.stamp-numba,plot,eval
	$(VENV)/bin/amser train-codec --manifest $(ASR) --out $@ --name whisper-kltdct16-v1-oof$* --exclude-fold $*/2

# docs/rd.md and docs/img/rd.png: WER against kbps for every codec family, Opus included
# (needs ffmpeg for Opus: apt-get install ffmpeg; transcripts are cached in .cache/eval).
rd: $(VENV)/.stamp-numba,plot,eval $(FOLD_TABLES)
	mkdir -p out
	$(PY) -m amser_dsp.cli eval-asr --manifest $(ASR) --fold-tables $(FOLD_TABLES) \
		--markdown docs/rd.md --plot docs/img/rd.png --json out/rd.json

EMOTION ?= ../shared/data/emotion/manifest.tsv
# The packaged emotion model (src/amser_dsp/server/emotion/data/emotion-v2.pt; encoder layers cached in .cache/emotion).
emotion-model: $(VENV)/.stamp-fast,emotion
	$(VENV)/bin/amser train-emotion --config src/amser_dsp/server/emotion/data/emotion-v2.json

# docs/emotion.md and docs/img/emotion-confusion.png: the packaged model on held-out speakers, codec sweep, ablations.
emotion-eval: $(VENV)/.stamp-fast,plot,emotion
	$(VENV)/bin/amser eval-emotion --protocol emobox --manifest $(EMOTION) --json docs/data/emotion-emobox.json
	$(VENV)/bin/amser eval-emotion --manifest $(EMOTION) --markdown docs/emotion.md --plot docs/img/emotion-confusion.png --emobox-json docs/data/emotion-emobox.json

# ruff, then mypy with the settings of pyproject.toml ([tool.mypy]: 0 errors on src/, the core with the strict flags).
lint: $(VENV)/.stamp-fast,emotion,test,lint
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis .mypy_cache
