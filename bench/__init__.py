"""openchamber's benchmarks: numbers and ratios against named peers, measured in one run.

Run them all with ``make bench`` (``python -m bench``), one with ``python -m bench decode``
or ``python -m bench.decode``. They never pass or fail: they print what they measured,
next to the project's targets. See docs/PERFORMANCE.md.
"""
