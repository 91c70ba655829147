"""A command task for the engine tests: records when it really ran, then sleeps or fails.

usage: record_task.py LOG_FILE SECONDS [EXIT_CODE]
Appends {"task", "start", "end", "prompt"} (times from time.time()) as one line to LOG_FILE.
"""

import json
import os
import sys
import time

log_file, seconds = sys.argv[1], float(sys.argv[2])
code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
start = time.time()
prompt = sys.stdin.read()
time.sleep(seconds)
line = json.dumps({"task": os.environ["AWOC_TASK_ID"], "start": start, "end": time.time(), "prompt": prompt})
fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (line + "\n").encode())
os.close(fd)
print(f"result of {os.environ['AWOC_TASK_ID']}")
sys.exit(code)
