"""Performance and scale benchmarks; run each as ``python -m bench.<name>`` from the project root.

They are scripts, never tests: each prints a markdown table and writes it, with the date, the
git commit and the machine, to ``bench/results/<name>.md``.
"""
