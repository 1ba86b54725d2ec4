"""Every failure a user can cause is one line naming what was wrong and the fix, a non-zero exit, and nothing
lost or half-written (issue 9, "Failures")."""

from __future__ import annotations

import pytest
import torch


def one_line(res, *needles: str) -> str:
    """The single stderr line of a failed CLI run, checked to say each needle."""
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert res.code == 2, res
    assert len(lines) == 1 and lines[0].startswith("vitbench: error:"), res.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BENCH = ("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "10")


@pytest.mark.parametrize("device, gpus, needles", [
    ("nonsense", 0, ("'nonsense' is not a device", "cpu, cuda or cuda:N")),
    ("meta", 0, ("meta tensors hold shapes but no data",)),
    ("cuda", 0, ("no CUDA GPU is usable here", "--device cpu")),
    ("cuda:7", 0, ("no CUDA GPU is usable here",)),
    ("cuda:7", 2, ("this machine has 2 CUDA GPUs (cuda:0 to cuda:1)",)),
    ("xla", 0, ("runs on cpu, cuda or mps",)),
])
def test_bad_device_is_one_line(cli, monkeypatch, isolated_home, device, gpus, needles):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    one_line(cli(*BENCH, "--device", device), *needles)
    assert not (isolated_home / "results.sqlite").exists()  # refused before anything was stored


def test_compare_with_no_local_rows_does_not_suggest_allow_mismatch(cli):
    res = cli("leaderboard", "--compare", "robustbench-imagenet", "--allow-mismatch")
    line = one_line(res, "no local results")
    assert "--allow-mismatch" not in line
