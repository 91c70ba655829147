"""Running a plan: the run loop, how a task is started (runners, prompts), processes, levers and pressure policies."""
