#!/usr/bin/python3
"""Sessions: resource conflicts (replace / refuse / random), the one-place rule, unavailable
presence when a session ends, and 1,000 concurrent logged-in connections."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, RawClient, SLOW,  # noqa
                     NS_PING, stanza_error, tag_is, to_str, log)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@localhost'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', CAROL: 'carol pw'}


async def round_trip(sender, receiver, body):
    """sender → receiver's full JID; returns the message as received."""
    await sender.send_message(receiver.jid, body)
    m = await receiver.wait_message(body)
    assert m.get('from') == sender.jid, to_str(m)
    return m


class ConflictReplace(ServerTestCase):
    users = USERS

    @async_test
    async def test_same_resource_replaces_old_session(self):
        old = await self.client(ALICE, resource='phone', mech='SCRAM-SHA-256')
        new = await self.raw_login(ALICE, resource='phone')
        self.assertEqual(new.jid, ALICE + '/phone')
        await old.wait_stream_error('conflict')
        await old.wait_disconnected()
        bob = await self.raw_login(BOB, resource='b')
        await round_trip(bob, new, 'to the new session')
        await round_trip(new, bob, 'from the new session')

    @async_test
    async def test_raw_replaced_session_gets_conflict_stream_error(self):
        old = await self.raw_login(ALICE, resource='same')
        new = await self.raw_login(ALICE, resource='same')
        await old.expect_stream_error('conflict')
        self.assertEqual(new.jid, ALICE + '/same')

    @async_test
    async def test_different_resources_coexist(self):
        a1 = await self.raw_login(ALICE, resource='one')
        a2 = await self.raw_login(ALICE, resource='two')
        bob = await self.raw_login(BOB, resource='b')
        await round_trip(bob, a1, 'to one')
        await round_trip(bob, a2, 'to two')
        self.assertIsNone(a1.stream_error)
        self.assertIsNone(a2.stream_error)

    async def directed_presence_then(self, end):
        bob = await self.raw_login(BOB, resource='watcher')
        carol = await self.raw_login(CAROL, resource='bystander')
        alice = await self.raw_login(ALICE, resource='leaving')
        await alice.send_presence(bob.jid)
        p = await bob.wait_presence(frm=alice.jid)
        self.assertIsNone(p.get('type'), to_str(p))
        alice_jid = alice.jid
        await end(alice)
        p = await bob.wait_presence(frm=alice_jid, type='unavailable')
        self.assertEqual(p.get('to', bob.jid), bob.jid)
        # carol never got presence from alice, so she gets no unavailable either
        other = await self.raw_login(BOB, resource='barrier')
        await other.send_message(carol.jid, 'barrier')
        await carol.wait_message('barrier')
        self.assertFalse([e for e in carol.history if tag_is(e, 'presence')],
                         [to_str(e) for e in carol.history])

    @async_test
    async def test_unavailable_to_directed_presence_on_clean_close(self):
        async def end(c):
            await c.close()
        await self.directed_presence_then(end)

    @async_test
    async def test_unavailable_to_directed_presence_on_abrupt_close(self):
        async def end(c):
            c.abort(rst=True)
        await self.directed_presence_then(end)

    @async_test
    async def test_unavailable_to_directed_presence_on_eof(self):
        async def end(c):
            # TCP FIN without </stream:stream>
            c.writer.close()
            c.writer = None
        await self.directed_presence_then(end)

    @async_test
    async def test_slixmpp_disconnect_sends_unavailable(self):
        bob = await self.raw_login(BOB, resource='w')
        alice = await self.client(ALICE, resource='slix', mech='SCRAM-SHA-1')
        alice.send_presence(pto=bob.jid)
        await bob.wait_presence(frm=ALICE + '/slix')
        await alice.logout()
        await bob.wait_presence(frm=ALICE + '/slix', type='unavailable')


class ConflictRefuse(ServerTestCase):
    config = {'sessions': {'conflict': 'refuse'}}
    users = USERS

    @async_test
    async def test_second_bind_of_same_resource_is_refused(self):
        first = await self.raw_login(ALICE, resource='desk')
        second = self.raw()
        await second.connect()
        await second.open_stream()
        await second.starttls()
        await second.open_stream()
        self.assertEqual(second.sasl_condition(await second.auth_plain('alice', USERS[ALICE])),
                         'success')
        await second.open_stream()
        reply = await second.bind_iq('desk')
        self.assertEqual(stanza_error(reply), ('cancel', 'conflict'), to_str(reply))
        # the first session is untouched
        bob = await self.raw_login(BOB, resource='b')
        await round_trip(bob, first, 'still here')
        self.assertIsNone(first.stream_error)
        # the refused stream may bind another resource
        jid = await second.bind('laptop')
        self.assertEqual(jid, ALICE + '/laptop')
        await round_trip(bob, second, 'second bound')


