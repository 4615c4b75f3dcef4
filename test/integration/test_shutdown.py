#!/usr/bin/python3
"""Signals: SIGTERM closes every stream with <system-shutdown/> and exits 0; SIGHUP reloads
certificates and log settings and keeps serving."""

import asyncio
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, Server, async_test, main, Client, RawClient,  # noqa
                     make_cert, cert_fingerprint, port_is_free, SLOW)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
USERS = {ALICE: 'alice pw', BOB: 'bob pw'}


class Shutdown(ServerTestCase):
    """Each test runs its own server (SIGTERM ends it)."""
    start_server = False

    def setUp(self):
        self.srv = Server(self.world, 'shutdown', {})
        self.srv.start()
        for jid, pw in USERS.items():
            self.srv.add_user(jid, pw)

    def tearDown(self):
        self.srv.stop(check=True)

    @async_test(timeout=90)
    async def test_sigterm_closes_every_stream(self):
        port = self.srv.starttls_port
        slix = self.track(Client(ALICE + '/slix', USERS[ALICE], mech='SCRAM-SHA-256'))
        await slix.login(port)
        logged = self.track(RawClient(port, name='logged-in'))
        await logged.login('bob', USERS[BOB], 'raw')
        pre_auth = self.track(RawClient(port, name='pre-auth'))
        await pre_auth.connect()
        await pre_auth.open_stream()
        await pre_auth.starttls()
        await pre_auth.open_stream()
        pre_tls = self.track(RawClient(port, name='pre-tls'))
        await pre_tls.connect()
        await pre_tls.open_stream()
        direct = self.track(RawClient(self.srv.direct_port, name='direct'))
        await direct.connect(direct_tls=True)
        await direct.open_stream()

        t0 = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        await slix.wait_stream_error('system-shutdown')
        for r in (logged, pre_auth, pre_tls, direct):
            await r.expect_stream_error('system-shutdown')
        await slix.wait_disconnected()
        rc = await asyncio.get_running_loop().run_in_executor(None, self.srv.wait_exit)
        self.assertEqual(rc, 0, self.srv.log_block())
        self.assertLess(time.monotonic() - t0, 10 * SLOW)
        self.srv.check_log()
        self.assertTrue(port_is_free(self.srv.starttls_port))
        self.assertTrue(port_is_free(self.srv.direct_port))

    def test_sigterm_idle_server_exits_0(self):
        t0 = time.monotonic()
        self.assertEqual(self.srv.stop(check=True), 0)
        self.assertLess(time.monotonic() - t0, 10 * SLOW)

    @async_test(timeout=90)
    async def test_sigint_also_shuts_down_cleanly(self):
        r = self.track(RawClient(self.srv.starttls_port))
        await r.login('alice', USERS[ALICE], 'x')
        self.srv.signal(signal.SIGINT)
        await r.expect_stream_error('system-shutdown')
        rc = await asyncio.get_running_loop().run_in_executor(None, self.srv.wait_exit)
        self.assertEqual(rc, 0)


