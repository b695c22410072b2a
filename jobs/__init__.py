"""Batch jobs: trainings and rebuilds that read the state of record and publish what the API serves."""
