"""The demo's last task: reads its prompt (with the other tasks' results in it) and sums them up."""

import re
import sys

prompt = sys.stdin.read()
sections = re.findall(r"^## (\S+) \((\S+), (\w+)\)\nFull result: (\S+)\n\n(.*?)(?=^## |\Z)", prompt, re.M | re.S)
print(f"Summary of {len(sections)} inspections run in parallel before this task:")
for task_id, _agent, status, _, body in sections:
    lines = [line for line in body.strip().splitlines() if line.strip()]
    print(f"- {task_id} ({status}): {len(lines)} line(s); first: {lines[0][:100] if lines else '(empty)'}")
