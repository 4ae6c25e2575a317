"""The soak's summary: RSS at the load's start, middle and end, idle, and last-half growth."""

from __future__ import annotations

import argparse
import os

import pytest

from bench.soak import Sample, add_soak_arguments, rss_mb, soak_arguments, summarize


def _sample(at: float, rss: float, loaded: bool = True) -> Sample:
    return Sample(at, loaded, rss, 10.0, 12.0, 10.0, 0.0)


def test_the_summary_takes_start_middle_end_and_idle() -> None:
    samples = [_sample(0, 100), _sample(50, 200), _sample(100, 210),
               _sample(160, 150, loaded=False)]
    figures = summarize(samples, 100)
    assert (figures["rss_start_mb"], figures["rss_middle_mb"], figures["rss_end_mb"],
            figures["rss_idle_mb"], figures["rss_peak_mb"]) == (100, 200, 210, 150, 210)
    assert figures["last_half_growth_pct"] == 5.0
    assert (figures["beyond_stores_middle_mb"], figures["beyond_stores_end_mb"]) == (188, 198)
    assert figures["last_half_growth_beyond_stores_pct"] == 5.3
    assert figures["memtables_end_mb"] == 10.0 and figures["block_cache_idle_mb"] == 12.0


def test_the_soak_options_default_to_the_issues_load() -> None:
    parser = argparse.ArgumentParser()
    add_soak_arguments(parser)
    options = soak_arguments(parser, parser.parse_args([]))
    assert (options["soak_seconds"], options["soak_idle_seconds"], options["soak_users"],
            options["soak_rate"]) == (600.0, 60.0, 40, 60.0)
    given = soak_arguments(parser, parser.parse_args(
        ["--soak-seconds", "30", "--soak-setting", "SHOP_STORE_WRITE_BUFFER_MB=64"]))
    assert given["soak_seconds"] == 30 and given["soak_settings"] == (
        ("SHOP_STORE_WRITE_BUFFER_MB", "64"),)
    with pytest.raises(SystemExit):
        soak_arguments(parser, parser.parse_args(["--soak-setting", "WRITE_BUFFER=1"]))


def test_rss_of_this_process() -> None:
    assert rss_mb(os.getpid()) > 1
