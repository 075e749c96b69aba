"""The load test, bounded: many clients at once against the served page on 127.0.0.1 (benchmarks/load.py's code)."""

import importlib.util

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def load_benchmark():
    spec = importlib.util.spec_from_file_location("load_benchmark", REPO / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_many_clients_polite_and_hostile_get_answers_or_busy_never_errors_and_leave_no_files(tiny_repo):
    benchmark = load_benchmark()
    result = benchmark.run_load(
        str(tiny_repo / "models/final"), "transformers", clients=24, requests=2, long_s=60, timeout=400, cache=(2, 4),
        live_clients=8, live_chunks=10, live_idle_s=3.0,
    )  # fmt: skip
    summary = {k: v for k, v in result.items() if k != "examples"}
    assert result["errors"] == 0 and result["http_500_in_server_log"] == 0, result
    kinds = benchmark.KINDS
    assert result["answered"] + result["busy"] + result["refused_direct_route"] == result["requests"] == 48 + len(kinds)
    direct = sum(kinds[(c + r) % len(kinds)] in ("raw_run", "raw_api") for c in range(24) for r in (0, 1))
    direct += sum(kind in ("raw_run", "raw_api") for kind in kinds)  # the same kinds once more on the idle queue
    assert result["refused_direct_route"] == direct  # every direct POST to a route that would skip the queue
    assert result["answered"] >= 10, summary  # the queue serves while it refuses what does not fit
    # Alone on the idle queue nothing is busy: the playlist gets its "not an audio file", the long recording its text.
    expected = {
        kind: "refused" if kind.startswith("raw_") and kind != "raw_call_clip" else "answered" for kind in kinds
    }
    assert result["quiet"] == expected, summary
    assert result["rss_growth_mb"] < 1024, summary  # one request decodes at a time, whatever the number of clients
    assert result["files_left"] == 0, result["files_left_examples"]  # the live chunks' uploads too
    # live clients beside them: hogs, vanishing clients, an hour-long FLAC, a 6 s chunk and a playlist as chunks
    assert result["live_errors"] == 0, summary
    assert result["live_chunks"] == 2 * (10 + 1 + 2 + 1) and result["live_answered"] >= 4, summary
    assert result["live_served_again_after_s"] is not None, summary  # the vanished clients' places were freed
