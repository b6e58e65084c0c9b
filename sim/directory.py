"""The emulated corp's directory (通讯录): a department tree under root 1, members in one or
more departments with leaders, positions and contact fields, generated from a seed.

Everything is in memory with `__slots__` records and plain dicts, so 100,000 members and
10,000 departments generate in seconds. Mutations validate the way the admin console does and
report what changed, so the caller can send the matching change_contact callback.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import random
import re
from typing import Iterable

from . import names

ROOT = 1
MAX_DEPTH = 6  # generated trees; WeCom allows 15 levels
USERID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}")


class DirectoryError(Exception):
    """A control-API mutation that WeCom's console would refuse. `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class Department:
    __slots__ = ("id", "name", "name_en", "parentid", "order")

    def __init__(self, id: int, name: str, parentid: int, order: int, name_en: str = ""):
        self.id, self.name, self.parentid, self.order, self.name_en = id, name, parentid, order, name_en


class User:
    __slots__ = (
        "seq",
        "userid",
        "name",
        "department",
        "order",
        "is_leader_in_dept",
        "position",
        "mobile",
        "gender",
        "email",
        "biz_mail",
        "status",
        "alias",
        "telephone",
        "address",
        "main_department",
        "direct_leader",
        "english_name",
        "extattr",
    )

    def __init__(self, seq: int, userid: str, name: str, department: list[int]):
        self.seq, self.userid, self.name, self.department = seq, userid, name, department
        self.order = [0] * len(department)
        self.is_leader_in_dept = [0] * len(department)
        self.position = ""
        self.mobile = ""
        self.gender = "0"
        self.email = ""
        self.biz_mail = ""
        self.status = 1
        self.alias = ""
        self.telephone = ""
        self.address = ""
        self.main_department = department[0] if department else ROOT
        self.direct_leader: list[str] = []
        self.english_name = ""
        self.extattr: dict[str, str] = {}  # text custom fields (自定义字段), e.g. {"工号": "E00042"}

    @property
    def avatar(self) -> str:
        h = hashlib.md5(self.userid.encode()).hexdigest()[:24]
        return f"https://wework.qpic.cn/wwpic/sim_{h}/0"

    def snapshot(self) -> dict:
        return {
            k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k in self.__slots__
            if k != "seq"
            for v in (getattr(self, k),)
        }


PRIVATE_FIELDS = ("avatar", "thumb_avatar", "gender", "mobile", "email", "biz_mail", "qr_code", "address")
EDITABLE = (
    "name",
    "position",
    "mobile",
    "gender",
    "email",
    "biz_mail",
    "status",
    "alias",
    "telephone",
    "address",
    "english_name",
    "direct_leader",
    "extattr",
)


def _key(userid: str) -> str:
    return userid.lower()


