"""Runs a workflow in workflows-emulator (its own library, as its `run` command does) and prints how
the execution ended the way Google's Executions API reports it: {"state": "SUCCEEDED", "result": ...}
or {"state": "FAILED", "error": {"payload": <the error map>}}. The `run` command itself prints only a
Python traceback on failure, without the error's tags.

Usage: python run-workflow.py WORKFLOW_FILE ARGUMENT_JSON
"""
import json
import sys

from workflows_emulator.main import execute_workflow, load_workflow
from workflows_emulator.utils import WorkflowError

MARK = "KEYBRAKE_EXECUTION_OUTCOME "


def plain(value):
    return json.loads(json.dumps(value, default=str))


def main():
    path, argument = sys.argv[1], sys.argv[2]
    config = load_workflow(path)
    # As the emulator's `run` does, and as Google does: the argument is main's one parameter.
    param = config.get("main", {}).get("params", ["__no_args"])[0]
    try:
        result = execute_workflow(config, {param: json.loads(argument)})
        outcome = {"state": "SUCCEEDED", "result": plain(result)}
    except WorkflowError as error:
        outcome = {"state": "FAILED", "error": {"payload": plain(error.payload)}}
    print(MARK + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
