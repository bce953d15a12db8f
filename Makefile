# The two commands of the README. Both set up .venv first (seconds when it is
# already up to date).
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup_env.sh

ROBOT ?= koch_follower
STRATEGY ?= base
# A checkpoint directory or Hub id; empty: a tiny random-weight ACT.
POLICY ?=

demo: setup
	@$(PY) -m rollout_ros.demo --robot $(ROBOT) --strategy $(STRATEGY) $(if $(POLICY),--policy '$(POLICY)') $(DEMO_ARGS)

test: setup lint
	@$(PY) -m pytest -q rollout_ros/test

# Settings in pyproject.toml; `ruff format` and `ruff check --fix` repair most findings.
lint: setup
	@$(PY) -m ruff check rollout_ros bench
	@$(PY) -m ruff format --check rollout_ros bench

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .colcon .demo
