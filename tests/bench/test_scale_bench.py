"""bench.scale: the README table of the scale benchmark's JSON (issue 26, part 3)."""

import pytest
from bottleneck_transfer.bench.scale import format_scale, merge_runs


def _command(seconds, peak, rows, path="streaming"):
    return {"seconds": seconds, "peak_bytes": peak, "rows_per_second": rows / seconds, "path": path}


def test_the_table_compares_the_largest_size_with_the_smallest():
    figures = {
        "settings": {"dim": 8, "memory_budget": "1G", "logreg": "logreg", "dense": "dense"},
        "sizes": {
            "2000": {"commands": {"train logreg": _command(2.0, 10**9, 2000)}},
            "200": {
                "commands": {
                    "train logreg": _command(1.0, 5 * 10**8, 200),
                    "evaluate": _command(1.0, 10**8, 200),
                }
            },
        },
    }
    lines = format_scale(figures)
    assert lines[0].startswith("| command | 200 rows: path | peak | rows/s | 2,000 rows: path")
    assert lines[2] == (
        "| train logreg | streaming | 0.50 GB | 200 | streaming | 1.00 GB | 1,000 | 2.00 | 0.20 |"
    )
    assert lines[3] == "| evaluate | streaming | 0.10 GB | 200 | not run |  |  |  |  |"
    assert "memory budget 1G" in lines[-1]


def test_runs_of_the_same_settings_merge_and_others_are_refused():
    settings = {"dim": 8, "memory_budget": "1G"}

    def run(n, start, end, seconds):
        machine = {"cores": 2, "load_average_start": start, "load_average_end": end}
        sizes = {str(n): {"commands": {}}}
        return {"settings": settings, "machine": machine, "sizes": sizes, "seconds": seconds}

    forced = run(200, 1.0, 2.0, 10.0)
    forced["settings"] = {**settings, "out_of_core": True}
    merged = merge_runs([forced, run(2000, 3.0, 4.0, 20.0)])
    assert list(merged["sizes"]) == ["200", "2000"] and merged["seconds"] == 30.0
    assert merged["sizes"]["200"]["out_of_core"] and not merged["sizes"]["2000"]["out_of_core"]
    assert merged["machine"]["load_average_start"] == 1.0
    assert merged["machine"]["load_average_end"] == 4.0
    other = {**run(20, 0.0, 0.0, 1.0), "settings": {"dim": 16, "memory_budget": "1G"}}
    with pytest.raises(ValueError, match="runs of other settings"):
        merge_runs([run(200, 1.0, 2.0, 10.0), other])