class Directory:
    def __init__(self, corp_name: str = "微签演示科技有限公司", mail_domain: str = "weiqian-demo.cn"):
        self.corp_name = corp_name
        self.mail_domain = mail_domain
        self.departments: dict[int, Department] = {}
        self.children: dict[int, list[int]] = {}
        self.users: dict[str, User] = {}  # lower-cased userid -> User (userids are case-insensitive)
        self.members: dict[int, dict[str, None]] = {}  # dept -> ordered set of lower-cased userids
        self.by_seq: dict[int, User] = {}
        self.seqs: list[int] = []  # ascending; the order user/list_id pages in
        self.mobiles: dict[str, str] = {}
        self.emails: dict[str, str] = {}
        self.next_seq = 1
        self.epoch = random.getrandbits(32)  # cursors from a previous directory are refused
        self._add_department(Department(ROOT, corp_name, 0, 100000000))

    # -- generation ---------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        users: int,
        departments: int,
        seed: int = 1,
        corp_name: str = "微签演示科技有限公司",
        mail_domain: str = "weiqian-demo.cn",
    ) -> "Directory":
        d = cls(corp_name, mail_domain)
        d.epoch = seed * 7919 + users * 31 + departments
        rng = random.Random(seed)
        d._generate_departments(max(1, departments), rng)
        d._generate_users(max(0, users), rng)
        return d

    def _generate_departments(self, count: int, rng: random.Random) -> None:
        depth = {ROOT: 0}
        top: dict[int, int] = {}
        used: dict[int, set] = {ROOT: set()}
        eligible = [ROOT]
        level1 = names.LEVEL1[: max(0, min(count - 1, len(names.LEVEL1)))]
        for i in range(2, count + 1):
            if i - 2 < len(level1):
                parent = ROOT
            else:
                parent = rng.choice(eligible)
                if parent == ROOT and len(eligible) > 1:
                    parent = rng.choice(eligible)  # keep level 1 to the named functions, mostly
            dep = depth[parent] + 1
            siblings = used.setdefault(parent, set())
            if dep == 1:
                if i - 2 < len(level1):
                    name, name_en, _ = level1[i - 2]
                else:
                    name, name_en = self._unique(rng, [n for n, _, _ in names.LEVEL1], siblings), ""
            else:
                pool = names.LEVEL2 if dep == 2 else names.LEVEL3
                name, name_en = self._unique(rng, pool, siblings), ""
            siblings.add(name)
            order = 100000000 - 1000 * len(siblings)
            self._add_department(Department(i, name, parent, order, name_en))
            depth[i] = dep
            top[i] = i if dep == 1 else top[parent]
            used[i] = set()
            if dep < MAX_DEPTH:
                eligible.append(i)
        self._top = top

    @staticmethod
    def _unique(rng: random.Random, pool: list[str], taken: set) -> str:
        for _ in range(3):
            name = rng.choice(pool)
            if name not in taken:
                return name
        base = rng.choice(pool)
        n = 2
        while f"{base}{n}" in taken:
            n += 1
        return f"{base}{n}"

    def _generate_users(self, count: int, rng: random.Random) -> None:
        surnames = [(s, p) for s, p, _ in names.SURNAMES]
        weights = [w for _, _, w in names.SURNAMES]
        cum = []
        acc = 0.0
        for w in weights:
            acc += w
            cum.append(acc)
        male = [(c, p) for c, p, g in names.GIVEN if g in "mn"]
        female = [(c, p) for c, p, g in names.GIVEN if g in "fn"]
        dept_ids = [i for i in self.departments if i != ROOT] or [ROOT]
        top = getattr(self, "_top", {})
        level1_positions = {
            i: pos for i, (_, _, pos) in zip(range(2, 2 + len(names.LEVEL1)), names.LEVEL1, strict=True)
        }
        taken_ids: dict[str, int] = {}
        mobiles: set[str] = set()
        choices = rng.choices
        rand = rng.random
        for n in range(count):
            ((sur, sur_py),) = choices(surnames, cum_weights=cum)
            gender = "1" if rand() < 0.5 else "2"
            pool = male if gender == "1" else female
            k = 1 if rand() < 0.3 else 2
            given = choices(pool, k=k)
            name = sur + "".join(c for c, _ in given)
            base = sur_py + "".join(p for _, p in given)
            seen = taken_ids.get(base, 0)
            taken_ids[base] = seen + 1
            userid = base if seen == 0 else f"{base}{seen + 1}"
            if n == 0:
                depts = [ROOT]
            else:
                depts = [rng.choice(dept_ids)]
                r = rand()
                if r < 0.15 and len(dept_ids) > 1:
                    extra = rng.choice(dept_ids)
                    if extra not in depts:
                        depts.append(extra)
                    if r < 0.03:
                        extra = rng.choice(dept_ids)
                        if extra not in depts:
                            depts.append(extra)
            u = User(self.next_seq, userid, name, depts)
            self.next_seq += 1
            u.gender = gender
            while True:
                mobile = rng.choice(names.MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
                if mobile not in mobiles:
                    mobiles.add(mobile)
                    break
            u.mobile = mobile
            u.email = f"{userid}@{self.mail_domain}"
            u.biz_mail = u.email
            u.alias = "".join(p for _, p in given) + "." + sur_py
            u.english_name = u.alias.title().replace(".", " ")
            u.extattr = {"工号": f"E{u.seq:05d}"}  # a staff number, the attribute LDAP often shares
            if rand() < 0.1:
                u.telephone = f"021-{rng.randrange(10**7, 10**8)}"
            main_top = top.get(depts[0])
            positions = level1_positions.get(main_top, names.GENERIC_POSITIONS)
            u.position = rng.choice(positions)
            if n >= 50:
                r = rand()
                u.status = 4 if r < 0.03 else 2 if r < 0.04 else 1
            self._insert_user(u)
        # leaders: each department's first member leads it; direct leader = nearest leader above
        leaders: dict[int, str] = {}
        for dept, mem in self.members.items():
            if mem:
                first = self.users[next(iter(mem))]
                idx = first.department.index(dept)
                first.is_leader_in_dept[idx] = 1
                leaders[dept] = first.userid
                if idx == 0:
                    depth1 = self.departments[dept].parentid == ROOT
                    first.position = (
                        "总经理" if dept == ROOT else (self.departments[dept].name + ("总监" if depth1 else "经理"))
                    )
        for u in self.users.values():
            dept = u.main_department
            while dept:
                lead = leaders.get(dept)
                if lead and lead != u.userid:
                    u.direct_leader = [lead]
                    break
                dept = self.departments[dept].parentid if dept in self.departments else 0

    # -- indexes ---------------------------------------------------------------------------
    def _add_department(self, d: Department) -> None:
        self.departments[d.id] = d
        self.children.setdefault(d.id, [])
        self.members.setdefault(d.id, {})
        if d.parentid:
            self.children.setdefault(d.parentid, []).append(d.id)

    def _insert_user(self, u: User) -> None:
        k = _key(u.userid)
        self.users[k] = u
        self.by_seq[u.seq] = u
        if not self.seqs or u.seq > self.seqs[-1]:
            self.seqs.append(u.seq)
        else:
            bisect.insort(self.seqs, u.seq)
        for d in u.department:
            self.members[d][k] = None
        if u.mobile:
            self.mobiles[u.mobile] = k
        if u.email:
            self.emails[u.email.lower()] = k

    def _remove_user(self, u: User) -> None:
        k = _key(u.userid)
        del self.users[k]
        del self.by_seq[u.seq]
        i = bisect.bisect_left(self.seqs, u.seq)
        if i < len(self.seqs) and self.seqs[i] == u.seq:
            del self.seqs[i]
        for d in u.department:
            self.members.get(d, {}).pop(k, None)
        if u.mobile and self.mobiles.get(u.mobile) == k:
            del self.mobiles[u.mobile]
        if u.email and self.emails.get(u.email.lower()) == k:
            del self.emails[u.email.lower()]

    # -- reads -----------------------------------------------------------------------------
    def user(self, userid: str) -> User | None:
        return self.users.get(_key(userid)) if isinstance(userid, str) else None

    def user_by_mobile(self, mobile: str) -> User | None:
        k = self.mobiles.get(mobile)
        return self.users.get(k) if k else None

    def user_by_email(self, email: str) -> User | None:
        k = self.emails.get(email.lower())
        return self.users.get(k) if k else None

    def subtree(self, dept_id: int) -> list[int]:
        out, stack = [], [dept_id]
        while stack:
            d = stack.pop()
            out.append(d)
            stack.extend(reversed(self.children.get(d, ())))
        return out

    def leaders(self, dept_id: int) -> list[str]:
        out = []
        for k in self.members.get(dept_id, ()):
            u = self.users[k]
            if u.is_leader_in_dept[u.department.index(dept_id)]:
                out.append(u.userid)
        return out

    def users_in(self, dept_ids: Iterable[int]) -> list[User]:
        seen: dict[str, None] = {}
        for d in dept_ids:
            for k in self.members.get(d, ()):
                seen[k] = None
        return [self.users[k] for k in seen]

    def depth(self, dept_id: int) -> int:
        n = 0
        while dept_id != ROOT:
            dept_id = self.departments[dept_id].parentid
            n += 1
        return n

    # -- user/list_id paging -----------------------------------------------------------------
    def encode_cursor(self, seq: int, k: int) -> str:
        raw = f"{self.epoch}:{seq}:{k}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str) -> tuple[int, int]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            epoch, seq, k = (int(x) for x in raw.split(":"))
        except Exception:
            raise DirectoryError("invalid cursor") from None
        if epoch != self.epoch:
            raise DirectoryError("invalid cursor")
        return seq, k

    def list_id_page(self, cursor: str, limit: int) -> tuple[list[dict], str]:
        """One page of (userid, department) rows, one per membership, and the next cursor ("" at the end).

        The cursor is the last position handed out (user seq and membership index), so users added
        or removed between pages neither repeat nor shift the rest."""
        seq, k = self.decode_cursor(cursor) if cursor else (0, -1)
        start = bisect.bisect_left(self.seqs, seq)
        rows: list[dict] = []
        seqs, by_seq = self.seqs, self.by_seq
        last = (seq, k)
        for i in range(start, len(seqs)):
            s = seqs[i]
            u = by_seq[s]
            depts = u.department
            for j in range(k + 1 if s == seq else 0, len(depts)):
                if len(rows) >= limit:
                    return rows, self.encode_cursor(*last)
                rows.append({"userid": u.userid, "department": depts[j]})
                last = (s, j)
        return rows, ""

    # -- JSON shapes --------------------------------------------------------------------------
    def department_json(self, d: Department, leaders: bool = True) -> dict:
        out = {"id": d.id, "name": d.name, "name_en": d.name_en, "parentid": d.parentid, "order": d.order}
        if leaders:
            out["department_leader"] = self.leaders(d.id)
        return out

    def user_json(self, u: User, hide_private: bool = False, listing: bool = False) -> dict:
        out = {
            "userid": u.userid,
            "name": u.name,
            "department": list(u.department),
            "order": list(u.order),
            "position": u.position,
            "mobile": u.mobile,
            "gender": u.gender,
            "email": u.email,
            "biz_mail": u.biz_mail,
            "is_leader_in_dept": list(u.is_leader_in_dept),
            "direct_leader": list(u.direct_leader),
            "avatar": u.avatar,
            "thumb_avatar": u.avatar.rsplit("/", 1)[0] + "/100",
            "telephone": u.telephone,
            "alias": u.alias,
            "address": u.address,
            "extattr": {"attrs": [{"type": 0, "name": k, "text": {"value": v}} for k, v in sorted(u.extattr.items())]},
            "status": u.status,
            "qr_code": f"https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=sim{u.seq:08x}",
            "external_position": "",
            "external_profile": {"external_corp_name": "", "external_attr": []},
            "main_department": u.main_department,
        }
        if listing:
            out["english_name"] = u.english_name
        if hide_private:
            for f in PRIVATE_FIELDS:
                out.pop(f, None)
        return out

    # -- mutations (the control API) ------------------------------------------------------------
    def _check_departments(self, depts) -> list[int]:
        if not isinstance(depts, list) or not depts:
            raise DirectoryError("department must be a non-empty list of department ids")
        out = []
        for d in depts:
            if not isinstance(d, int) or isinstance(d, bool) or d not in self.departments:
                raise DirectoryError(f"department {d!r} does not exist", 404 if isinstance(d, int) else 400)
            if d not in out:
                out.append(d)
        return out

    def _apply_fields(self, u: User, data: dict) -> None:
        for f in EDITABLE:
            if f not in data:
                continue
            v = data[f]
            if f == "status":
                if v not in (1, 2, 4, 5):
                    raise DirectoryError("status must be 1 (active), 2 (disabled), 4 (not activated) or 5 (left)")
            elif f == "gender":
                v = str(v)
                if v not in ("0", "1", "2"):
                    raise DirectoryError("gender must be 0, 1 or 2")
            elif f == "extattr":
                if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
                    raise DirectoryError('extattr must be an object of text fields, e.g. {"工号": "E00042"}')
                v = dict(v)
            elif f == "direct_leader":
                if not isinstance(v, list) or len(v) > 5 or not all(isinstance(x, str) for x in v):
                    raise DirectoryError("direct_leader must be a list of at most 5 userids")
            elif not isinstance(v, str):
                raise DirectoryError(f"{f} must be a string")
            if f == "name" and not v.strip():
                raise DirectoryError("name must not be empty")
            if f == "mobile" and v:
                other = self.mobiles.get(v)
                if other and other != _key(u.userid):
                    raise DirectoryError(f"mobile {v} already belongs to {self.users[other].userid}", 409)
            if f == "email" and v:
                other = self.emails.get(v.lower())
                if other and other != _key(u.userid):
                    raise DirectoryError(f"email {v} already belongs to {self.users[other].userid}", 409)
            setattr(u, f, v)

    def _set_departments(self, u: User, depts: list[int], data: dict) -> None:
        old = dict(zip(u.department, zip(u.order, u.is_leader_in_dept, strict=True), strict=True))
        leader = data.get("is_leader_in_dept")
        if leader is not None and (not isinstance(leader, list) or len(leader) != len(depts)):
            raise DirectoryError("is_leader_in_dept must be a list as long as department")
        u.department = depts
        u.order = [old.get(d, (0, 0))[0] for d in depts]
        u.is_leader_in_dept = (
            [int(bool(x)) for x in leader] if leader is not None else [old.get(d, (0, 0))[1] for d in depts]
        )
        main = data.get("main_department", u.main_department)
        u.main_department = main if main in depts else depts[0]

    def add_user(self, data: dict) -> User:
        userid = data.get("userid") or self._fresh_userid()
        if not isinstance(userid, str) or not USERID.fullmatch(userid):
            raise DirectoryError("userid must be 1-64 letters, digits or _-@. and start with a letter or digit")
        if self.user(userid):
            raise DirectoryError(f"userid {userid} already exists", 409)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DirectoryError("name is required")
        depts = self._check_departments(data.get("department", [ROOT]))
        u = User(self.next_seq, userid, name, depts)
        self._set_departments(u, depts, data)
        self._apply_fields(u, {k: v for k, v in data.items() if k != "name"})
        self.next_seq += 1
        self._insert_user(u)
        return u

    def _fresh_userid(self) -> str:
        while True:
            uid = random.getrandbits(32).to_bytes(4, "big").hex()
            if not self.user(uid):
                return uid

    def update_user(self, userid: str, data: dict) -> tuple[User, dict, list[str]]:
        """Apply `data` (fields, `department`, `new_userid`); returns (user, before, changed field names)."""
        u = self.user(userid)
        if u is None:
            raise DirectoryError(f"userid {userid} does not exist", 404)
        before = u.snapshot()
        new_userid = data.get("new_userid")
        if new_userid is not None:
            if not isinstance(new_userid, str) or not USERID.fullmatch(new_userid):
                raise DirectoryError("new_userid must be 1-64 letters, digits or _-@. and start with a letter or digit")
            other = self.user(new_userid)
            if other is not None and other is not u:
                raise DirectoryError(f"userid {new_userid} already exists", 409)
        depts = self._check_departments(data["department"]) if "department" in data else None
        self._remove_user(u)
        try:
            self._apply_fields(u, data)
            if depts is not None or "is_leader_in_dept" in data or "main_department" in data:
                self._set_departments(u, depts if depts is not None else u.department, data)
            if new_userid is not None:
                u.userid = new_userid
        except DirectoryError:
            for k, v in before.items():
                setattr(u, k, v)
            self._insert_user(u)
            raise
        self._insert_user(u)
        if new_userid is not None and new_userid != before["userid"]:
            for other in self.users.values():
                if before["userid"] in other.direct_leader:
                    other.direct_leader = [new_userid if x == before["userid"] else x for x in other.direct_leader]
        after = u.snapshot()
        changed = [k for k in after if after[k] != before[k]]
        return u, before, changed

    def delete_user(self, userid: str) -> User:
        u = self.user(userid)
        if u is None:
            raise DirectoryError(f"userid {userid} does not exist", 404)
        self._remove_user(u)
        return u

    def add_department(self, data: dict) -> Department:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise DirectoryError("name is required (at most 64 characters)")
        parent = data.get("parentid", ROOT)
        if parent not in self.departments:
            raise DirectoryError(f"parentid {parent!r} does not exist", 404)
        if self.depth(parent) >= 14:
            raise DirectoryError("departments may nest at most 15 levels")
        self._check_sibling_name(parent, name, None)
        dept_id = data.get("id")
        if dept_id is None:
            dept_id = max(self.departments) + 1
        elif not isinstance(dept_id, int) or isinstance(dept_id, bool) or dept_id < 2:
            raise DirectoryError("id must be a whole number above 1")
        elif dept_id in self.departments:
            raise DirectoryError(f"department {dept_id} already exists", 409)
        order = data.get("order", 100000000 - 1000 * (len(self.children.get(parent, ())) + 1))
        if not isinstance(order, int):
            raise DirectoryError("order must be a whole number")
        d = Department(dept_id, name, parent, order, data.get("name_en", "") or "")
        self._add_department(d)
        return d

    def _check_sibling_name(self, parent: int, name: str, self_id: int | None) -> None:
        for c in self.children.get(parent, ()):
            if c != self_id and self.departments[c].name == name:
                raise DirectoryError(f"department {parent} already has a sub-department named {name}", 409)

    def update_department(self, dept_id: int, data: dict) -> tuple[Department, list[str]]:
        d = self.departments.get(dept_id)
        if d is None:
            raise DirectoryError(f"department {dept_id} does not exist", 404)
        changed = []
        parent = data.get("parentid", d.parentid)
        if parent != d.parentid:
            if dept_id == ROOT:
                raise DirectoryError("the root department cannot move")
            if parent not in self.departments:
                raise DirectoryError(f"parentid {parent!r} does not exist", 404)
            if parent in self.subtree(dept_id):
                raise DirectoryError("a department cannot move under itself")
        name = data.get("name", d.name)
        if not isinstance(name, str) or not name.strip():
            raise DirectoryError("name must not be empty")
        if name != d.name or parent != d.parentid:
            self._check_sibling_name(parent, name, dept_id)
        if name != d.name:
            d.name = name
            changed.append("name")
        if "name_en" in data and data["name_en"] != d.name_en:
            d.name_en = data["name_en"] or ""
            changed.append("name_en")
        if "order" in data and data["order"] != d.order:
            if not isinstance(data["order"], int):
                raise DirectoryError("order must be a whole number")
            d.order = data["order"]
            changed.append("order")
        if parent != d.parentid:
            self.children[d.parentid].remove(dept_id)
            self.children.setdefault(parent, []).append(dept_id)
            d.parentid = parent
            changed.append("parentid")
        return d, changed

    def delete_department(self, dept_id: int) -> Department:
        d = self.departments.get(dept_id)
        if d is None:
            raise DirectoryError(f"department {dept_id} does not exist", 404)
        if dept_id == ROOT:
            raise DirectoryError("the root department cannot be deleted")
        if self.children.get(dept_id):
            raise DirectoryError(f"department {dept_id} still has sub-departments: delete or move them first", 409)
        if self.members.get(dept_id):
            raise DirectoryError(
                f"department {dept_id} still has {len(self.members[dept_id])} members: move them first "
                "(or pass move_members_to)",
                409,
            )
        del self.departments[dept_id]
        self.children.pop(dept_id, None)
        self.members.pop(dept_id, None)
        self.children[d.parentid].remove(dept_id)
        return d
