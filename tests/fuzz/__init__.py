"""Property-based fuzzing of the server's one HTTP port (see test_fuzz_port)."""
