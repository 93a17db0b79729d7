"""Default priority of each job kind: when one worker drains a mixed queue, inputs come before what needs them."""

PRIORITY = {"demo": 100, "build_space": 50, "add_snapshot": 20, "importance": 10, "revert_eval": 5}