class ConflictRandom(ServerTestCase):
    config = {'sessions': {'conflict': 'random'}}
    users = USERS

    @async_test
    async def test_second_login_gets_another_resource(self):
        first = await self.raw_login(ALICE, resource='desk')
        second = await self.raw_login(ALICE, resource='desk')
        self.assertRegex(second.jid, r'^alice@localhost/.+$')
        self.assertNotEqual(second.jid, first.jid)
        bob = await self.raw_login(BOB, resource='b')
        await round_trip(bob, first, 'first')
        await round_trip(bob, second, 'second')


class OnePlace(ServerTestCase):
    """max_sessions_per_account = 1: a new login from anywhere logs the older one out."""
    config = {'sessions': {'max_sessions_per_account': 1}}
    users = USERS

    @async_test
    async def test_new_login_logs_out_the_old_one(self):
        bob = await self.raw_login(BOB, resource='b')
        home = await self.client(ALICE, resource='home', mech='SCRAM-SHA-256')
        work = await self.raw_login(ALICE, resource='work')
        await home.wait_stream_error('conflict')
        await home.wait_disconnected()
        await round_trip(bob, work, 'at work')
        await round_trip(work, bob, 'reply from work')
        self.assertIsNone(bob.stream_error)   # other accounts are not affected

    @async_test
    async def test_raw_old_session_gets_conflict(self):
        a = await self.raw_login(ALICE, resource='a')
        b = await self.raw_login(ALICE, resource='b')
        await a.expect_stream_error('conflict')
        c = await self.raw_login(ALICE)   # server-generated resource counts too
        await b.expect_stream_error('conflict')
        bob = await self.raw_login(BOB, resource='x')
        await round_trip(bob, c, 'latest')


class ManyConnections(ServerTestCase):
    N = 1000
    ACCOUNTS = 20
    config = {'log': {'level': 'info'}}
    users = {'user%02d@localhost' % i: 'pw%02d' % i for i in range(ACCOUNTS)}

    @async_test(timeout=300)
    async def test_thousand_concurrent_sessions(self):
        sem = asyncio.Semaphore(50)
        clients = []
        t0 = time.monotonic()

        async def one(i):
            acct = i % self.ACCOUNTS
            c = RawClient(self.server.starttls_port, name='c%d' % i, timeout=60 * SLOW)
            clients.append(c)
            async with sem:
                await c.login('user%02d' % acct, 'pw%02d' % acct, 'c%d' % i,
                              mech='SCRAM-SHA-256')
            return c

        try:
            results = await asyncio.gather(*(one(i) for i in range(self.N)),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            connected = time.monotonic() - t0
            self.assertEqual(len(errors), 0, '%d of %d logins failed, first: %s'
                             % (len(errors), self.N, str(errors[0])[:500] if errors else ''))
            self.server.assert_alive()
            rss = self.server_rss_kb()
            log('%d sessions logged in in %.1f s; stanzad RSS %s kB'
                % (self.N, connected, rss))

            # every connection still answers: an iq to the server gets a reply
            async def ping(c):
                r = await c.iq('get', "<ping xmlns='%s'/>" % NS_PING, to='localhost')
                self.assertEqual(r.get('from'), 'localhost', to_str(r))
                return r
            t1 = time.monotonic()
            await asyncio.gather(*(ping(c) for c in clients))
            log('%d iq round trips in %.2f s' % (self.N, time.monotonic() - t1))

            # full message round trips across the set
            for a, b in ((0, self.N - 1), (self.N // 2, 1), (7, 7 + self.ACCOUNTS)):
                await round_trip(clients[a], clients[b], 'hello %d→%d' % (a, b))
                await round_trip(clients[b], clients[a], 'back %d→%d' % (b, a))
            for c in clients:
                self.assertIsNone(c.stream_error, '%s got a stream error' % c.name)
        finally:
            await asyncio.gather(*(c.close(timeout=5) for c in clients),
                                 return_exceptions=True)

    def server_rss_kb(self):
        try:
            with open('/proc/%d/status' % self.server.pid) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        return int(line.split()[1])
        except OSError:
            return None


if __name__ == '__main__':
    main()