class Reload(ServerTestCase):
    """SIGHUP: new certificates for new connections, new log settings, nothing dropped."""
    start_server = False

    def setUp(self):
        self.srv = Server(self.world, 'reload', {})
        self.certdir = os.path.join(self.srv.dir, 'certs')
        os.makedirs(self.certdir)
        for h in ('localhost', 'example.test'):
            make_cert(self.certdir, h)
        self.srv.overrides = {'hosts': [
            {'name': h, 'certificate': os.path.join(self.certdir, h + '.crt'),
             'key': os.path.join(self.certdir, h + '.key')} for h in ('localhost', 'example.test')]}
        self.srv.write_config()
        self.srv.start()
        for jid, pw in USERS.items():
            self.srv.add_user(jid, pw)

    def tearDown(self):
        self.srv.stop(check=True)

    async def seen_fingerprint(self, direct):
        port = self.srv.direct_port if direct else self.srv.starttls_port
        r = RawClient(port)
        try:
            await r.connect(direct_tls=direct)
            if not direct:
                await r.open_stream()
                await r.starttls()
            return r.peer_cert_fingerprint()
        finally:
            await r.close(timeout=0.5)

    async def wait_fingerprint(self, want, timeout=10 * SLOW):
        deadline = time.monotonic() + timeout
        while True:
            got = await self.seen_fingerprint(direct=True)
            if got == want or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.1)

    @async_test(timeout=120)
    async def test_sighup_reloads_certificates_and_keeps_sessions(self):
        old_fp = cert_fingerprint(os.path.join(self.certdir, 'localhost.crt'))
        self.assertEqual(await self.seen_fingerprint(direct=True), old_fp)
        self.assertEqual(await self.seen_fingerprint(direct=False), old_fp)
        a = self.track(RawClient(self.srv.starttls_port, name='alice'))
        await a.login('alice', USERS[ALICE], 'before')
        b = self.track(Client(BOB + '/before', USERS[BOB], mech='SCRAM-SHA-256'))
        await b.login(self.srv.starttls_port)

        make_cert(self.certdir, 'localhost')   # new key, new serial, same paths
        new_fp = cert_fingerprint(os.path.join(self.certdir, 'localhost.crt'))
        self.assertNotEqual(new_fp, old_fp)
        self.srv.signal(signal.SIGHUP)
        self.assertEqual(await self.wait_fingerprint(new_fp), new_fp,
                         'new connections still see the old certificate after SIGHUP')
        self.assertEqual(await self.seen_fingerprint(direct=False), new_fp)
        self.srv.assert_alive()

        # the sessions from before are still there and work
        await a.send_message(BOB + '/before', 'across the reload')
        m = await b.wait_message('across the reload')
        self.assertEqual(str(m['from']), ALICE + '/before')
        b.send_chat(ALICE + '/before', 'ack')
        await a.wait_message('ack')
        # and new logins work with the new certificate
        c = self.track(RawClient(self.srv.direct_port, name='after'))
        await c.login('alice', USERS[ALICE], 'after', tls='direct')
        self.assertEqual(c.peer_cert_fingerprint(), new_fp)

    @async_test(timeout=120)
    async def test_sighup_reloads_log_level(self):
        level_word = re.compile(r'\b(debug|DEBUG)\b')
        start = self.srv.log_offset()
        r = self.track(RawClient(self.srv.starttls_port))
        await r.login('alice', USERS[ALICE], 'one')
        await r.close()
        before = self.srv.log_text(start)
        self.assertRegex(before, level_word, 'a login logs nothing at level debug:\n' + before)

        self.srv.write_config({'log': {'level': 'error'}})
        make_cert(self.certdir, 'localhost')   # lets the test see when the reload happened
        new_fp = cert_fingerprint(os.path.join(self.certdir, 'localhost.crt'))
        self.srv.signal(signal.SIGHUP)
        self.assertEqual(await self.wait_fingerprint(new_fp), new_fp)
        await asyncio.sleep(0.2)

        start = self.srv.log_offset()
        r = self.track(RawClient(self.srv.starttls_port))
        await r.login('alice', USERS[ALICE], 'two')
        await r.send_message(ALICE + '/two', 'to myself')
        await r.wait_message('to myself')
        await r.close()
        after = self.srv.log_text(start)
        self.assertNotRegex(after, level_word, 'debug lines after reloading level=error')
        self.assertNotRegex(after, r'\b(info|INFO)\b', 'info lines after reloading level=error')


class SecondInstance(ServerTestCase):
    """A second stanzad configured with the ports of a running one must refuse to start: with
    SO_REUSEPORT the kernel would otherwise let both listen and split the clients between them."""
    users = {ALICE: USERS[ALICE]}

    @async_test(timeout=90)
    async def test_second_server_on_the_same_ports_refuses_to_start(self):
        second = Server(self.world, 'second', {})
        second.starttls_port = self.server.starttls_port
        second.direct_port = self.server.direct_port
        second.write_config()
        second.start(wait=False)
        rc = await asyncio.get_running_loop().run_in_executor(None, second.wait_exit)
        self.assertNotEqual(rc, 0)
        self.assertIn('listen 127.0.0.1:%d: Address already in use' % self.server.starttls_port,
                      second.log_text())
        # the first one still serves every client
        for i in range(4):
            r = self.track(RawClient(self.server.starttls_port, name='after-%d' % i))
            await r.login('alice', USERS[ALICE], 'r%d' % i)


if __name__ == '__main__':
    main()
