"""The run as one state machine: events in, effects out (machine.py), carried out by run_loop.py."""
