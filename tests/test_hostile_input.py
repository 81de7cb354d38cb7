import json, time
from tests.conftest import message_event, signed, post_callback

def test_probe(client, redis):
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    def show(label, resp):
        print(label, resp.status_code, resp.get_data()[:120], redis.dbsize())
        redis.flushall()
    show("nested", post_callback(client, b'{"event":"seen","x":' + b"[" * 5000 + b"]" * 5000 + b"}"))
    p = message_event("u1", "yes"); p["timestamp"] = 10**400
    show("huge ts", post_callback(client, p))
    show("surrogate id", post_callback(client, json.dumps(message_event("\ud800", "yes")).encode()))
    show("surrogate lang", post_callback(client, json.dumps(message_event("u2", "zz", language="\udfff")).encode()))
    p = message_event("u3", "yes"); body, h = signed(p); h["X-Viber-Content-Signature"] = "\u00e9" * 64
    show("latin1 sig", client.post("/viber/webhook", data=body, headers=h))
    show("big", post_callback(client, b'{"event":"x","a":"' + b"a" * 70000 + b'"}'))
    show("unsigned", client.post("/viber/webhook", data=b"{}"))
    show("raw surrogate bytes", post_callback(client, json.dumps(message_event("u4", "no")).replace('"u4"', '"\\ud800"').encode()))
    show("raw ed a0 80", post_callback(client, json.dumps(message_event("u5", "no")).encode().replace(b'"u5"', b'"\xed\xa0\x80"')))
