"""conveyor's benchmarks (run by hand; see RESULTS.md)."""
