# cnid's tasks. Run them through ./just, which installs what they need first.
#   ./just test    every tier: lint, unit + host, VM (what CI runs)
#   ./just lab     the multi-node lab (containerlab/cnid.clab.yml): up, demo, summary

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() / ".venv/bin" + ":" + env_var("PATH")

logs := "build/test-logs"

default:
    @{{just_executable()}} --list --justfile {{justfile()}}

# Build the static C plugin into build/cnid-plugin.
build:
    make -C plugin_go_free

# Build, then install the plugin to /opt/cni/bin (for a real node; tests never need this).
install-plugin: build
    install -D -m 0755 build/cnid-plugin /opt/cni/bin/cnid-plugin

lint:
    .venv/bin/ruff check cnid tests testbed bench
    .venv/bin/mypy
    .venv/bin/lint-imports

# Unit and host tiers (no VRF needed).
test-fast: build && (_check-ran logs / "fast.log")
    mkdir -p {{logs}}
    .venv/bin/pytest -m "not vrf" tests -q --durations=15 2>&1 | tee {{logs}}/fast.log

# The VRF tier, inside one virtme-ng VM running Debian's kernel.
test-vm: build && (_check-ran logs / "vm.log")
    mkdir -p {{logs}}
    .venv/bin/python -m testbed.vm -- .venv/bin/pytest -m vrf tests/vm -q --durations=0 2>&1 | tee {{logs}}/vm.log

# Every tier; each fails on a failure, on zero tests passed, and on skipped tests.
test: lint test-fast test-vm

# CNI ADD/DEL latency, cnid against bridge+host-local, in the VM tier (VRF needed).
bench: build
    .venv/bin/python -m testbed.vm -- .venv/bin/python -m bench

# The lab benchmarks, one VM: bring-up, EVPN convergence, packets lost in a daemon restart.
bench-lab: build
    mkdir -p build/bench
    .venv/bin/python -m testbed.vm -- bash -euo pipefail -c '.venv/bin/python -m bench lab_bringup && .venv/bin/python -m bench lab_convergence && .venv/bin/python -m bench lab_restart' 2>&1 | tee build/bench/lab.txt

# The single-node demo: one node, two pods, pings (in the VM tier).
demo: build
    .venv/bin/python -m testbed.vm -- .venv/bin/python -m testbed.demo

# ./just lab [up] | down | shell NODE | summary | run, and -t FILE for another topology
# (-t containerlab/cnid-ebgp.clab.yml: two racks behind eBGP leaves, spines, a routed underlay).
# Where the kernel has no VRF device the lab runs in the VM tier and ends with it
# (containerlab/README.md, "Two ways to run it").
# The lab (containerlab/cnid.clab.yml): up, demo CRs, pods on every node, the summary.
lab *args: build
    .venv/bin/python -m testbed.lab {{args}}

# Fail unless the pytest run logged in LOG passed >0 tests and none failed, errored or skipped.
_check-ran log:
    #!/usr/bin/env bash
    set -euo pipefail
    summary=$(grep -E '^(=+ )?(no tests ran|[0-9]+ [a-z]+).* in [0-9.]+s( \([0-9:]+\))?( =+)?$' '{{log}}' | tail -n1 || true)
    count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 || true; }
    passed=$(count passed) failed=$(count failed) errors=$(count 'errors?') skipped=$(count skipped)
    if [[ -z $summary ]]; then
        echo "{{log}}: no pytest summary line: the tier did not run to the end" >&2; exit 1
    fi
    if [[ -z $passed || $passed -eq 0 ]]; then
        echo "{{log}}: no test passed ($summary)" >&2; exit 1
    fi
    if [[ -n $failed || -n $errors ]]; then
        echo "{{log}}: failures ($summary)" >&2; exit 1
    fi
    if [[ -n $skipped ]]; then
        echo "{{log}}: $skipped skipped: a skipped test proves nothing ($summary)" >&2; exit 1
    fi
    echo "{{log}}: ok ($summary)"
