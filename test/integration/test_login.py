#!/usr/bin/python3
"""Logging in: STARTTLS, direct TLS, SASL (SCRAM-SHA-1/256, -PLUS, PLAIN), failures, binding,
the legacy session iq, stanzas before authentication, slowed-down failures."""

import asyncio
import sys
import time
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, Client, LoginFailed,  # noqa
                     RawClient, ExporterClient,
                     TLS12, NS_SASL, NS_STREAM, NS_BIND, tag_is, to_str,
                     cert_fingerprint, SLOW, log)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@example.test'
USERS = {ALICE: 'Wonder land 1', BOB: 'b0b-pass', CAROL: 'carol pw ü'}


class Login(ServerTestCase):
    users = USERS

    async def slix_login(self, mech, **kw):
        c = await self.client(ALICE, resource='slix', mech=mech, **kw)
        self.assertEqual(c.chosen_mech(), mech)
        self.assertEqual(c.boundjid.bare, ALICE)
        self.assertEqual(c.boundjid.resource, 'slix')
        return c

    @async_test
    async def test_scram_sha1(self):
        await self.slix_login('SCRAM-SHA-1')

    @async_test
    async def test_scram_sha256(self):
        await self.slix_login('SCRAM-SHA-256')

    @async_test
    async def test_scram_sha1_plus_tls12(self):
        c = await self.slix_login('SCRAM-SHA-1-PLUS', tls_max=TLS12)
        self.assertEqual(c.tls_version(), 'TLSv1.2')

    @async_test
    async def test_scram_sha256_plus_tls12(self):
        c = await self.slix_login('SCRAM-SHA-256-PLUS', tls_max=TLS12)
        self.assertEqual(c.tls_version(), 'TLSv1.2')

    @async_test
    async def test_plain_over_tls(self):
        c = await self.slix_login('PLAIN')
        self.assertIn(c.tls_version(), ('TLSv1.2', 'TLSv1.3'))

    @async_test
    async def test_tls13_is_negotiated_by_default(self):
        c = await self.slix_login('SCRAM-SHA-256')
        self.assertEqual(c.tls_version(), 'TLSv1.3')

    @async_test
    async def test_stock_slixmpp_logs_in(self):
        """slixmpp with no mechanism forced picks what the server offers and gets in."""
        c = self.track(Client(ALICE + '/stock', USERS[ALICE]))
        await c.login(self.server.starttls_port)
        self.assertEqual(c.boundjid.full, ALICE + '/stock')

    @async_test
    async def test_non_ascii_password(self):
        c = await self.client(CAROL, mech='SCRAM-SHA-256')
        self.assertEqual(c.boundjid.bare, CAROL)

    @async_test
    async def test_wrong_password_fails(self):
        for mech in ('SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN'):
            with self.subTest(mech=mech):
                c = self.track(Client(ALICE, 'not the password', mech=mech))
                with self.assertRaises(LoginFailed) as cm:
                    await c.login(self.server.starttls_port)
                self.assertEqual(cm.exception.condition, 'not-authorized')

    @async_test
    async def test_unknown_user_fails_the_same_way(self):
        for mech in ('SCRAM-SHA-256', 'PLAIN'):
            with self.subTest(mech=mech):
                c = self.track(Client('nobody@localhost', 'whatever', mech=mech))
                with self.assertRaises(LoginFailed) as cm:
                    await c.login(self.server.starttls_port)
                self.assertEqual(cm.exception.condition, 'not-authorized')
        # No account enumeration: SCRAM for an unknown account runs to the proof like a
        # wrong password (a server-first message with salt and iterations, then <failure/>).
        for user, pw in (('alice', 'wrong'), ('nobody', 'wrong')):
            r = self.raw()
            await r.connect()
            await r.open_stream()
            await r.starttls()
            await r.open_stream()
            el = await r.auth_scram(user, pw, 'SCRAM-SHA-256')
            self.assertEqual(r.sasl_condition(el), 'not-authorized', to_str(el))
            sf = dict(kv.split('=', 1) for kv in r.scram_server_first.decode().split(','))
            self.assertIn('s', sf)
            self.assertGreaterEqual(int(sf['i']), 4096)

    @async_test
    async def test_account_is_per_host(self):
        # alice exists on localhost, not on example.test
        c = self.track(Client('alice@example.test', USERS[ALICE], mech='SCRAM-SHA-256'))
        with self.assertRaises(LoginFailed) as cm:
            await c.login(self.server.starttls_port)
        self.assertEqual(cm.exception.condition, 'not-authorized')

    @async_test
    async def test_features_before_tls(self):
        r = self.raw()
        await r.connect()
        f = await r.open_stream()
        h = r.header
        self.assertEqual(h.tag, '{%s}stream' % NS_STREAM)
        self.assertEqual(h.get('from'), 'localhost')
        self.assertEqual(h.get('version'), '1.0')
        self.assertTrue(h.get('id'), 'stream header without an id')
        self.assertEqual(r.starttls_offer(f), 'required', to_str(f))
        self.assertIsNone(f.find('{%s}mechanisms' % NS_SASL),
                          'SASL offered before TLS although TLS is required: ' + to_str(f))
        self.assertIsNone(f.find('{%s}bind' % NS_BIND))

    @async_test
    async def test_features_after_starttls(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls(tls_max=TLS12)
        f = await r.open_stream()
        self.assertIsNone(r.starttls_offer(f), 'STARTTLS offered again: ' + to_str(f))
        mechs = r.mechanisms(f)
        for m in ('SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256-PLUS',
                  'PLAIN'):
            self.assertIn(m, mechs)
        # SCRAM-SHA-256 is preferred (listed before SHA-1 and PLAIN)
        self.assertLess(mechs.index('SCRAM-SHA-256'), mechs.index('SCRAM-SHA-1'))
        self.assertLess(mechs.index('SCRAM-SHA-256'), mechs.index('PLAIN'))

    @async_test
    async def test_direct_tls(self):
        c = await self.client(ALICE, resource='direct', mech='SCRAM-SHA-256', direct=True)
        self.assertEqual(c.boundjid.full, ALICE + '/direct')
        r = self.raw(self.server.direct_port)
        await r.connect(direct_tls=True)
        f = await r.open_stream()
        self.assertIsNone(r.starttls_offer(f), to_str(f))
        self.assertIn('PLAIN', r.mechanisms(f))
        self.assertEqual((await r.authenticate('bob', USERS[BOB], 'PLAIN')).tag,
                         '{%s}success' % NS_SASL)

    @async_test
    async def test_plain_tcp_on_direct_port_is_not_xmpp(self):
        # The direct-TLS port speaks TLS first: a plaintext stream header gets no features.
        r = self.raw(self.server.direct_port, timeout=3 * SLOW)
        await r.connect()
        with self.assertRaises(AssertionError):
            await r.open_stream()
        self.server.assert_alive()

    @async_test
    async def test_sni_picks_the_host_certificate(self):
        certs = self.world.certs
        for host in ('localhost', 'example.test'):
            with self.subTest(host=host, port='direct'):
                r = self.raw(self.server.direct_port, host=host)
                await r.connect(direct_tls=True, sni=host)
                self.assertEqual(r.peer_cert_fingerprint(), cert_fingerprint(certs[host][0]))
                f = await r.open_stream()
                self.assertEqual(r.header.get('from'), host)
                self.assertIn('PLAIN', r.mechanisms(f))
            with self.subTest(host=host, port='starttls'):
                r = self.raw(host=host)
                await r.connect()
                await r.open_stream()
                await r.starttls(sni=host)
                self.assertEqual(r.peer_cert_fingerprint(), cert_fingerprint(certs[host][0]))

    @async_test
    async def test_login_on_second_host(self):
        r = self.raw(host='example.test')
        jid = await r.login('carol', USERS[CAROL], 'desk', to='example.test')
        self.assertEqual(jid, CAROL + '/desk')

    @async_test
    async def test_bind_server_generated_resource(self):
        a = await self.raw_login(ALICE)
        b = await self.raw_login(ALICE)
        for c in (a, b):
            self.assertRegex(c.jid, r'^alice@localhost/.+$')
        self.assertNotEqual(a.jid, b.jid, 'two generated resources are equal')

    @async_test
    async def test_bind_requested_resource(self):
        a = await self.raw_login(ALICE, resource='Balcony Phone')
        self.assertEqual(a.jid, ALICE + '/Balcony Phone')
        c = await self.client(BOB, resource='slixres', mech='SCRAM-SHA-1')
        self.assertEqual(c.boundjid.full, BOB + '/slixres')

    @async_test
    async def test_bind_feature_after_auth(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.open_stream()
        el = await r.auth_plain('alice', USERS[ALICE])
        self.assertEqual(r.sasl_condition(el), 'success')
        f = await r.open_stream()
        self.assertIsNotNone(f.find('{%s}bind' % NS_BIND), to_str(f))
        self.assertEqual(r.mechanisms(f), [], 'SASL offered again after success')

    @async_test
    async def test_legacy_session_iq(self):
        a = await self.raw_login(ALICE, resource='sess')
        reply = await a.session()
        self.assertEqual(reply.get('type'), 'result')
        # and the session works afterwards
        b = await self.raw_login(BOB, resource='x')
        await a.send_message(b.jid, 'after session')
        m = await b.wait_message('after session')
        self.assertEqual(m.get('from'), a.jid)

    @async_test
    async def test_stanza_before_auth_is_refused(self):
        bob = await self.raw_login(BOB, resource='victim')
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.open_stream()
        await r.send("<message to='bob@localhost/victim' type='chat'>"
                     "<body>pre-auth</body></message>")
        await r.expect_stream_error('not-authorized')
        # bob never got it: a later message from a real session arrives first
        alice = await self.raw_login(ALICE)
        await alice.send_message(bob.jid, 'barrier')
        await bob.wait_message('barrier')
        self.assertEqual(bob.messages('pre-auth'), [])

    @async_test
    async def test_stanza_before_tls_is_refused(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.send("<iq type='get' id='x1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        err = await r.wait_for(lambda e: tag_is(e, 'error', NS_STREAM), what='a stream error')
        self.assertIn(r.stream_error, ('not-authorized', 'policy-violation'), to_str(err))
        self.assertTrue(await r.wait_closed())

    @async_test
    async def test_scram_plus_checks_the_binding(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls(tls_max=TLS12)
        await r.open_stream()
        el = await r.auth_scram('alice', USERS[ALICE], 'SCRAM-SHA-256-PLUS',
                                cb_type='tls-unique', cb_data=b'\x00' * 12)
        self.assertEqual(r.sasl_condition(el), 'not-authorized', to_str(el))

    @async_test
    async def test_scram_plus_raw_tls12(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls(tls_max=TLS12)
        await r.open_stream()
        el = await r.auth_scram('alice', USERS[ALICE], 'SCRAM-SHA-1-PLUS')
        self.assertEqual(r.sasl_condition(el), 'success', to_str(el))

    def test_scram_plus_tls13_exporter(self):
        """-PLUS under TLS 1.3 binds with tls-exporter (RFC 9266)."""
        if not ExporterClient.available:
            self.skipTest('pyOpenSSL (python3-openssl) is not installed')
        for mech, cb, want in (('SCRAM-SHA-256-PLUS', 'good', 'success'),
                               ('SCRAM-SHA-1-PLUS', 'good', 'success'),
                               ('SCRAM-SHA-256-PLUS', 'bad', 'not-authorized')):
            with self.subTest(mech=mech, binding=cb):
                c = ExporterClient(self.server.starttls_port)
                try:
                    c.open_stream()
                    self.assertEqual(c.starttls13(), 'TLSv1.3')
                    f = c.open_stream()
                    mechs = [m.text for m in f.iter('{%s}mechanism' % NS_SASL)]
                    self.assertIn(mech, mechs)
                    data = c.exporter() if cb == 'good' else bytes(32)
                    el = c.auth_scram('alice', USERS[ALICE], mech, 'tls-exporter', data)
                    self.assertEqual(RawClient.sasl_condition(el), want, to_str(el))
                finally:
                    c.close()

    @async_test
    async def test_scram_downgrade_flag_refused(self):
        # gs2 flag "y": the client could bind but believes the server cannot. A server that
        # offers -PLUS must fail it (RFC 5802 §6), or an attacker could strip -PLUS.
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls(tls_max=TLS12)
        f = await r.open_stream()
        self.assertIn('SCRAM-SHA-256-PLUS', r.mechanisms(f))
        el = await r.auth_scram('alice', USERS[ALICE], 'SCRAM-SHA-256', cb_flag='y')
        self.assertNotEqual(r.sasl_condition(el), 'success', to_str(el))

    @async_test
    async def test_retry_after_failure_on_same_stream(self):
        # RFC 6120 §6.4.5: the server should allow retries after a <failure/>
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.open_stream()
        el = await r.auth_plain('alice', 'wrong')
        self.assertEqual(r.sasl_condition(el), 'not-authorized')
        el = await r.auth_scram('alice', USERS[ALICE], 'SCRAM-SHA-256')
        self.assertEqual(r.sasl_condition(el), 'success', to_str(el))


class LoginTlsOptional(ServerTestCase):
    """tls.require_c2s = false: TLS is offered, not required; PLAIN still needs TLS."""
    config = {'tls': {'require_c2s': False}}
    users = {ALICE: 'plain-text-pw'}

    @async_test
    async def test_features_without_tls(self):
        r = self.raw()
        await r.connect()
        f = await r.open_stream()
        self.assertEqual(r.starttls_offer(f), 'optional', to_str(f))
        mechs = r.mechanisms(f)
        self.assertNotIn('PLAIN', mechs)
        self.assertFalse([m for m in mechs if m.endswith('-PLUS')], mechs)
        self.assertIn('SCRAM-SHA-256', mechs)

    @async_test
    async def test_scram_without_tls(self):
        r = self.raw()
        jid = await r.login('alice', 'plain-text-pw', 'cleartext', mech='SCRAM-SHA-256', tls=None)
        self.assertEqual(jid, ALICE + '/cleartext')
        self.assertFalse(r.tls)

    @async_test
    async def test_plain_refused_without_tls(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        el = await r.auth_plain('alice', 'plain-text-pw')
        self.assertIn(r.sasl_condition(el),
                      ('invalid-mechanism', 'encryption-required', 'mechanism-too-weak'),
                      to_str(el))

    @async_test
    async def test_plain_offered_after_starttls(self):
        r = self.raw()
        await r.connect()
        await r.open_stream()
        await r.starttls()
        f = await r.open_stream()
        self.assertIn('PLAIN', r.mechanisms(f))


class BindingNegotiationIsNotAGuess(ServerTestCase):
    """Clients that do not read XEP-0440 (slixmpp 1.8) try -PLUS with tls-unique under TLS 1.3,
    then plain SCRAM with the 'y' flag: the server must refuse both (RFC 5802 §6), but these are
    no password guesses and must not be delayed or count towards the per-address limit."""
    DELAY_MS = 2000
    config = {'limits': {'auth_failure_delay': DELAY_MS, 'max_auth_failures': 2}}
    users = {ALICE: 'right password'}

    @async_test(timeout=120)
    async def test_binding_failures_are_not_counted(self):
        for i in range(4):
            r = self.raw(source='127.0.0.3')
            await r.connect()
            await r.open_stream()
            await r.starttls()  # TLS 1.3: the server offers tls-exporter
            f = await r.open_stream()
            self.assertIn('SCRAM-SHA-256-PLUS', r.mechanisms(f))
            t0 = time.monotonic()
            el = await r.auth_scram('alice', USERS_DELAY[ALICE], 'SCRAM-SHA-256-PLUS',
                                    cb_type='tls-unique', cb_data=b'0123456789ab')
            self.assertEqual(r.sasl_condition(el), 'not-authorized', to_str(el))
            el = await r.auth_scram('alice', USERS_DELAY[ALICE], 'SCRAM-SHA-256', cb_flag='y')
            self.assertEqual(r.sasl_condition(el), 'not-authorized', to_str(el))
            took = time.monotonic() - t0
            self.assertLess(took, self.DELAY_MS / 1000.0 * 0.5,
                            'binding failures were delayed (%.3f s)' % took)
            # ... and the client's next choice works: no lockout after 8 such failures
            el = await r.auth_scram('alice', USERS_DELAY[ALICE], 'SCRAM-SHA-256')
            self.assertEqual(r.sasl_condition(el), 'success', to_str(el))
            await r.close()


USERS_DELAY = {ALICE: 'right password'}


class AuthFailureDelay(ServerTestCase):
    """Repeated failures from one address are slowed down, without slowing anyone else."""
    DELAY_MS = 600
    config = {'limits': {'auth_failure_delay': DELAY_MS}}
    users = {ALICE: 'right password', BOB: 'bob pw'}

    async def failed_attempt(self, source):
        r = self.raw(source=source, timeout=30 * SLOW)
        await r.connect()
        await r.open_stream()
        await r.starttls()
        await r.open_stream()
        t0 = time.monotonic()
        el = await r.auth_plain('alice', 'wrong password')
        took = time.monotonic() - t0
        self.assertEqual(r.sasl_condition(el), 'not-authorized', to_str(el))
        await r.close()
        return took

    @async_test(timeout=120)
    async def test_repeated_failures_are_delayed(self):
        delay = self.DELAY_MS / 1000.0
        times = [await self.failed_attempt('127.0.0.2') for _ in range(3)]
        log('failed-login reply times from one address: %s'
            % ', '.join('%.3f s' % t for t in times))
        self.assertGreaterEqual(times[2], delay * 0.9,
                                'third failure answered after %.3f s (delays: %s)' % (times[2],
                                                                                       times))
        # While a delayed failure is pending, other clients are served at full speed.
        a = await self.raw_login(ALICE, resource='a')
        b = await self.raw_login(BOB, resource='b')
        pending = asyncio.ensure_future(self.failed_attempt('127.0.0.2'))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await a.send_message(b.jid, 'fast')
        await b.wait_message('fast')
        rtt = time.monotonic() - t0
        self.assertFalse(pending.done(), 'the 4th failure was not delayed')
        self.assertLess(rtt, delay / 2, 'a message took %.3f s during a delayed failure' % rtt)
        fourth = await pending
        self.assertGreaterEqual(fourth, delay * 0.9)
        # Another address is not slowed down by the first one's failures.
        other = await self.failed_attempt('127.0.0.3')
        self.assertLess(other, fourth, 'failures from 127.0.0.2 slowed 127.0.0.3 down')
        # The right password still works from the penalised address.
        r = self.raw(source='127.0.0.2', timeout=30 * SLOW)
        self.assertTrue(await r.login('alice', 'right password', 'back'))


if __name__ == '__main__':
    main()
