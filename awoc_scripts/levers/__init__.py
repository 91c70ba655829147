"""The lever scripts: how a lever reaches a run (requests.py), and retry, abort and the failure handler.

What each lever does is the run machine's (execution/machine/levers.py), live or saved alike.
"""
