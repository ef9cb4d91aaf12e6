"""``dlm export``: the dispatcher (probe, fall back or refuse, stage, commit) and the built-in ``hf-snapshot`` target."""
