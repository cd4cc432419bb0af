"""Great Expectations: suites, custom expectations, one result per file."""
