"""Small helpers with no domain knowledge: the clock, threads that overlap I/O and CPU."""
