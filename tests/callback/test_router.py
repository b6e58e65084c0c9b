"""The router finds a callback's handler among the routes for its (MsgType, Event): the same
handler as testing every route in order (most specific first, then registration order)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.callback import Inbound, Router

msg_types = st.sampled_from(["event", "text", "image"])
events = st.sampled_from(["click", "change_contact", "template_card_event", None])
keys = st.sampled_from(["help", "pending", "approve", None])
change_types = st.sampled_from(["update_user", "create_user", None])


def every_route_in_order(router: Router, msg: Inbound):
    for match, fn in router._routes:
        if all(msg.get(k) == v for k, v in match.items()):
            return fn
    return None


routes = st.lists(
    st.one_of(
        st.tuples(st.just("message"), msg_types),
        st.tuples(
            st.just("event"), st.sampled_from(["click", "change_contact", "template_card_event"]), keys, change_types
        ),
        st.tuples(st.just("card"), keys),
    ),
    max_size=12,
)
# what the XML parser gives for nested or repeated elements: a dict, a list
odd = st.sampled_from([{"a": "b"}, ["click", "click"], None])
messages = st.lists(
    st.fixed_dictionaries(
        {"MsgType": st.one_of(msg_types, odd)},
        optional={
            "Event": st.one_of(events.filter(bool), odd),
            "EventKey": st.one_of(keys.filter(bool), odd),
            "ChangeType": change_types.filter(bool),
        },
    ),
    min_size=1,
    max_size=8,
)


@given(routes, messages)
def test_the_handler_found_is_the_first_matching_route(specs, fields):
    router = Router()
    for i, spec in enumerate(specs):

        def handler(msg, ctx, i=i):
            return i

        if spec[0] == "message":
            router.message(spec[1])(handler)
        elif spec[0] == "event":
            router.event(spec[1], key=spec[2], change_type=spec[3])(handler)
        else:
            router.card_button(spec[1])(handler)
    for f in fields:
        msg = Inbound(f)
        assert router.resolve(msg) is every_route_in_order(router, msg)


def test_a_route_added_later_is_found():
    router = Router()
    router.message("text")(lambda msg, ctx: "any text")
    msg = Inbound({"MsgType": "event", "Event": "click", "EventKey": "help"})
    assert router.resolve(msg) is None  # remembered as no candidates for (event, click)

    def on_help(msg, ctx):
        return "help"

    router.event("click", key="help")(on_help)
    assert router.resolve(msg) is on_help
