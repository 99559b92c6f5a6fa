"""Tests of the `s2s_model` package."""
