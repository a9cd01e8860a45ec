"""Benchmark scripts (issue 6). Each script prints its figures; none is a timed unit test."""
