"""Where an attempt runs: the executor interface and the local executor."""
