#!/usr/bin/python3
"""Every kind of module hook, through the test-only module mod_test_hooks (test/modules/):
iq handlers with priorities and their order (also across modules), pass/done and the core's
default, message and presence handlers in each phase (SD_PRE, SD_ROUTE, SD_UNDELIVERABLE),
filters on the way in and out (and on which worker each runs), session and stream-features
events, iq requests the server sends (sd_send_iq) with result, error and timeout, and hooks that
apply only on the hosts whose module list names the module."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SLOW, ServerTestCase, async_test, main, stanza_error,  # noqa
                     tag_is, to_str, body_of, world, x)

NS = 'urn:stanzad:test:hooks'
ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@localhost'     # never online
DAVE = 'dave@example.test'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', CAROL: 'carol pw', DAVE: 'dave pw'}


def h(el, name):
    return el.find('{%s}%s' % (NS, name))


def is_request(el, name):
    return (tag_is(el, 'iq') and el.get('type') in ('get', 'set') and len(el) > 0
            and el[0].tag == '{%s}%s' % (NS, name))


class HookCase(ServerTestCase):
    users = USERS

    async def order(self, c, stop=None, to='localhost'):
        attrs = " stop='%s'" % stop if stop else ''
        return await c.iq('get', "<order xmlns='%s'%s/>" % (NS, attrs), to=to)

    def steps(self, r):
        o = h(r, 'order')
        self.assertIsNotNone(o, to_str(r))
        return [s.get('name') for s in o.findall('{%s}step' % NS)]

    async def worker_of(self, c, host='localhost'):
        r = await c.iq('get', "<whoami xmlns='%s'/>" % NS, to=host)
        w = h(r, 'whoami')
        self.assertIsNotNone(w, to_str(r))
        self.assertEqual(w.get('jid'), c.jid)
        return int(w.get('worker'))

    async def counters(self, c):
        r = await c.iq('get', "<counters xmlns='%s'/>" % NS, to='localhost')
        el = h(r, 'counters')
        return {k: int(v) for k, v in el.attrib.items()}

    async def barrier(self, sender, receiver, tag):
        """A later stanza from sender reaches receiver: everything sent before was processed."""
        await sender.send_message(receiver.jid, tag)
        await receiver.wait_message(tag)


class Hooks(HookCase):
    # test_session_data after test_hooks: its priority-0 handler on <order/> runs after theirs
    config = {'modules': ['test_hooks', 'test_session_data']}

    # -- iq: priorities, order, pass / done, the core's default

    @async_test
    async def test_priority_order(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.order(alice)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        # highest first; equal priorities in registration order, modules in load order
        self.assertEqual(self.steps(r), ['p10', 'p0a', 'p0b', 'sd0', 'm5'])
        workers = {s.get('worker') for s in h(r, 'order').findall('{%s}step' % NS)
                   if s.get('worker')}
        self.assertEqual(workers, {str(await self.worker_of(alice))})

    @async_test
    async def test_done_stops_the_chain(self):
        alice = await self.raw_login(ALICE, resource='r')
        self.assertEqual(self.steps(await self.order(alice, 'p10')), ['p10'])
        self.assertEqual(self.steps(await self.order(alice, 'p0a')), ['p10', 'p0a'])
        self.assertEqual(self.steps(await self.order(alice, 'p0b')), ['p10', 'p0a', 'p0b'])

    @async_test
    async def test_when_everyone_passes_the_core_answers(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.order(alice, 'none')
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))
        # the error carries the request as the handlers left it (RFC 6120 §8.3.1 allows it)
        self.assertIsNotNone(h(r, 'order'), to_str(r))

    @async_test
    async def test_destination_and_iq_type_select_handlers(self):
        alice = await self.raw_login(ALICE, resource='r')
        # registered for SD_TO_HOST only
        for to in (ALICE, BOB, None):
            r = await self.order(alice, to=to)
            self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))
        # <whoami/> is registered for get only
        r = await alice.iq('set', "<whoami xmlns='%s'/>" % NS, to='localhost')
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    # -- filters

    async def pair_on_two_workers(self):
        """alice and a bob session, on different workers when the kernel spreads them so
        (several tries); returns (alice, bob, alice's worker, bob's worker)."""
        alice = await self.raw_login(ALICE, resource='f')
        wa = await self.worker_of(alice)
        for i in range(8):
            bob = await self.raw_login(BOB, resource='f%d' % i)
            wb = await self.worker_of(bob)
            if wb != wa:
                break
        return alice, bob, wa, wb

    @async_test
    async def test_filters_in_and_out_run_on_the_right_workers(self):
        alice, bob, wa, wb = await self.pair_on_two_workers()
        await alice.send("<message to='%s' type='chat'><body>marked</body><mark xmlns='%s'/>"
                         "</message>" % (bob.jid, NS))
        m = await bob.wait_message('marked')
        fin, fout = h(m, 'filtered-in'), h(m, 'filtered-out')
        self.assertIsNotNone(fin, to_str(m))
        self.assertIsNotNone(fout, to_str(m))
        self.assertEqual(int(fin.get('worker')), wa)      # the sender's worker
        self.assertEqual(int(fout.get('worker')), wb)     # the recipient's worker
        self.assertEqual(fout.get('session'), bob.jid)
        # unmarked traffic is left alone
        await alice.send_message(bob.jid, 'plain')
        m = await bob.wait_message('plain')
        self.assertIsNone(h(m, 'filtered-in'))
        self.assertIsNone(h(m, 'filtered-out'))

    @async_test
    async def test_filters_drop(self):
        alice = await self.raw_login(ALICE, resource='d')
        bob = await self.raw_login(BOB, resource='d')
        await alice.send("<message to='%s'><body>in-dropped</body><drop-in xmlns='%s'/></message>"
                         % (bob.jid, NS))
        await alice.send("<message to='%s'><body>out-dropped</body><drop-out xmlns='%s'/>"
                         "</message>" % (bob.jid, NS))
        # an iq dropped by the in-filter gets no answer at all
        await alice.send("<iq type='get' id='dropped-iq' to='localhost'><whoami xmlns='%s'/>"
                         "<drop-in xmlns='%s'/></iq>" % (NS, NS))
        await self.barrier(alice, bob, 'after the drops')
        self.assertEqual(bob.messages('in-dropped') + bob.messages('out-dropped'), [])
        await alice.iq('get', "<whoami xmlns='%s'/>" % NS, to='localhost')
        self.assertFalse([e for e in alice.history if e.get('id') == 'dropped-iq'])

    @async_test
    async def test_filter_out_sees_server_generated_stanzas(self):
        alice = await self.raw_login(ALICE, resource='s')
        w = await self.worker_of(alice)
        await alice.send("<message to='localhost'><body>hi</body><mark xmlns='%s'/></message>"
                         % NS)
        m = await alice.wait_message('echo: hi')
        # the echo is the module's own stanza (it copies the mark): no in-filter ran on it, the
        # out-filter did, on alice's worker
        self.assertIsNone(h(m, 'filtered-in'), to_str(m))
        self.assertEqual(int(h(m, 'filtered-out').get('worker')), w, to_str(m))

    # -- message handlers

    @async_test
    async def test_message_pre_drops_and_rewrites(self):
        alice = await self.raw_login(ALICE, resource='m', presence=True)
        bob = await self.raw_login(BOB, resource='m', presence=True)   # available: bare JID
        await alice.send_message(bob.jid, 'drop me')
        await alice.send_message(BOB, 'rewrite:to the bare JID')
        m = await bob.wait_message('rewritten:to the bare JID')
        self.assertEqual(m.get('from'), alice.jid)
        self.assertEqual(bob.messages('drop me'), [])
        # a message to oneself is SD_TO_SELF, hooked too
        await alice.send_message(ALICE, 'rewrite:self')
        await alice.wait_message('rewritten:self')

    @async_test
    async def test_message_to_the_host_is_routed_to_the_module(self):
        alice = await self.raw_login(ALICE, resource='e')
        w = await self.worker_of(alice)
        await alice.send_message('localhost', 'hello host', type='chat')
        m = await alice.wait_message('echo: hello host')
        self.assertEqual(m.get('from'), 'localhost')
        self.assertEqual(m.get('type'), 'chat')
        self.assertEqual(int(h(m, 'handled').get('worker')), w)

    @async_test
    async def test_undeliverable(self):
        alice = await self.raw_login(ALICE, resource='u')
        for to in (CAROL, 'nosuch@localhost', CAROL + '/gone'):
            await alice.send_message(to, 'bounce-custom', iid='b1')
            m = await alice.wait_message('undeliverable: %s' % to)
            self.assertEqual(m.get('from'), 'localhost')
        # the module's notice replaced the core's error
        self.assertFalse([e for e in alice.history if e.get('id') == 'b1'
                          and e.get('type') == 'error'])
        # other bodies pass: the core's default answers
        await alice.send_message(CAROL, 'plain', type='chat', iid='b2')
        err = await alice.wait_for(lambda e: e.get('id') == 'b2', what='the error')
        self.assertEqual(stanza_error(err), ('cancel', 'service-unavailable'), to_str(err))

    # -- presence handlers

    @async_test
    async def test_presence_pre_drops(self):
        alice = await self.raw_login(ALICE, resource='p')
        bob = await self.raw_login(BOB, resource='p')
        await alice.send("<presence to='%s'><status>hide-me</status></presence>" % bob.jid)
        await alice.send("<presence to='%s'><status>seen</status></presence>" % bob.jid)
        p = await bob.wait_presence(frm=alice.jid)
        self.assertEqual(p.find('{jabber:client}status').text, 'seen')
        self.assertFalse([e for e in bob.history if tag_is(e, 'presence')
                          and e.findtext('{jabber:client}status') == 'hide-me'])

    @async_test
    async def test_presence_to_the_host(self):
        alice = await self.raw_login(ALICE, resource='ph')
        await alice.send("<presence to='localhost'><status>ping</status></presence>")
        p = await alice.wait_presence(frm='localhost')
        self.assertEqual(p.findtext('{jabber:client}status'), 'pong')

    @async_test
    async def test_presence_undeliverable(self):
        # (presence to an offline *full* JID is dropped by the core without this phase)
        alice = await self.raw_login(ALICE, resource='pu', presence=True)
        for to in (CAROL, 'nosuch@localhost'):
            await alice.send("<presence to='%s'><status>where-are-you</status></presence>" % to)
            p = await alice.wait_presence(frm='localhost')
            self.assertEqual(p.findtext('{jabber:client}status'), 'undeliverable: %s' % to)

    # -- events

    @async_test
    async def test_session_events(self):
        watcher = await self.raw_login(BOB, resource='watch')
        before = await self.counters(watcher)
        c = await self.raw_login(ALICE, resource='ev')
        await c.close()
        deadline = time.monotonic() + 10 * SLOW
        while True:
            now = await self.counters(watcher)
            if now['closed'] - before['closed'] >= 1:
                break
            self.assertLess(time.monotonic(), deadline, (before, now))
            await asyncio.sleep(0.05)
        self.assertEqual(now['bound'] - before['bound'], 1)
        self.assertEqual(now['closed'] - before['closed'], 1)
        log = self.server.log_text(self._log_start)
        self.assertIn('[test_hooks] bound alice@localhost/ev on worker', log)
        self.assertIn('[test_hooks] closed alice@localhost/ev', log)

    @async_test
    async def test_stream_features_event(self):
        c = self.raw(name='features')
        await c.connect()
        f = h(await c.open_stream(), 'test-feature')
        self.assertIsNotNone(f, to_str(c.features))
        self.assertEqual((f.get('authenticated'), f.get('host')), ('0', 'localhost'))
        await c.close()
        c = self.raw(host='example.test', name='features2')
        await c.login('dave', USERS[DAVE], 'r')
        f = h(c.features, 'test-feature')
        self.assertEqual((f.get('authenticated'), f.get('host')), ('1', 'example.test'))

    # -- sd_send_iq

    @async_test
    async def test_send_iq_result_error_timeout(self):
        alice = await self.raw_login(ALICE, resource='ask')
        w = await self.worker_of(alice)

        async def ask(timeout, answer):
            r = await alice.iq('set', "<ask xmlns='%s' timeout='%d'/>" % (NS, timeout),
                               to='localhost')
            self.assertEqual(r.get('type'), 'result', to_str(r))
            q = await alice.wait_for(lambda e: is_request(e, 'question'), what='the question')
            self.assertEqual((q.get('from'), q.get('to'), q.get('type')),
                             ('localhost', alice.jid, 'get'))
            if answer == 'result':
                await alice.send("<iq type='result' id='%s' to='localhost'/>" % q.get('id'))
            elif answer == 'error':
                await alice.send("<iq type='error' id='%s' to='localhost'><error type='cancel'>"
                                 "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-"
                                 "stanzas'/></error></iq>" % q.get('id'))
            m = await alice.wait_for(lambda e: tag_is(e, 'message')
                                     and (body_of(e) or '').startswith('asked: '),
                                     timeout=(timeout / 1000 + 10) * SLOW, what='the outcome')
            return body_of(m)

        self.assertEqual(await ask(5000, 'result'), 'asked: result started=%d worker=%d' % (w, w))
        self.assertEqual(await ask(5000, 'error'), 'asked: error started=%d worker=%d' % (w, w))
        t0 = time.monotonic()
        self.assertEqual(await ask(300, None), 'asked: timeout started=%d worker=%d' % (w, w))
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)

    @async_test
    async def test_send_iq_answer_must_come_from_the_entity_asked(self):
        alice = await self.raw_login(ALICE, resource='ask2')
        bob = await self.raw_login(BOB, resource='ask2')
        await alice.iq('set', "<ask xmlns='%s' timeout='600'/>" % NS, to='localhost')
        q = await alice.wait_for(lambda e: is_request(e, 'question'), what='the question')
        # bob answers with alice's id: not the entity asked, so it is no answer
        await bob.send("<iq type='result' id='%s' to='localhost'/>" % q.get('id'))
        m = await alice.wait_for(lambda e: tag_is(e, 'message')
                                 and (body_of(e) or '').startswith('asked: '),
                                 what='the outcome')
        self.assertTrue(body_of(m).startswith('asked: timeout'), body_of(m))


class PerHost(HookCase):
    """test_hooks enabled for example.test only (hosts.[i].modules): its hooks do not apply on
    localhost."""

    @classmethod
    def setUpClass(cls):
        w = world()
        cls.config = {
            'hosts': [{'name': 'localhost', 'certificate': w.certs['localhost'][0],
                       'key': w.certs['localhost'][1]},
                      {'name': 'example.test', 'certificate': w.certs['example.test'][0],
                       'key': w.certs['example.test'][1], 'modules': ['test_hooks']}]}
        super().setUpClass()

    @async_test
    async def test_iq_only_on_the_enabled_host(self):
        dave = await self.raw_login(DAVE, resource='r')
        self.assertEqual(self.steps(await self.order(dave, to='example.test')),
                         ['p10', 'p0a', 'p0b', 'm5'])
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.order(alice, to='localhost')
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))
        # the host of an iq is its destination: alice may use example.test's module
        self.assertEqual(self.steps(await self.order(alice, to='example.test')),
                         ['p10', 'p0a', 'p0b', 'm5'])

    @async_test
    async def test_events_and_features_only_on_the_enabled_host(self):
        alice = self.raw(name='alice')
        await alice.login('alice', USERS[ALICE], 'r')
        self.assertIsNone(h(alice.features, 'test-feature'))
        dave = self.raw(host='example.test', name='dave')
        await dave.login('dave', USERS[DAVE], 'r')
        self.assertIsNotNone(h(dave.features, 'test-feature'))
        log = self.server.log_text(self._log_start)
        self.assertIn('[test_hooks] bound %s' % dave.jid, log)
        self.assertNotIn('[test_hooks] bound %s' % alice.jid, log)

    @async_test
    async def test_filters_only_on_the_enabled_host(self):
        alice = await self.raw_login(ALICE, resource='fa')
        bob = await self.raw_login(BOB, resource='fb')
        await alice.send("<message to='%s'><body>m1</body><mark xmlns='%s'/></message>"
                         % (bob.jid, NS))
        m = await bob.wait_message('m1')
        self.assertIsNone(h(m, 'filtered-in'), to_str(m))
        self.assertIsNone(h(m, 'filtered-out'), to_str(m))


class Inbound(HookCase):
    """ABI 1.1: inbound handlers see every stanza on its way to an account, once."""
    config = {'modules': ['test_hooks']}

    @async_test
    async def test_inbound_handler_refuses_with_an_error_to_the_sender(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b', presence=True)
        await alice.send("<message type='chat' id='r1' to='%s'><body>inbound-refuse</body>"
                         "</message>" % BOB)
        err = await alice.wait_for(lambda e: tag_is(e, 'message') and e.get('id') == 'r1')
        self.assertEqual(err.get('type'), 'error', to_str(err))
        self.assertEqual(stanza_error(err)[1], 'not-acceptable', to_str(err))
        self.assertIn('refused inbound', to_str(err))
        self.assertEqual(err.get('from'), BOB, to_str(err))
        await self.barrier(alice, bob, 'after-refuse')
        got = [e for e in await bob.collect(0.2) if body_of(e) == 'inbound-refuse']
        self.assertEqual(got, [])

    @async_test
    async def test_inbound_runs_once_for_full_bare_and_fallback(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b', presence=True)
        for to, want in ((BOB + '/b', 'full'), (BOB, 'bare'), (BOB + '/gone', 'full')):
            await alice.send_message(to, 'inbound-tag')
            m = await bob.wait_for(lambda e: body_of(e) == 'inbound-tag', what=to)
            marks = m.findall('{%s}inbound' % NS)
            # a full JID that is not there falls back to the bare JID without a second pass
            self.assertEqual(len(marks), 1, to_str(m))
            self.assertEqual(marks[0].get('to-type'), want, to_str(m))
            self.assertEqual(marks[0].get('session'), '0', to_str(m))
            self.assertEqual(marks[0].get('deferrable'), '0', to_str(m))
            self.assertEqual(marks[0].get('host'), 'localhost', to_str(m))

    @async_test
    async def test_deliver_skips_inbound_route_does_not(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b', presence=True)
        for how, marks in (('route', 1), ('deliver', 0)):
            await alice.send_message('localhost', '%s:%s' % (how, BOB))
            m = await bob.wait_for(lambda e: body_of(e) == 'inbound-tag', what=how)
            self.assertEqual(m.get('from'), 'localhost', to_str(m))
            self.assertEqual(len(m.findall('{%s}inbound' % NS)), marks, how + to_str(m))

    @async_test
    async def test_inbound_sees_messages_to_oneself(self):
        alice = await self.raw_login(ALICE, resource='a', presence=True)
        await alice.send("<message type='chat'><body>inbound-tag</body></message>")
        m = await alice.wait_for(lambda e: body_of(e) == 'inbound-tag')
        self.assertEqual(len(m.findall('{%s}inbound' % NS)), 1, to_str(m))

    @async_test
    async def test_inbound_drops_presence(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b', presence=True)
        await alice.send("<presence to='%s'><status>inbound-drop</status></presence>" % BOB)
        await alice.send("<presence to='%s'><status>kept</status></presence>" % BOB)
        kept = await bob.wait_for(lambda e: tag_is(e, 'presence') and
                                  e.findtext('{jabber:client}status') == 'kept')
        self.assertEqual(kept.get('from'), ALICE + '/a')
        got = [e for e in await bob.collect(0.2)
               if e.findtext('{jabber:client}status') == 'inbound-drop']
        self.assertEqual(got, [])

    @async_test
    async def test_inbound_answers_an_iq_for_the_account(self):
        alice = await self.raw_login(ALICE, resource='a')
        bob = await self.raw_login(BOB, resource='b')
        r = await alice.iq('get', "<inbound-answer xmlns='%s'/>" % NS, to=BOB + '/b')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertIsNotNone(h(r, 'answered-inbound'), to_str(r))
        self.assertEqual(r.get('from'), BOB + '/b', to_str(r))
        await self.barrier(alice, bob, 'after-iq')
        self.assertEqual([e for e in await bob.collect(0.2) if tag_is(e, 'iq')], [])


class PreAuth(HookCase):
    """ABI 1.1: iq before authentication (SD_TO_PREAUTH), client address, any-payload iq."""
    config = {'modules': ['test_hooks']}

    async def plain_stream(self, tls=True):
        c = self.raw()
        await c.connect()
        await c.open_stream('localhost')
        if tls:
            await c.starttls()
            await c.open_stream('localhost')
        return c

    @async_test
    async def test_preauth_iq_is_answered_on_the_stream(self):
        for tls in (True, False):
            c = await self.plain_stream(tls)
            r = await c.iq('get', "<preauth xmlns='%s'/>" % NS)
            self.assertEqual(r.get('type'), 'result', to_str(r))
            p = h(r, 'preauth')
            self.assertEqual(p.get('peer'), '127.0.0.1', to_str(r))
            self.assertEqual(p.get('secure'), '1' if tls else '0', to_str(r))
            self.assertEqual(p.get('session'), '0', to_str(r))
            self.assertEqual(p.get('host'), 'localhost', to_str(r))
            self.assertIsNone(r.get('to'), to_str(r))  # the client has no address yet
            # addressed to the host itself is the same thing
            r = await c.iq('get', "<preauth xmlns='%s'/>" % NS, to='localhost')
            self.assertEqual(r.get('type'), 'result', to_str(r))

    @async_test
    async def test_deferred_preauth_iq_keeps_order_then_login_works(self):
        c = await self.plain_stream()
        await c.send("<iq type='set' id='l1'><preauth-later xmlns='%s'/></iq>"
                     "<iq type='get' id='l2'><preauth xmlns='%s'/></iq>" % (NS, NS))
        first = await c.wait_for(lambda e: tag_is(e, 'iq'))
        second = await c.wait_for(lambda e: tag_is(e, 'iq'))
        self.assertEqual([first.get('id'), second.get('id')], ['l1', 'l2'])
        self.assertEqual(first.get('type'), 'result', to_str(first))
        self.assertEqual(h(first, 'preauth-later').get('session'), '0', to_str(first))
        # the same stream then logs in as usual
        el = await c.authenticate('alice', USERS[ALICE])
        self.assertTrue(tag_is(el, 'success', 'urn:ietf:params:xml:ns:xmpp-sasl'), to_str(el))
        await c.open_stream('localhost')
        await c.bind('r')
        self.assertEqual(await self.worker_of(c) >= 0, True)

    @async_test
    async def test_preauth_iq_nobody_takes_is_not_authorized(self):
        c = await self.plain_stream()
        await c.send("<iq type='get' id='u1'><query xmlns='urn:example:nothing'/></iq>")
        await c.expect_stream_error('not-authorized')

    @async_test
    async def test_preauth_iq_to_an_account_is_not_authorized(self):
        c = await self.plain_stream()
        await c.send("<iq type='get' id='u2' to='%s'><preauth xmlns='%s'/></iq>" % (BOB, NS))
        await c.expect_stream_error('not-authorized')

    @async_test
    async def test_preauth_message_is_not_authorized(self):
        c = await self.plain_stream()
        await c.send("<message to='%s'><body>hi</body></message>" % BOB)
        await c.expect_stream_error('not-authorized')

    @async_test
    async def test_preauth_handlers_do_not_see_logged_in_iqs(self):
        alice = await self.raw_login(ALICE, resource='a')
        r = await alice.iq('get', "<preauth xmlns='%s'/>" % NS)
        self.assertEqual(r.get('type'), 'error', to_str(r))
        self.assertEqual(stanza_error(r)[1], 'service-unavailable', to_str(r))

    @async_test
    async def test_session_peer_and_secure(self):
        alice = await self.raw_login(ALICE, resource='a')
        r = await alice.iq('get', "<whoami xmlns='%s'/>" % NS, to='localhost')
        w = h(r, 'whoami')
        self.assertEqual(w.get('peer'), '127.0.0.1', to_str(r))
        self.assertEqual(w.get('secure'), '1', to_str(r))

    @async_test
    async def test_stanza_parse(self):
        alice = await self.raw_login(ALICE, resource='a')

        async def parse(text):
            return await alice.iq('get', "<parse xmlns='%s'>%s</parse>" % (NS, x(text)),
                                  to='localhost')
        msg = ("<message to='bob@localhost' type='chat' id='m1'><body>hi &amp; bye</body>"
               "<thing xmlns='urn:example:ext' a='1'><deep/></thing></message>")
        r = await parse(msg)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        p = h(r, 'parsed')
        self.assertEqual((p.get('kind'), p.get('type'), p.get('to')),
                         ('message', 'chat', 'bob@localhost'), to_str(r))
        self.assertEqual(p.text, msg)  # serialised again, byte for byte
        r = await parse("<presence type='subscribe' to='bob@localhost'><status>s</status>"
                        "</presence>")
        self.assertEqual(h(r, 'parsed').get('kind'), 'presence', to_str(r))
        for bad in ('', 'not xml', '<message><body>open', '<foo xmlns="urn:x"/>',
                    '<message/><message/>', '<!-- c --><message/>',
                    '<!DOCTYPE message [<!ENTITY e "x">]><message/>',
                    '<message><body>&e;</body></message>', '<?pi x?><message/>'):
            r = await parse(bad)
            self.assertEqual(stanza_error(r)[1], 'bad-request', bad + ': ' + to_str(r))

    @async_test
    async def test_iq_hook_for_any_payload(self):
        alice = await self.raw_login(ALICE, resource='a')
        r = await alice.iq('get', "<whatever xmlns='urn:stanzad:test:any'/>")
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(h(r, 'any').get('element'), 'whatever', to_str(r))
        r = await alice.iq('get', "<query xmlns='urn:example:unhandled'/>")
        self.assertEqual(stanza_error(r)[1], 'service-unavailable', to_str(r))


if __name__ == '__main__':
    main()
