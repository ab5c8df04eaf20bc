"""bench.scale: the README table of the scale benchmark's JSON (issue 26, part 3)."""

from bottleneck_transfer.bench.scale import format_scale


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
