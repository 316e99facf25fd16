"""exp/lib.sh: run_seeds calls `recon train` once per seed and collects the run directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "exp" / "lib.sh"

#: Stands for `recon`: logs its arguments, creates and prints a run directory, and
#: exits with status 130 for the seed named by $FAIL_SEED.
FAKE_RECON = """#!/usr/bin/env bash
printf '%s|' "$@" >> "$CALLS"
printf '\\n' >> "$CALLS"
seed=${3#seed=}
if [ "$seed" = "${FAIL_SEED:-}" ]; then exit 130; fi
mkdir -p "$RUNS/run-$seed"
printf 'test metrics:\\n  T1 acc 90.0\\n%s\\n' "$RUNS/run-$seed"
"""


@pytest.fixture
def fake_recon(tmp_path) -> dict[str, str]:
    """Environment with the fake `recon` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "recon").write_text(FAKE_RECON)
    (bin_dir / "recon").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("SEEDS", "RUN_DIRS")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CALLS=str(tmp_path / "calls"), RUNS=str(tmp_path / "runs"))
    return env


def run_script(body: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = f"set -euo pipefail\nsource {LIB}\n{body}"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def calls(env: dict[str, str]) -> list[list[str]]:
    return [line.rstrip("|").split("|") for line in Path(env["CALLS"]).read_text().splitlines()]


def test_default_seeds(fake_recon):
    result = run_script('run_seeds out/table configs/x.yaml a=1 "b=two words"\nprintf "%s\\n" "${RUN_DIRS[@]}"',
                        fake_recon)
    assert result.returncode == 0, result.stderr
    runs = fake_recon["RUNS"]
    assert result.stdout.splitlines() == [f"{runs}/run-0", f"{runs}/run-1", f"{runs}/run-2"]
    assert calls(fake_recon) == [
        ["train", "configs/x.yaml", f"seed={seed}", "output_dir=out/table", "a=1", "b=two words"]
        for seed in (0, 1, 2)
    ]
    # The metrics that recon train printed stay visible, on standard error.
    assert result.stderr.count("T1 acc 90.0") == 3


def test_seeds_variable_and_two_configs(fake_recon):
    fake_recon["SEEDS"] = "7 9"
    result = run_script("run_seeds out a.yaml\nrun_seeds out b.yaml\necho ${#RUN_DIRS[@]}", fake_recon)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"
    assert [(call[1], call[2]) for call in calls(fake_recon)] == [
        ("a.yaml", "seed=7"), ("a.yaml", "seed=9"), ("b.yaml", "seed=7"), ("b.yaml", "seed=9"),
    ]


def test_failed_run_stops_loop(fake_recon):
    fake_recon["FAIL_SEED"] = "1"
    result = run_script('run_seeds out a.yaml || echo "status $? runs ${#RUN_DIRS[@]}"', fake_recon)
    assert result.stdout.strip() == "status 130 runs 1"
    assert "run_seeds: recon train a.yaml seed=1 failed with exit status 130" in result.stderr
    assert len(calls(fake_recon)) == 2


def test_usage_error(fake_recon):
    result = run_script('run_seeds out || echo "status $?"', fake_recon)
    assert result.stdout.strip() == "status 2"
    assert "usage: run_seeds OUTDIR CONFIG [key=value ...]" in result.stderr
