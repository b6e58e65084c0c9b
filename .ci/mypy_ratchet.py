"""mypy on a ratchet: the number of errors may only go down.

.ci/mypy-baseline holds the count the tree is allowed. More errors than that fails (fix the new
ones); fewer passes and asks for the baseline to be lowered in the same commit, so the next change
cannot spend the room. `--lower` writes the current count when it is lower.

    python .ci/mypy_ratchet.py            # check (what .ci/run does)
    python .ci/mypy_ratchet.py --lower    # after fixing errors: move the baseline down
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-baseline"
ERROR = re.compile(r"^[^:\s][^:]*:\d+: error: ", re.M)


def read_baseline() -> int:
    for line in BASELINE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return int(line)
    raise SystemExit(f"{BASELINE.relative_to(ROOT)} holds no count")


def write_baseline(count: int) -> None:
    text = BASELINE.read_text(encoding="utf-8")
    BASELINE.write_text(re.sub(r"^\d+$", str(count), text, count=1, flags=re.M), encoding="utf-8")


def main(argv: list[str]) -> int:
    # The files and options come from [tool.mypy] in pyproject.toml.
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    if run.returncode not in (0, 1) or run.stderr.strip():
        # 2: mypy itself failed (bad config, crash); its output says why
        sys.stdout.write(run.stdout)
        sys.stderr.write(run.stderr)
        print(f"mypy-ratchet: mypy did not run to the end (exit {run.returncode})")
        return 2
    count = len(ERROR.findall(run.stdout))
    allowed = read_baseline()
    where = BASELINE.relative_to(ROOT)
    if count > allowed:
        sys.stdout.write(run.stdout)
        print(f"mypy-ratchet: {count} errors, {where} allows {allowed}: fix the {count - allowed} new one(s) above")
        return 1
    if count < allowed:
        if "--lower" in argv:
            write_baseline(count)
            print(f"mypy-ratchet: {count} errors; {where} lowered from {allowed} to {count}")
            return 0
        print(
            f"mypy-ratchet: {count} errors, {allowed} allowed. Well done: lower {where} to {count} in this "
            f"commit (python .ci/mypy_ratchet.py --lower) so the count cannot creep back up"
        )
        return 0
    print(f"mypy-ratchet: {count} errors, as {where} allows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
