"""Per-API quotas (45009) and injected faults: the two ways the emulator says no on purpose."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field


def api_name(path: str) -> str:
    """'/cgi-bin/user/get' and 'user/get' both name the API 'user/get'."""
    p = path.strip().lstrip("/")
    if p.startswith("cgi-bin/"):
        p = p[len("cgi-bin/") :]
    return p.rstrip("/")


class Quotas:
    """Fixed windows per API: a call past the minute (hour) limit blocks that API for a minute
    (an hour), as WeCom's 频率拦截 does; blocked calls answer 45009 and are not counted."""

    def __init__(self, cfg, clock):
        self.cfg, self.clock = cfg, clock
        self.state: dict[str, list[float]] = {}
        self.overrides: dict[str, dict] = {k: dict(v) for k, v in cfg.quota_overrides.items()}
        self.per_minute = cfg.quota_per_minute
        self.per_hour = cfg.quota_per_hour
        self.refused = 0

    def limits(self, api: str, debug: bool = False) -> tuple[int, int]:
        if debug:
            return self.cfg.debug_per_minute, 0
        o = self.overrides.get(api, {})
        return o.get("per_minute", self.per_minute), o.get("per_hour", self.per_hour)

    def allow(self, api: str, debug: bool = False) -> bool:
        now = self.clock.now()
        key = api + ("?debug" if debug else "")
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = [now, 0, now, 0, 0.0]
        if now < st[4]:
            self.refused += 1
            return False
        if now - st[0] >= 60:
            st[0], st[1] = now, 0
        if now - st[2] >= 3600:
            st[2], st[3] = now, 0
        per_minute, per_hour = self.limits(api, debug)
        if per_minute and st[1] >= per_minute:
            st[4] = now + 60
            st[0], st[1] = st[4], 0
            self.refused += 1
            return False
        if per_hour and st[3] >= per_hour:
            st[4] = now + 3600
            st[2], st[3] = st[4], 0
            self.refused += 1
            return False
        st[1] += 1
        st[3] += 1
        return True

    def snapshot(self) -> dict:
        now = self.clock.now()
        return {
            "per_minute": self.per_minute,
            "per_hour": self.per_hour,
            "overrides": self.overrides,
            "refused": self.refused,
            "apis": {
                k: {"minute_count": int(v[1]), "hour_count": int(v[3]), "blocked_for": round(max(0.0, v[4] - now), 3)}
                for k, v in self.state.items()
            },
        }

    def configure(self, data: dict) -> None:
        for k in ("per_minute", "per_hour"):
            if k in data:
                v = data[k]
                if not isinstance(v, int) or v < 0:
                    raise ValueError(f"{k} must be a whole number ≥ 0 (0: no limit)")
                setattr(self, k, v)
        for api, lim in (data.get("apis") or {}).items():
            if not isinstance(lim, dict) or not all(
                k in ("per_minute", "per_hour") and isinstance(v, int) and v >= 0 for k, v in lim.items()
            ):
                raise ValueError(f'apis[{api!r}] must be {{"per_minute": n, "per_hour": n}}')
            self.overrides[api_name(api)] = dict(lim)

    def reset(self) -> None:
        self.state.clear()
        self.refused = 0


KINDS = ("errcode", "http500", "timeout", "latency")
DEFAULT_ERRMSG = {
    60020: "not allow to access from your ip, hint: [{hint}], from ip: {ip}, "
    "more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
}


@dataclass
class Fault:
    id: int
    path: str  # an API name ('user/get'), a prefix ending in '*' ('message/*'), or '*'
    kind: str = "errcode"
    errcode: int | None = None
    errmsg: str | None = None
    ip: str = "1.2.3.4"
    count: int | None = None  # remaining firings; None: until removed
    ratio: float = 1.0  # share of matching calls that fire
    latency_ms: int = 0
    hold_seconds: float = 0.0
    choices: list = field(default_factory=list)  # fire one of these at random instead
    fired: int = 0

    def matches(self, api: str) -> bool:
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return api.startswith(self.path[:-1])
        return api == self.path

    def public(self) -> dict:
        return asdict(self)


