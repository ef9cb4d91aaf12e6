"""Child process for the kill-inside-a-write tests (test_store_crash_writes.py).

Run as a script: ``python store_write_child.py ACTION DLM_ID TAG [DIR]`` with
``DLM_HOME`` set; ACTION is ``commit`` (an adapter commit of
:func:`store_crash_child.adapter_files`), ``export`` (an export into the
store) or ``export-out`` (an export to DIR).

Everything the store does for the action (the lock included, the caller's
writes into the staging directory too) happens between two marker writes to
``/dev/null``, :data:`BEGIN` and :data:`END`. The test counts each system
call before ``BEGIN`` in an untouched run, so that it can kill the child at
the n-th call *of the store's work* whatever Python's start-up did first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import store_crash_child as crash  # beside this file (run as a script)

BEGIN = b"DLM-STORE-WORK-BEGINS"
END = b"DLM-STORE-WORK-ENDS"


def main(argv: list[str]) -> int:
    from dlm.store import StoreLock, StorePaths, commit_adapter, stage_export

    action, dlm_id, tag, *rest = argv
    paths = StorePaths.for_id(dlm_id)
    marker = os.open(os.devnull, os.O_WRONLY)
    os.write(marker, BEGIN)
    with StoreLock(paths.lock_file, command=action, notice=lambda m: None):
        if action == "commit":
            with commit_adapter(paths, meta={"tag": tag}) as staging:
                crash.write_tree(staging, crash.adapter_files(tag))
        elif action == "export":
            with stage_export(paths, "hf-snapshot") as staging:
                crash.write_tree(staging, crash.export_files(tag))
        elif action == "export-out":
            with stage_export(paths, "hf-snapshot", out=Path(rest[0])) as staging:
                crash.write_tree(staging, crash.export_files(tag))
        else:
            raise SystemExit(f"unknown action {action}")
    os.write(marker, END)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
