"""The emulator's members carry alias, biz_mail and text custom fields (extattr), as WeCom's user/get does."""

from __future__ import annotations

from bot.sync.records import attribute, user_from_api
from sim.directory import Directory, DirectoryError


def test_generated_and_added_members_have_the_attributes_ldap_shares():
    d = Directory.generate(users=5, departments=2, seed=3)
    generated = [d.user_json(x) for x in list(d.users.values())[:5]]
    assert len(generated) == 5 and all(
        g["alias"] and g["biz_mail"] and g["extattr"]["attrs"][0]["name"] == "工号" for g in generated
    )
    u = d.add_user(
        {
            "userid": "emp1",
            "name": "员工",
            "alias": "Emp.One",
            "biz_mail": "Emp1@Corp.Example",
            "extattr": {"工号": "A0001"},
        }
    )
    out = d.user_json(u)
    assert out["alias"] == "Emp.One" and out["biz_mail"] == "Emp1@Corp.Example"
    assert out["extattr"] == {"attrs": [{"type": 0, "name": "工号", "text": {"value": "A0001"}}]}
    rec = user_from_api(out)
    assert attribute("extattr:工号", rec) == "A0001" and rec["biz_mail"] == "Emp1@Corp.Example"
    try:
        d.add_user({"userid": "emp2", "name": "二", "extattr": ["not", "an", "object"]})
    except DirectoryError as e:
        assert "extattr must be an object" in str(e)
    else:
        raise AssertionError("a malformed extattr was accepted")