def _parse_action(spec: dict, max_hold: float) -> dict:
    kind = spec.get("kind", "errcode" if "errcode" in spec else None)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    out = {"kind": kind}
    if kind == "errcode":
        code = spec.get("errcode")
        if not isinstance(code, int) or isinstance(code, bool) or code == 0:
            raise ValueError("errcode fault needs a non-zero integer errcode, e.g. -1, 42001, 45009, 60020")
        out["errcode"] = code
        if spec.get("errmsg") is not None:
            if not isinstance(spec["errmsg"], str):
                raise ValueError("errmsg must be a string")
            out["errmsg"] = spec["errmsg"]
        ip = spec.get("ip", "1.2.3.4")
        if not isinstance(ip, str):
            raise ValueError("ip must be a string")
        out["ip"] = ip
    elif kind == "latency":
        ms = spec.get("latency_ms")
        if not isinstance(ms, (int, float)) or not 0 < ms <= max_hold * 1000:
            raise ValueError(f"latency fault needs latency_ms between 1 and {int(max_hold * 1000)}")
        out["latency_ms"] = int(ms)
    elif kind == "timeout":
        hold = spec.get("hold_seconds", 10.0)
        if not isinstance(hold, (int, float)) or not 0 < hold <= max_hold:
            raise ValueError(f"hold_seconds must be between 0 and {max_hold:g} (the emulator's max_hold_seconds)")
        out["hold_seconds"] = float(hold)
    return out


class Faults:
    def __init__(self, cfg, seed: int = 1):
        self.cfg = cfg
        self.rules: list[Fault] = []
        self.next_id = 1
        self.rng = random.Random(seed)

    def add(self, spec: dict) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        path = spec.get("path", "*")
        if not isinstance(path, str) or not path.strip():
            raise ValueError("path must be an API path such as 'user/get', a prefix such as 'message/*', or '*'")
        path = "*" if path.strip() == "*" else api_name(path)
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError("count must be a whole number ≥ 1 (the next K matching calls)")
        ratio = spec.get("ratio", 1.0)
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
            raise ValueError("ratio must be a share in (0, 1]")
        if "seed" in spec:
            self.rng.seed(spec["seed"])
        choices = spec.get("choices") or []
        if not isinstance(choices, list):
            raise ValueError("choices must be a list of faults")
        parsed_choices = [_parse_action(c if isinstance(c, dict) else {}, self.cfg.max_hold_seconds) for c in choices]
        base = {} if parsed_choices else _parse_action(spec, self.cfg.max_hold_seconds)
        f = Fault(
            id=self.next_id,
            path=path,
            count=count,
            ratio=float(ratio),
            choices=parsed_choices,
            kind=base.get("kind", "mix"),
            errcode=base.get("errcode"),
            errmsg=base.get("errmsg"),
            ip=base.get("ip", "1.2.3.4"),
            latency_ms=base.get("latency_ms", 0),
            hold_seconds=base.get("hold_seconds", 0.0),
        )
        self.next_id += 1
        self.rules.append(f)
        return f

    def remove(self, fault_id: int) -> bool:
        before = len(self.rules)
        self.rules = [f for f in self.rules if f.id != fault_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, api: str) -> tuple[int, dict | None]:
        """(added latency in ms, the terminal action or None) for one call to `api`."""
        latency = 0
        action = None
        for f in list(self.rules):
            if not f.matches(api):
                continue
            if f.ratio < 1 and self.rng.random() >= f.ratio:
                continue
            act = (
                self.rng.choice(f.choices)
                if f.choices
                else {
                    "kind": f.kind,
                    "errcode": f.errcode,
                    "errmsg": f.errmsg,
                    "ip": f.ip,
                    "latency_ms": f.latency_ms,
                    "hold_seconds": f.hold_seconds,
                }
            )
            if act["kind"] == "latency":
                latency += act["latency_ms"]
            elif action is None:
                action = dict(act, fault_id=f.id)
            else:
                continue  # a terminal action already fired; this rule keeps its count
            f.fired += 1
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self.rules.remove(f)
        return latency, action
