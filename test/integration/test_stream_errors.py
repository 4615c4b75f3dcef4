#!/usr/bin/python3
"""Hostile streams get their RFC 6120 §4.9 stream error, and nobody else notices: after each
one, two other logged-in clients still exchange messages and the server is alive."""

import asyncio
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, NS_STREAM, tag_is, SLOW,  # noqa
                     SANITIZED, log)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@localhost'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', CAROL: 'carol pw'}
LIMIT = 8192

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' to='%s' "
          "version='%s'>")


def header(xmlns='jabber:client', stream_ns=NS_STREAM, to='localhost', version='1.0'):
    return HEADER % (xmlns, stream_ns, to, version)


class StreamErrors(ServerTestCase):
    config = {'limits': {'max_stanza_size': LIMIT}}
    users = USERS

    async def bystanders(self):
        self._n = getattr(self, '_n', 0) + 1
        # PLAIN keeps these tests about stream errors (SCRAM has its own tests)
        b = await self.client(BOB, resource='by%d' % self._n, mech='PLAIN')
        c = await self.client(CAROL, resource='by%d' % self._n, mech='PLAIN')
        return b, c

    async def still_working(self, b, c):
        self.server.assert_alive()
        t0 = time.monotonic()
        b.send_chat(c.boundjid.full, 'still there?')
        m = await c.wait_message('still there?')
        self.assertEqual(str(m['from']), b.boundjid.full)
        c.send_chat(b.boundjid.full, 'yes')
        await b.wait_message('yes')
        self.assertFalse(b.stream_errors + c.stream_errors)
        return time.monotonic() - t0

    async def hostile(self, *, login=True, tls=True):
        """A raw connection: logged in as alice, or just TLS + stream open, or a bare TCP
        stream (tls=False)."""
        if login:
            return await self.raw_login(ALICE, resource='hostile')
        r = self.raw()
        await r.connect()
        await r.open_stream()
        if tls:
            await r.starttls()
            await r.open_stream()
        return r

    async def check(self, data, condition, *, login=True, tls=True, fresh=False):
        """Sends data on a hostile stream (or, with fresh, as the first bytes of a new
        connection) and expects <condition/>; then checks the bystanders."""
        b, c = await self.bystanders()
        if fresh:
            r = self.raw()
            await r.connect()
        else:
            r = await self.hostile(login=login, tls=tls)
        await r.send(data)
        if isinstance(condition, tuple):
            await r.wait_for(lambda e: tag_is(e, 'error', NS_STREAM), what='a stream error')
            self.assertIn(r.stream_error, condition)
            self.assertTrue(await r.wait_closed())
        else:
            await r.expect_stream_error(condition)
        await self.still_working(b, c)
        return r

    # -- well-formedness

    @async_test
    async def test_malformed_xml_after_login(self):
        await self.check("<message to='bob@localhost'><body>x</message>", 'not-well-formed')

    @async_test
    async def test_malformed_xml_before_auth(self):
        await self.check("<foo><bar></foo>", 'not-well-formed', login=False)

    @async_test
    async def test_malformed_xml_before_tls(self):
        await self.check("<a b='1' b='2'/>", 'not-well-formed', login=False, tls=False)

    @async_test
    async def test_invalid_utf8(self):
        await self.check(b"<message to='bob@localhost'><body>\xff\xfe\xc3</body></message>",
                         ('not-well-formed', 'bad-format', 'invalid-xml'))

    @async_test
    async def test_unbound_prefix(self):
        await self.check("<foo:message to='bob@localhost'/>", 'not-well-formed')

    # -- restricted XML (RFC 6120 §11.1)

    @async_test
    async def test_dtd_in_prolog(self):
        data = ("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY a 'b'>]>"
                + header()[len("<?xml version='1.0'?>"):])
        r = await self.check(data, 'restricted-xml', fresh=True)
        # the server opened its own stream before the error, as RFC 6120 §4.9.1.2 asks
        self.assertIsNotNone(r.header)

    @async_test
    async def test_billion_laughs(self):
        ents = "<!ENTITY lol 'lol'>" + ''.join(
            "<!ENTITY lol%d '%s'>" % (i, ('&lol%s;' % (i - 1 if i > 1 else '')) * 10)
            for i in range(1, 10))
        data = ("<?xml version='1.0'?><!DOCTYPE stream:stream [%s]>" % ents
                + header()[len("<?xml version='1.0'?>"):]
                + "<message to='bob@localhost'><body>&lol9;</body></message>")
        await self.check(data, 'restricted-xml', fresh=True)

    @async_test
    async def test_dtd_inside_stream(self):
        await self.check("<!DOCTYPE foo [<!ENTITY x 'y'>]>", ('restricted-xml', 'not-well-formed'))

    @async_test
    async def test_entity_reference(self):
        await self.check("<message to='bob@localhost'><body>&xxe;</body></message>",
                         ('restricted-xml', 'not-well-formed'))

    @async_test
    async def test_comment_between_stanzas(self):
        await self.check("<!-- a comment -->", 'restricted-xml')

    @async_test
    async def test_comment_inside_stanza(self):
        await self.check("<message to='bob@localhost'><!-- hidden --><body>x</body></message>",
                         'restricted-xml')

    @async_test
    async def test_comment_before_auth(self):
        await self.check("<!-- pre-auth comment -->", 'restricted-xml', login=False)

    @async_test
    async def test_processing_instruction(self):
        await self.check("<?evil instruction?>", 'restricted-xml')

    @async_test
    async def test_processing_instruction_inside_stanza(self):
        await self.check("<message to='bob@localhost'><?pi x?><body>x</body></message>",
                         'restricted-xml')

    # -- limits

    @async_test
    async def test_oversized_stanza(self):
        b, c = await self.bystanders()
        alice = await self.raw_login(ALICE, resource='big')
        # under the limit: delivered
        body = 'x' * (LIMIT // 2)
        await alice.send_message(b.boundjid.full, body)
        m = await b.wait_message(body)
        self.assertEqual(str(m['from']), alice.jid)
        # over the limit: policy-violation
        await alice.send_message(b.boundjid.full, 'y' * (LIMIT * 3))
        await alice.expect_stream_error('policy-violation')
        await self.still_working(b, c)
        self.assertFalse([s for s in b.stanzas
                          if s.name == 'message' and s['body'].startswith('yyy')])

    @async_test
    async def test_unterminated_stanza_is_bounded(self):
        # a stanza that never ends must not be buffered without bound
        b, c = await self.bystanders()
        alice = await self.raw_login(ALICE, resource='endless')
        await alice.send("<message to='bob@localhost'><body>")
        chunk = 'z' * 4096
        try:
            for _ in range(LIMIT * 8 // len(chunk)):
                await alice.send(chunk)
        except (ConnectionError, OSError):
            pass   # the server may close while we still write
        await alice.expect_stream_error('policy-violation')
        await self.still_working(b, c)

    @async_test
    async def test_oversized_before_auth(self):
        await self.check("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                         + 'A' * (LIMIT * 3) + "</auth>", 'policy-violation', login=False)

    # -- stream header problems

    @async_test
    async def test_wrong_stream_namespace(self):
        await self.check(header(stream_ns='http://example.com/not-streams'),
                         'invalid-namespace', fresh=True)

    @async_test
    async def test_wrong_content_namespace(self):
        await self.check(header(xmlns='jabber:wrong'), 'invalid-namespace', fresh=True)

    @async_test
    async def test_unknown_host(self):
        r = await self.check(header(to='nowhere.invalid'), 'host-unknown', fresh=True)
        self.assertIsNotNone(r.header)

    @async_test
    async def test_unknown_host_after_tls(self):
        b, c = await self.bystanders()
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.send(header(to='other.invalid'))
        await r.expect_stream_error('host-unknown')
        await self.still_working(b, c)

    @async_test
    async def test_unsupported_version(self):
        await self.check(header(version='2.0'), 'unsupported-version', fresh=True)

    # -- many at once

    @async_test(timeout=120)
    async def test_many_hostile_streams_at_once(self):
        b, c = await self.bystanders()
        cases = [("<a><b></a>", 'not-well-formed'), ("<!-- c -->", 'restricted-xml'),
                 ("<?pi?>", 'restricted-xml')] * 10

        async def one(data, cond):
            r = await self.hostile(login=False)
            await r.send(data)
            await r.expect_stream_error(cond)
        await asyncio.gather(*(one(d, cnd) for d, cnd in cases))
        rtt = await self.still_working(b, c)
        self.assertLess(rtt, 5 * SLOW)



class Timeouts(ServerTestCase):
    """limits.connect_timeout: a stream that does not authenticate in time is closed;
    limits.idle_timeout: a silent session is closed, one that keeps talking is not."""
    CONNECT, IDLE = 2, 3
    config = {'limits': {'connect_timeout': CONNECT, 'idle_timeout': IDLE}}
    users = USERS

    async def expect_timeout_close(self, r, within):
        t0 = time.monotonic()
        self.assertTrue(await r.wait_closed(within), '%s still open after %.0f s'
                        % (r.name, within))
        if r.stream_error is not None:
            self.assertEqual(r.stream_error, 'connection-timeout')
        return time.monotonic() - t0

    @async_test
    async def test_unauthenticated_stream_times_out(self):
        r = self.raw(name='lingering')
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.open_stream()
        took = await self.expect_timeout_close(r, self.CONNECT + 5 * SLOW)
        self.assertGreater(took, self.CONNECT * 0.5)

    @async_test
    async def test_tcp_without_stream_times_out(self):
        r = self.raw(name='silent-tcp')
        await r.connect()
        await self.expect_timeout_close(r, self.CONNECT + 5 * SLOW)

    @async_test
    async def test_idle_session_closed_active_session_kept(self):
        quiet = await self.raw_login(ALICE, resource='quiet')
        chatty = await self.raw_login(BOB, resource='chatty')
        t0 = time.monotonic()
        # the chatty one sends whitespace keepalives and messages; it outlives both timeouts
        while time.monotonic() - t0 < self.IDLE + 1.5:
            await chatty.send(' ')
            await asyncio.sleep(0.5)
        await chatty.send_message(chatty.jid, 'alive')
        await chatty.wait_message('alive')
        self.assertTrue(await quiet.wait_closed(self.IDLE + 5 * SLOW), 'idle session kept')
        if quiet.stream_error is not None:
            self.assertEqual(quiet.stream_error, 'connection-timeout')
        self.assertIsNone(chatty.stream_error)


class PerAddressLimit(ServerTestCase):
    """limits.max_connections_per_ip: the next connection from that address is refused, other
    addresses are not affected, and a freed slot can be used again."""
    config = {'limits': {'max_connections_per_ip': 3}}
    users = USERS

    @async_test
    async def test_connection_limit_per_address(self):
        held = [await self.raw_login(ALICE, resource='r%d' % i, source='127.0.0.5')
                for i in range(3)]
        extra = self.raw(source='127.0.0.5', name='fourth', timeout=5 * SLOW)
        refused = False
        try:
            await extra.connect()
            await extra.open_stream()
            # accepted at the TCP level: it must be closed instead of served
            refused = await extra.wait_closed(5 * SLOW)
        except (AssertionError, ConnectionError, OSError):
            refused = True
        self.assertTrue(refused, 'a 4th connection from one address was served')
        if extra.stream_error is not None:
            self.assertIn(extra.stream_error, ('policy-violation', 'resource-constraint'))
        extra.abort()
        # another address is fine, and the held ones still work
        b = await self.raw_login(BOB, resource='elsewhere', source='127.0.0.6')
        await held[0].send_message(b.jid, 'still fine')
        await b.wait_message('still fine')
        # freeing one slot lets a new connection in
        await held[2].close()
        deadline = time.monotonic() + 5 * SLOW
        while True:
            again = self.raw(source='127.0.0.5', name='again')
            try:
                await again.login('alice', USERS[ALICE], 'again')
                break
            except (AssertionError, ConnectionError, OSError):
                again.abort()   # a refused connection must not hold a slot itself
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.assertEqual(again.jid, ALICE + '/again')


class SlowReader(ServerTestCase):
    """limits.max_output_buffer: a client that does not read is disconnected; the sender and
    everyone else carry on, and the server does not grow without bound."""
    config = {'limits': {'max_output_buffer': 65536}}
    users = USERS

    @async_test(timeout=180)
    async def test_client_that_does_not_read_is_disconnected(self):
        sender = await self.raw_login(ALICE, resource='flood')
        other = await self.raw_login(CAROL, resource='other')
        slow = self.raw(name='slow', read_limit=16384)
        await slow.login('bob', USERS[BOB], 'slow')
        sock = slow.writer.get_extra_info('socket')
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        # from here on nobody reads slow's socket
        rss0 = self.server_rss_kb()
        chunk = 'x' * 4000
        t0 = time.monotonic()
        for i in range(2000):   # 8 MB, far beyond every buffer on the way
            await sender.send_message(slow.jid, chunk, iid='f%d' % i)
        log('flood sent in %.2f s' % (time.monotonic() - t0))
        # the sender is still served
        await sender.send_message(other.jid, 'after the flood')
        await other.wait_message('after the flood', timeout=30 * SLOW)
        log('sender served again after %.2f s' % (time.monotonic() - t0))
        self.assertIsNone(sender.stream_error)
        # the slow reader was cut off: draining its socket ends in EOF (after a stream error,
        # if the server could still send one). A big window makes the drain quick.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.assertTrue(await slow.wait_closed(30 * SLOW), 'the slow reader was not disconnected')
        log('slow reader closed after %.2f s' % (time.monotonic() - t0))
        self.assertLess(len(slow.messages()), 2000, 'all 8 MB reached the slow reader')
        rss1 = self.server_rss_kb()
        if rss0 and rss1 and not SANITIZED:   # ASan's quarantine keeps freed memory
            self.assertLess(rss1 - rss0, 64 * 1024, 'stanzad grew by %d kB' % (rss1 - rss0))

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
