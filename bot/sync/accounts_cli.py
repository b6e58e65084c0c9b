"""`wqbot accounts report [--csv]` and `wqbot accounts import FILE`: members with no 微签 account,
keys claimed by several members, and the `userid,account` CSV override (docs/sync.md "Account linking").

Exit codes: 0 done (report: nothing to fix); 1 the report lists members to fix; 2 a bad file or settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from settings import get_settings
from store import db, init_store

from . import accounts


def main(args) -> int:
    s = get_settings()
    if db.obj is None:  # (already bound when called in-process, e.g. by tests)
        init_store(s.database_url)
    if args.action == "import":
        if not args.file:
            print("wqbot accounts import: name the CSV file (userid,account lines)", file=sys.stderr)
            return 2
        try:
            text = Path(args.file).read_text(encoding="utf-8")
            rows, relinked = accounts.import_mapping(text, s)
        except (OSError, UnicodeDecodeError) as e:
            print(f"wqbot accounts import: cannot read {args.file}: {type(e).__name__}", file=sys.stderr)
            return 2
        except accounts.MappingError as e:
            print(f"wqbot accounts import: {args.file}: {e}", file=sys.stderr)
            return 2
        print(f"{rows} overrides read; {relinked.accounts_changed} members' accounts changed")
        return 0
    r = accounts.report()
    if args.csv:
        sys.stdout.write(accounts.report_csv(r))
    else:
        claimed = sum(len(m) for m in r.ambiguous.values())
        print(
            f"{r.active} active members: {len(r.unlinked)} with no account, "
            f"{len(r.ambiguous)} keys claimed by {claimed} members (ambiguous, not linked)"
        )
        for uid, name in r.unlinked:
            print(f"  no account: {uid} {name}")
        for key, members in r.ambiguous.items():
            print(f"  ambiguous {key}: " + ", ".join(f"{uid} {name}" for uid, name in members))
    return 1 if (r.unlinked or r.ambiguous) else 0
