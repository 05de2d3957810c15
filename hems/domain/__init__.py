"""Domain rules of DESIGN §5 as plain, I/O-light functions (tariffs, programs, baselines)."""
