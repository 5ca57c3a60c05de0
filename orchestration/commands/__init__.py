"""Distributed and service-level CLI commands; see orchestration.cli for the contract."""
