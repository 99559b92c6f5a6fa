"""Tests of the `s2s_cli` package."""
