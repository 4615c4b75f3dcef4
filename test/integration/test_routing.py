#!/usr/bin/python3
"""Routing between local sessions: full and bare JIDs, priorities, 'from' stamping, the stanza
errors of RFC 6120 §8.3 / RFC 6121 §8, directed presence."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, NS_PING, stanza_error, tag_is,  # noqa
                     body_of, to_str)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@localhost'
DAVE = 'dave@example.test'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', CAROL: 'carol pw', DAVE: 'dave pw'}
UNKNOWN_NS = "<query xmlns='urn:example:stanzad:unknown'/>"


def is_request(el):
    return tag_is(el, 'iq') and el.get('type') in ('get', 'set')


class Routing(ServerTestCase):
    users = USERS

    async def barrier(self, sender, receivers, tag='barrier'):
        """sender → each receiver's full JID; returns once all have it. A stanza the sender
        routed to a receiver before this arrives before the barrier (in-order processing)."""
        for i, r in enumerate(receivers):
            await sender.send_message(r.jid, '%s-%d' % (tag, i))
        for i, r in enumerate(receivers):
            await r.wait_message('%s-%d' % (tag, i))

    async def online(self, jid, resource, priority, witness):
        """A session that sent available presence with priority, known to be processed (the
        witness has received a later stanza of it)."""
        c = await self.raw_login(jid, resource=resource)
        await c.send_presence(priority=priority)
        await self.barrier(c, [witness], 'settle-' + resource)
        return c

    def got(self, client, body):
        return [e for e in client.history if tag_is(e, 'message') and body_of(e) == body]

    # -- full JIDs

    @async_test
    async def test_message_to_full_jid(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b')
        await alice.send_message(bob.jid, 'hi <b> & "bob"', type='chat', iid='m1')
        m = await bob.wait_message('hi <b> & "bob"')
        self.assertEqual(m.get('from'), ALICE + '/a')
        self.assertEqual(m.get('to'), BOB + '/b')
        self.assertEqual(m.get('type'), 'chat')
        self.assertEqual(m.get('id'), 'm1')

    @async_test
    async def test_slixmpp_users_chat(self):
        alice = await self.client(ALICE, resource='sa', mech='SCRAM-SHA-256')
        bob = await self.client(BOB, resource='sb', mech='SCRAM-SHA-1')
        alice.send_chat(BOB + '/sb', 'ping from slixmpp')
        m = await bob.wait_message('ping from slixmpp')
        self.assertEqual(str(m['from']), ALICE + '/sa')
        bob.send_chat(m['from'], 'pong')
        m = await alice.wait_message('pong')
        self.assertEqual(str(m['from']), BOB + '/sb')

    @async_test
    async def test_three_users(self):
        a = await self.raw_login(ALICE, resource='r')
        b = await self.raw_login(BOB, resource='r')
        c = await self.raw_login(CAROL, resource='r')
        pairs = [(a, b), (b, c), (c, a), (a, c), (b, a), (c, b)]
        for s, r in pairs:
            await s.send_message(r.jid, 'from %s to %s' % (s.jid, r.jid))
        for s, r in pairs:
            m = await r.wait_message('from %s to %s' % (s.jid, r.jid))
            self.assertEqual(m.get('from'), s.jid)
        for cl in (a, b, c):
            self.assertEqual(len(cl.messages()), 2, [to_str(e) for e in cl.messages()])

    @async_test
    async def test_between_hosts(self):
        alice = await self.raw_login(ALICE, resource='a')
        dave = await self.raw_login(DAVE, resource='d')
        await alice.send_message(dave.jid, 'across hosts')
        m = await dave.wait_message('across hosts')
        self.assertEqual(m.get('from'), alice.jid)

    @async_test
    async def test_iq_round_trip_between_full_jids(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b')
        await alice.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>"
                         % bob.jid)
        iq = await bob.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == 'v1', what='iq v1')
        self.assertEqual(iq.get('from'), alice.jid)
        await bob.send("<iq type='result' id='v1' to='%s'/>" % alice.jid)
        r = await alice.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == 'v1',
                                 what='iq v1 result')
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(r.get('from'), bob.jid)

    # -- bare JIDs and priorities (RFC 6121 §8.5.2)

    @async_test
    async def test_bare_jid_goes_to_highest_priority(self):
        alice = await self.raw_login(ALICE, resource='a')
        hi1 = await self.online(BOB, 'hi1', 5, alice)
        hi2 = await self.online(BOB, 'hi2', 5, alice)
        lo = await self.online(BOB, 'lo', 1, alice)
        neg = await self.online(BOB, 'neg', -1, alice)
        silent = await self.raw_login(BOB, resource='silent')   # bound, never sent presence

        # equal top priority: every one of them
        for mtype in ('chat', 'normal'):
            body = 'bare %s 1' % mtype
            await alice.send_message(BOB, body, type=mtype)
            for r in (hi1, hi2):
                m = await r.wait_message(body)
                self.assertEqual(m.get('from'), alice.jid)
            await self.barrier(alice, [lo, neg, silent], 'b1' + mtype)
            for r in (lo, neg, silent):
                self.assertEqual(self.got(r, body), [], '%s got %r' % (r.jid, body))

        # the top ones go unavailable: the next priority takes over
        for r in (hi1, hi2):
            await r.send_presence(type='unavailable')
        await self.barrier(hi1, [lo], 'settle-a')
        await self.barrier(hi2, [lo], 'settle-b')
        await alice.send_message(BOB, 'bare 2')
        await lo.wait_message('bare 2')
        await self.barrier(alice, [hi1, hi2, neg, silent], 'b2')
        for r in (hi1, hi2, neg, silent):
            self.assertEqual(self.got(r, 'bare 2'), [], '%s got "bare 2"' % r.jid)

        # a priority change by presence counts too
        await neg.send_presence(priority=3)
        await self.barrier(neg, [lo], 'settle-c')
        await alice.send_message(BOB, 'bare 3')
        await neg.wait_message('bare 3')
        await self.barrier(alice, [lo], 'b3')
        self.assertEqual(self.got(lo, 'bare 3'), [])

        # only negative priorities left: none of them gets a bare-JID message
        await neg.send_presence(priority=-5)
        await lo.send_presence(priority=-1)
        await self.barrier(neg, [lo], 'settle-d')
        await self.barrier(lo, [neg], 'settle-e')
        await alice.send_message(BOB, 'bare 4')
        await self.barrier(alice, [hi1, hi2, lo, neg, silent], 'b4')
        for r in (hi1, hi2, lo, neg, silent):
            self.assertEqual(self.got(r, 'bare 4'), [], '%s got "bare 4"' % r.jid)

    @async_test
    async def test_headline_to_bare_jid_goes_to_all_non_negative(self):
        alice = await self.raw_login(ALICE, resource='a')
        r5 = await self.online(CAROL, 'r5', 5, alice)
        r0 = await self.online(CAROL, 'r0', 0, alice)
        rn = await self.online(CAROL, 'rn', -1, alice)
        await alice.send_message(CAROL, 'news', type='headline')
        await r5.wait_message('news')
        await r0.wait_message('news')
        await self.barrier(alice, [rn])
        self.assertEqual(self.got(rn, 'news'), [])

    @async_test
    async def test_message_to_bare_jid_from_slixmpp(self):
        bob = await self.client(BOB, resource='only', mech='SCRAM-SHA-256')
        alice = await self.raw_login(ALICE, resource='a')
        bob.send_presence(ppriority=1)
        bob.send_chat(alice.jid, 'bob is online')   # processed after the presence
        await alice.wait_message('bob is online')
        await alice.send_message(BOB, 'to bare')
        m = await bob.wait_message('to bare')
        self.assertEqual(str(m['from']), alice.jid)

    # -- no spoofing

    @async_test
    async def test_from_is_stamped(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b')
        await alice.send_message(bob.jid, 'spoof 1', frm='mallory@localhost/evil')
        await alice.send_message(bob.jid, 'spoof 2', frm='carol@localhost')
        await alice.send_message(bob.jid, 'spoof 3', frm='localhost')
        await alice.send_message(bob.jid, 'spoof 4', frm=ALICE)
        for body in ('spoof 1', 'spoof 2', 'spoof 3', 'spoof 4'):
            m = await bob.wait_message(body)
            self.assertEqual(m.get('from'), alice.jid, to_str(m))
        await alice.send("<presence to='%s' from='mallory@localhost/x'/>" % bob.jid)
        p = await bob.wait_presence()
        self.assertEqual(p.get('from'), alice.jid)
        await alice.send("<iq type='get' id='sp' to='%s' from='mallory@localhost/x'>"
                         "<query xmlns='jabber:iq:version'/></iq>" % bob.jid)
        iq = await bob.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == 'sp', what='iq')
        self.assertEqual(iq.get('from'), alice.jid)

    # -- errors

    def assertStanzaError(self, el, condition, etype='cancel'):
        self.assertEqual(el.get('type'), 'error', to_str(el))
        self.assertEqual(stanza_error(el), (etype, condition), to_str(el))

    @async_test
    async def test_message_to_unknown_user(self):
        alice = await self.raw_login(ALICE, resource='a')
        await alice.send_message('nosuch@localhost', 'anyone?', iid='u1')
        err = await alice.wait_for(lambda e: tag_is(e, 'message') and e.get('id') == 'u1',
                                   what='the error for u1')
        self.assertStanzaError(err, 'service-unavailable')
        self.assertEqual(err.get('from'), 'nosuch@localhost')

    @async_test
    async def test_iq_to_unknown_user(self):
        alice = await self.raw_login(ALICE, resource='a')
        for to in ('nosuch@localhost', 'nosuch@localhost/res'):
            with self.subTest(to=to):
                r = await alice.iq('get', UNKNOWN_NS, to=to)
                self.assertStanzaError(r, 'service-unavailable')
                self.assertEqual(r.get('from'), to)

    @async_test
    async def test_iq_to_offline_full_jid(self):
        alice = await self.raw_login(ALICE, resource='a')
        await self.raw_login(BOB, resource='online')
        r = await alice.iq('get', "<query xmlns='jabber:iq:version'/>", to=BOB + '/offline')
        self.assertStanzaError(r, 'service-unavailable')
        self.assertEqual(r.get('from'), BOB + '/offline')

    @async_test
    async def test_unknown_domain(self):
        alice = await self.raw_login(ALICE, resource='a')
        await alice.send_message('someone@nowhere.invalid', 'hello?', iid='d1')
        err = await alice.wait_for(lambda e: tag_is(e, 'message') and e.get('id') == 'd1',
                                   what='the error for d1')
        self.assertStanzaError(err, 'remote-server-not-found')
        r = await alice.iq('get', UNKNOWN_NS, to='nowhere.invalid')
        self.assertStanzaError(r, 'remote-server-not-found')

    @async_test
    async def test_iq_to_own_bare_jid_is_answered_by_server(self):
        alice = await self.raw_login(ALICE, resource='a')
        other = await self.online(ALICE, 'other', 1, alice)
        r = await alice.iq('get', UNKNOWN_NS, to=ALICE)
        self.assertStanzaError(r, 'service-unavailable')
        self.assertEqual(r.get('from'), ALICE)
        # iq to a bare JID is never delivered to a resource
        await self.barrier(alice, [other])
        self.assertFalse([e for e in other.history if is_request(e)])

    @async_test
    async def test_iq_to_other_bare_jid_is_answered_by_server(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.online(BOB, 'b', 10, alice)
        r = await alice.iq('get', UNKNOWN_NS, to=BOB)
        self.assertStanzaError(r, 'service-unavailable')
        self.assertEqual(r.get('from'), BOB)
        await self.barrier(alice, [bob])
        self.assertFalse([e for e in bob.history if is_request(e)],
                         [to_str(e) for e in bob.history])

    @async_test
    async def test_iq_to_server_with_unknown_payload(self):
        alice = await self.raw_login(ALICE, resource='a')
        r = await alice.iq('get', UNKNOWN_NS, to='localhost')
        self.assertStanzaError(r, 'service-unavailable')
        self.assertEqual(r.get('from'), 'localhost')
        r = await alice.iq('set', UNKNOWN_NS, to='example.test')
        self.assertStanzaError(r, 'service-unavailable')
        r = await alice.iq('get', UNKNOWN_NS)   # no 'to': the account itself
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    @async_test
    async def test_malformed_to(self):
        alice = await self.raw_login(ALICE, resource='a')
        for bad in ('@localhost', 'alice@localhost/', 'a@b@localhost', 'alice@'):
            with self.subTest(to=bad):
                r = await alice.iq('get', UNKNOWN_NS, to=bad)
                self.assertStanzaError(r, 'jid-malformed', 'modify')
        await alice.send_message('@localhost', 'bad', iid='mal1')
        err = await alice.wait_for(lambda e: tag_is(e, 'message') and e.get('id') == 'mal1',
                                   what='the error for mal1')
        self.assertStanzaError(err, 'jid-malformed', 'modify')
        # the session is still fine
        bob = await self.raw_login(BOB, resource='b')
        await alice.send_message(bob.jid, 'after malformed')
        await bob.wait_message('after malformed')
        self.assertIsNone(alice.stream_error)

    @async_test
    async def test_no_error_in_reply_to_an_error(self):
        alice = await self.raw_login(ALICE, resource='a')
        await alice.send("<message to='nosuch@localhost' type='error' id='e1'>"
                         "<error type='cancel'><item-not-found "
                         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        await alice.iq('get', "<ping xmlns='%s'/>" % NS_PING, to='localhost')
        self.assertFalse([e for e in alice.history if e.get('id') == 'e1'],
                         'the server answered an error with an error')

    # -- presence

    @async_test
    async def test_directed_presence_to_full_jid(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b')
        await alice.send("<presence to='%s'><show>away</show><status>brb</status></presence>"
                         % bob.jid)
        p = await bob.wait_presence(frm=alice.jid)
        self.assertIsNone(p.get('type'))
        self.assertEqual(p.find('{jabber:client}status').text, 'brb')
        await alice.send_presence(bob.jid, type='unavailable')
        await bob.wait_presence(frm=alice.jid, type='unavailable')

    @async_test
    async def test_directed_presence_to_bare_jid(self):
        alice = await self.raw_login(ALICE, resource='a')
        b1 = await self.online(BOB, 'b1', 1, alice)
        b2 = await self.online(BOB, 'b2', 0, alice)
        await alice.send_presence(BOB)
        await b1.wait_presence(frm=alice.jid)
        await b2.wait_presence(frm=alice.jid)


if __name__ == '__main__':
    main()
