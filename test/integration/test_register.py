#!/usr/bin/python3
"""mod_register: in-band registration (XEP-0077) with a data form (XEP-0004).

Raw XML streams for the exact protocol (pre-authentication get/set, every validation error with
its condition and the field its text names, conflicts, closed and invite-only registration,
per-address limits, TLS-only by default), a real client (slixmpp's xep_0077) registering through
the stream feature, password change and cancellation after login, PostgreSQL checked through
the harness, and no password or invitation token in the server log or the database."""

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NS_SASL, Client, RawClient, Server, ServerTestCase,  # noqa: E402
                     async_test, attr, main, tag_is, to_str, world, x)

NS_REG = 'jabber:iq:register'
NS_FEATURE = 'http://jabber.org/features/iq-register'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_TACC = 'urn:stanzad:test:accounts'

BAD_USERNAME = 'username: not a valid username (no spaces and none of " & \' / : < > @)'
CLASSES = ('password: use at least 2 of these: lower-case letters, upper-case letters, digits, '
           'other characters')


def reg_settings(**kw):
    """module_settings.register for the tests: no per-address limits unless asked for."""
    s = {'max_per_address': 0, 'min_interval': 0}
    s.update(kw)
    return s


def config(settings=None, modules=('disco', 'register'), **extra):
    cfg = {'modules': list(modules), 'module_settings': {'register': settings or reg_settings()}}
    cfg.update(extra)
    return cfg


def form(fields, form_type=NS_REG, ftype='submit'):
    """A jabber:x:data submission; fields: {var: value}."""
    out = ["<x xmlns='%s' type='%s'>" % (NS_DATA, ftype)]
    if form_type is not None:
        out.append("<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % x(form_type))
    for var, value in fields.items():
        out.append('<field var=%s><value>%s</value></field>' % (attr(var), x(value)))
    out.append('</x>')
    return ''.join(out)


def legacy(fields):
    return ''.join('<%s>%s</%s>' % (k, x(v), k) for k, v in fields.items())


def query(inner=''):
    return "<query xmlns='%s'>%s</query>" % (NS_REG, inner)


def error_of(reply):
    """(condition, text, type) of an error reply."""
    err = reply.find('{jabber:client}error')
    if err is None:
        return (None, None, None)
    cond = text = None
    for c in err:
        name = c.tag.rsplit('}', 1)[-1]
        if name == 'text':
            text = c.text
        elif c.tag.startswith('{%s}' % NS_STANZAS):
            cond = name
    return (cond, text, err.get('type'))


def fields_of(q):
    """{var: field element} of the data form in a <query/>."""
    xf = q.find('{%s}x' % NS_DATA)
    return {f.get('var'): f for f in xf.findall('{%s}field' % NS_DATA)} if xf is not None else {}


class RegisterCase(ServerTestCase):
    """Helpers shared by the test classes."""

    def setUp(self):
        super().setUp()
        self.secrets = []   # passwords and tokens sent in this test: never in the log

    def tearDown(self):
        try:
            text = self.server.log_text(self._log_start)
            for s in self.secrets:
                self.assertNotIn(s, text, 'a secret reached the server log')
        finally:
            super().tearDown()

    def sql(self, q):
        return self.world.cluster.psql(q, db=self.server.db).strip()

    async def stream(self, *, source=None, tls=True, host='localhost'):
        """A RawClient with a stream open (after STARTTLS unless tls is False)."""
        c = self.raw(host=host, source=source)
        await c.connect()
        await c.open_stream()
        if tls:
            await c.starttls()
            await c.open_stream()
        return c

    async def register(self, c, fields, *, use_form=True, to=None, invite=None):
        """Sends a registration set; returns the reply."""
        fields = dict(fields)
        if invite is not None:
            fields['invite'] = invite
            self.secrets.append(invite)
        if fields.get('password'):
            self.secrets.append(fields['password'])
        inner = form(fields) if use_form else legacy(fields)
        return await c.iq('set', query(inner), to=to)

    async def expect_ok(self, c, fields, **kw):
        r = await self.register(c, fields, **kw)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        return r

    async def expect_error(self, c, fields, cond, text=None, **kw):
        r = await self.register(c, fields, **kw)
        self.assertEqual(r.get('type'), 'error', to_str(r))
        got = error_of(r)
        self.assertEqual(got[0], cond, to_str(r))
        if text is not None:
            self.assertEqual(got[1], text, to_str(r))
        # No <query/> (with its password) comes back in an error.
        self.assertIsNone(r.find('{%s}query' % NS_REG), to_str(r))
        return got

    async def login_result(self, user, password, mech='SCRAM-SHA-256', host='localhost'):
        """'success' or the SASL failure condition of a fresh login."""
        c = self.raw(host=host)
        await c.connect()
        await c.open_stream()
        await c.starttls()
        await c.open_stream()
        el = await c.authenticate(user, password, mech)
        cond = RawClient.sasl_condition(el)
        await c.close()
        return cond


# ---------------------------------------------------------------------------------------------


class OpenRegistration(RegisterCase):
    """registration = open, with extra fields (nick required) and the default password rule."""

    config = config(reg_settings(fields=['nick=Nickname', 'x-gender=Gender', 'x-age=Age'],
                                 required_fields=['nick']),
                    modules=('disco', 'register', 'test_accounts'))
    users = {'admin@localhost': 'admin pw'}

    @async_test
    async def test_form_and_feature(self):
        c = await self.stream()
        self.assertIsNotNone(c.features.find('{%s}register' % NS_FEATURE),
                             'no registration feature after TLS: ' + to_str(c.features))
        r = await c.iq('get', query(), to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        q = r.find('{%s}query' % NS_REG)
        self.assertTrue(q.findtext('{%s}instructions' % NS_REG))
        # Legacy fields: username, password and the required nick (a legacy element); the
        # optional email is left out, since a legacy client must fill every field listed.
        legacy_names = [e.tag.split('}')[1] for e in q if e.tag.startswith('{%s}' % NS_REG)]
        self.assertEqual(legacy_names, ['instructions', 'username', 'password', 'nick'])
        f = fields_of(q)
        self.assertEqual(list(f), ['FORM_TYPE', 'username', 'password', 'email', 'nick',
                                   'x-gender', 'x-age'])
        self.assertEqual(f['FORM_TYPE'].get('type'), 'hidden')
        self.assertEqual(f['FORM_TYPE'].findtext('{%s}value' % NS_DATA), NS_REG)
        self.assertEqual(f['password'].get('type'), 'text-private')
        self.assertIn('At least 8 characters', f['password'].findtext('{%s}desc' % NS_DATA))
        self.assertEqual(f['nick'].get('label'), 'Nickname')
        self.assertEqual(f['x-age'].get('label'), 'Age')
        required = {v for v, e in f.items() if e.find('{%s}required' % NS_DATA) is not None}
        self.assertEqual(required, {'username', 'password', 'nick'})

    @async_test
    async def test_plain_stream_refused_by_default(self):
        # tls.require_c2s is true in the harness; allow_insecure defaults to false.
        c = await self.stream(tls=False)
        self.assertIsNone(c.features.find('{%s}register' % NS_FEATURE), to_str(c.features))
        r = await c.iq('get', query())
        self.assertEqual(error_of(r)[:2], ('not-authorized', 'registration needs an encrypted '
                                           'stream: negotiate TLS first'))
        await self.expect_error(c, {'username': 'plainuser', 'password': 'Plain pass 1',
                                    'nick': 'p'}, 'not-authorized')
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'plainuser'"),
                         '0')

    @async_test
    async def test_register_then_scram_login_on_the_same_stream(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'Alice', 'password': 'Wonder land 1',
                                 'email': 'alice@example.org', 'nick': 'Al', 'x-age': '33'},
                             to='localhost')
        # XEP-0077 §3.1: authenticate on the same stream, with the prepared username.
        el = await c.authenticate('alice', 'Wonder land 1', 'SCRAM-SHA-256')
        self.assertTrue(tag_is(el, 'success', NS_SASL), to_str(el))
        await c.open_stream()
        self.assertEqual(await c.bind('r'), 'alice@localhost/r')
        self.assertEqual(await self.login_result('alice', 'Wonder land 1', 'SCRAM-SHA-1'),
                         'success')
        self.assertEqual(self.sql("SELECT count(*) FROM accounts a JOIN credentials c ON "
                                  "c.account_id = a.id WHERE a.host = 'localhost' AND "
                                  "a.username = 'alice'"), '2')
        self.assertIn('account alice@localhost registered in-band from 127.0.0.1',
                      self.server.log_text(self._log_start))

    @async_test
    async def test_legacy_registration(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'bob', 'password': 'Builder 99', 'nick': 'Bob'},
                             use_form=False)
        self.assertEqual(await self.login_result('bob', 'Builder 99'), 'success')

    @async_test
    async def test_validation_errors(self):
        c = await self.stream()
        ok = {'username': 'valid', 'password': 'Good pass 1', 'nick': 'n'}
        cases = [
            ({'password': 'Good pass 1', 'nick': 'n'}, 'username: required'),
            (dict(ok, username=''), 'username: required'),
            (dict(ok, username='two words'), BAD_USERNAME),
            (dict(ok, username='a@b'), BAD_USERNAME),
            (dict(ok, username='x/y'), BAD_USERNAME),
            (dict(ok, username='quo"te'), BAD_USERNAME),
            ({'username': 'valid', 'nick': 'n'}, 'password: required'),
            (dict(ok, password='Sh0rt'), 'password: at least 8 characters are required'),
            (dict(ok, password='alllowercase'), CLASSES),
            (dict(ok, password='My-VALID-pass'), 'password: must not contain the username'),
            (dict(ok, email='no-at-sign'), 'email: not a valid email address'),
            (dict(ok, email='a@localhost'), 'email: not a valid email address'),
            (dict(ok, email='a b@example.org'), 'email: not a valid email address'),
            (dict(ok, email='a@-example.org'), 'email: not a valid email address'),
            (dict(ok, email='a..b@example.org'), 'email: not a valid email address'),
            ({'username': 'valid', 'password': 'Good pass 1'}, 'nick: required'),
            (dict(ok, nick=''), 'nick: required'),
            (dict(ok, **{'x-age': '9' * 257}), 'x-age: too long (at most 256 bytes)'),
        ]
        for fields, text in cases:
            for use_form in (True, False):
                with self.subTest(fields=fields, form=use_form):
                    _, _, etype = await self.expect_error(c, fields, 'not-acceptable', text,
                                                          use_form=use_form)
                    self.assertEqual(etype, 'modify')
        # A form of another FORM_TYPE, or not a submission.
        r = await c.iq('set', query(form(ok, form_type='urn:example:other')))
        self.assertEqual(error_of(r)[:2], ('bad-request', 'FORM_TYPE: not a form of this service'))
        r = await c.iq('set', query(form(ok, ftype='form')))
        self.assertEqual(error_of(r)[:2], ('bad-request',
                                           "the data form must be of type 'submit'"))
        # <remove/> before authentication.
        r = await c.iq('set', query('<remove/>'))
        self.assertEqual(error_of(r)[0], 'unexpected-request')
        # Nothing was created, and the stream is still good for a valid registration.
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'valid'"), '0')
        await self.expect_ok(c, dict(ok, email='v.alid+tag@mail.example.org'))
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'valid'"), '1')

    @async_test
    async def test_conflict_also_case_folded(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'carol', 'password': 'Sing song 1', 'nick': 'c'})
        d = await self.stream()
        await self.expect_error(d, {'username': 'carol', 'password': 'Other pass 2', 'nick': 'c'},
                                'conflict', 'username: this username is taken')
        got = await self.expect_error(d, {'username': 'CaRoL', 'password': 'Other pass 2',
                                          'nick': 'c'}, 'conflict')
        self.assertEqual(got[2], 'cancel')
        # An account made by the administrator conflicts too; the first password stays.
        await self.expect_error(d, {'username': 'admin', 'password': 'Other pass 2', 'nick': 'x'},
                                'conflict')
        self.assertEqual(await self.login_result('carol', 'Sing song 1'), 'success')
        self.assertEqual(await self.login_result('carol', 'Other pass 2'), 'not-authorized')

    @async_test
    async def test_profile_reaches_other_modules_without_secrets(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'dora', 'password': 'Explorer 42',
                                 'email': 'dora@example.org', 'nick': 'Dora',
                                 'x-gender': 'f'})
        admin = await self.raw_login('admin@localhost', resource='events')
        r = await admin.iq('get', "<events xmlns='%s'/>" % NS_TACC, to='localhost')
        evs = [e for e in r.find('{%s}events' % NS_TACC)
               if e.get('type') == 'created' and e.get('jid') == 'dora@localhost']
        self.assertEqual(len(evs), 1, to_str(r))
        info = evs[0].get('info')
        for part in ('jabber:iq:register', 'dora@example.org', 'Dora'):
            self.assertIn(part, info)
        self.assertRegex(info, r"var=['\"]x-gender['\"]")
        self.assertNotRegex(info, r"var=['\"](password|invite)['\"]")
        self.assertNotIn('Explorer 42', info)

    @async_test
    async def test_authenticated_get_and_disco(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'erin', 'password': 'Elk pass 1', 'nick': 'e'})
        s = await self.raw_login('erin@localhost', 'Elk pass 1', resource='r')
        r = await s.iq('get', query(), to='localhost')
        q = r.find('{%s}query' % NS_REG)
        self.assertIsNotNone(q.find('{%s}registered' % NS_REG), to_str(r))
        self.assertEqual(q.findtext('{%s}username' % NS_REG), 'erin')
        r = await s.iq('get', "<query xmlns='%s'/>" % NS_INFO, to='localhost')
        feats = [f.get('var') for f in r.find('{%s}query' % NS_INFO)
                 if f.tag == '{%s}feature' % NS_INFO]
        self.assertIn(NS_REG, feats)

    @async_test
    async def test_password_change(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'frank', 'password': 'Fox old 1', 'nick': 'f'})
        s = await self.raw_login('frank@localhost', 'Fox old 1', resource='r')

        async def change(inner):
            return await s.iq('set', query(inner))
        self.secrets += ['Fox new 22', 'weakweak', 'Fox form 3']
        cases = [
            (legacy({'username': 'frank', 'password': 'weakweak'}), 'not-acceptable', CLASSES),
            (legacy({'username': 'frank', 'password': ''}), 'not-acceptable',
             'password: required'),
            (legacy({'username': 'frank', 'password': 'Fox new 22', 'email': 'f@example.org'}),
             'not-acceptable', 'email: only the password can be changed in-band'),
            (legacy({'username': 'carl', 'password': 'Fox new 22'}), 'forbidden',
             'username: you can only change the password of your own account'),
            (legacy({'password': 'Fox new 22'}), 'bad-request', 'username: required'),
            ('', 'bad-request', None),
        ]
        for inner, cond, text in cases:
            with self.subTest(inner=inner):
                r = await change(inner)
                self.assertEqual(error_of(r)[0], cond, to_str(r))
                if text is not None:
                    self.assertEqual(error_of(r)[1], text)
                self.assertIsNone(r.find('{%s}query' % NS_REG), 'payload echoed: ' + to_str(r))
        self.assertEqual(await self.login_result('frank', 'Fox old 1'), 'success')

        r = await change(legacy({'username': 'frank', 'password': 'Fox new 22'}))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.login_result('frank', 'Fox new 22'), 'success')
        self.assertEqual(await self.login_result('frank', 'Fox old 1'), 'not-authorized')
        self.assertEqual(await self.login_result('frank', 'Fox new 22', 'SCRAM-SHA-1'),
                         'success')
        # The XEP's changepassword form, with the username as a bare JID.
        r = await change(form({'username': 'frank@localhost', 'old_password': 'Fox new 22',
                               'password': 'Fox form 3'},
                              form_type='jabber:iq:register:changepassword'))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.login_result('frank', 'Fox form 3'), 'success')
        self.assertEqual(await self.login_result('frank', 'Fox new 22'), 'not-authorized')
        # The session that changed it stays.
        r = await s.iq('get', query())
        self.assertEqual(r.get('type'), 'result', to_str(r))

    @async_test
    async def test_cancel(self):
        c = await self.stream()
        await self.expect_ok(c, {'username': 'gina', 'password': 'Gnu pass 1', 'nick': 'g'})
        acc_id = self.sql("SELECT id FROM accounts WHERE username = 'gina'")
        a = await self.raw_login('gina@localhost', 'Gnu pass 1', resource='a')
        b = await self.raw_login('gina@localhost', 'Gnu pass 1', resource='b')
        r = await a.iq('set', query('<remove/><username>gina</username>'))
        self.assertEqual(error_of(r)[:2], ('bad-request', '<remove/> must be the only child'))

        await a.send("<iq type='set' id='cancel1'>%s</iq>" % query('<remove/>'))
        await a.expect_stream_error('not-authorized')
        replies = [e for e in a.history if tag_is(e, 'iq') and e.get('id') == 'cancel1']
        self.assertEqual(len(replies), 1, [to_str(e) for e in a.history])
        self.assertEqual(replies[0].get('type'), 'result')
        # The result came before the stream error.
        order = [e.tag for e in a.history]
        self.assertLess(a.history.index(replies[0]),
                        order.index('{http://etherx.jabber.org/streams}error'))
        await b.expect_stream_error('not-authorized')
        self.assertEqual(await self.login_result('gina', 'Gnu pass 1'), 'not-authorized')
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'gina'"), '0')
        self.assertEqual(self.sql('SELECT count(*) FROM credentials WHERE account_id = %s'
                                  % acc_id), '0')
        # The name can be registered again.
        d = await self.stream()
        await self.expect_ok(d, {'username': 'gina', 'password': 'Gnu again 2', 'nick': 'g'})
        self.assertEqual(await self.login_result('gina', 'Gnu again 2'), 'success')

    @async_test
    async def test_slixmpp_registers_through_the_stream_feature(self):
        user, pw = 'henry', 'Hen pass 8'
        self.secrets.append(pw)
        c = self.track(Client('%s@localhost' % user, pw, mech='SCRAM-SHA-256'))
        for p in ('xep_0004', 'xep_0066', 'xep_0077'):
            c.register_plugin(p)
        seen = {}

        async def on_register(form_iq):
            q = form_iq['register']
            seen['form'] = [f for f in q['form'].get_fields()]
            iq = c.Iq()
            iq['type'] = 'set'
            sub = c['xep_0004'].make_form('submit')
            sub.add_field(var='FORM_TYPE', ftype='hidden', value=NS_REG)
            sub.add_field(var='username', value=user)
            sub.add_field(var='password', value=pw)
            sub.add_field(var='nick', value='Hank')
            iq['register'].append(sub)
            seen['reply'] = await iq.send()
        c.add_event_handler('register', on_register)
        # slixmpp 1.8 holds back every stanza until the session starts, registration's too.
        c._always_send_everything = True
        await c.login(self.server.starttls_port)
        self.assertIn('nick', seen['form'])
        self.assertEqual(seen['reply']['type'], 'result')
        self.assertEqual(str(c.boundjid.bare), 'henry@localhost')


class ClosedRegistration(RegisterCase):
    config = config(reg_settings(registration='closed'))
    users = {'ivan@localhost': 'Ivan pass 1'}

    @async_test
    async def test_refused_and_not_advertised(self):
        c = await self.stream()
        self.assertIsNone(c.features.find('{%s}register' % NS_FEATURE), to_str(c.features))
        r = await c.iq('get', query())
        self.assertEqual(error_of(r)[:2], ('service-unavailable',
                                           'registration is closed on this server'))
        await self.expect_error(c, {'username': 'jane', 'password': 'Jane pass 1'},
                                'service-unavailable', 'registration is closed on this server')
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'jane'"), '0')

    @async_test
    async def test_password_change_still_works(self):
        s = await self.raw_login('ivan@localhost', resource='r')
        self.secrets.append('Ibis pass 2')
        r = await s.iq('set', query(legacy({'username': 'ivan', 'password': 'Ibis pass 2'})))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.login_result('ivan', 'Ibis pass 2'), 'success')


class InviteRegistration(RegisterCase):
    config = config(reg_settings(registration='invite',
                                 invites=['tok-alpha-7Q', 'tok-beta-9Z', 'tok-gamma-2X']))

    @async_test
    async def test_invites(self):
        c = await self.stream()
        self.assertIsNotNone(c.features.find('{%s}register' % NS_FEATURE))
        r = await c.iq('get', query())
        q = r.find('{%s}query' % NS_REG)
        # A required field no legacy element stands for: the form and instructions only.
        self.assertIsNone(q.find('{%s}username' % NS_REG), to_str(r))
        f = fields_of(q)
        self.assertIsNotNone(f['invite'].find('{%s}required' % NS_DATA))

        base = {'username': 'kim', 'password': 'Koala pass 12'}
        await self.expect_error(c, base, 'not-acceptable',
                                'invite: an invitation token is required')
        await self.expect_error(c, base, 'not-acceptable',
                                'invite: an invitation token is required', use_form=False)
        await self.expect_error(c, base, 'not-acceptable', 'invite: unknown invitation token',
                                invite='tok-alpha-7q')
        await self.expect_ok(c, base, invite='tok-alpha-7Q')
        self.assertEqual(await self.login_result('kim', 'Koala pass 12'), 'success')
        d = await self.stream()
        await self.expect_error(d, {'username': 'lou', 'password': 'Lynx pass 12'},
                                'not-acceptable',
                                'invite: this invitation token has already been used',
                                invite='tok-alpha-7Q')
        # A registration that fails (taken name) does not use the token up.
        await self.expect_error(d, {'username': 'kim', 'password': 'Lynx pass 12'}, 'conflict',
                                invite='tok-beta-9Z')
        await self.expect_ok(d, {'username': 'lou', 'password': 'Lynx pass 12'},
                             invite='tok-beta-9Z')
        rows = self.sql("SELECT u.token_sha256 = encode(sha256('tok-beta-9Z'::bytea), 'hex'), "
                        "a.username FROM register_invites_used u JOIN accounts a ON "
                        "a.id = u.account_id ORDER BY u.used_at")
        self.assertEqual(rows.splitlines(), ['f|kim', 't|lou'])
        dump = self.world.cluster.dump(self.server.db)
        for tok in ('tok-alpha-7Q', 'tok-beta-9Z', 'Koala pass 12', 'Lynx pass 12'):
            self.assertNotIn(tok, dump)
        # Cancelling the account does not give its token back.
        s = await self.raw_login('lou@localhost', 'Lynx pass 12', resource='r')
        await s.send("<iq type='set' id='c1'>%s</iq>" % query('<remove/>'))
        await s.expect_stream_error('not-authorized')
        self.assertEqual(self.sql('SELECT count(*) FROM register_invites_used WHERE '
                                  'account_id IS NULL'), '1')
        e = await self.stream()
        await self.expect_error(e, {'username': 'max', 'password': 'Mole pass 12'},
                                'not-acceptable',
                                'invite: this invitation token has already been used',
                                invite='tok-beta-9Z')

    @async_test
    async def test_one_token_two_streams_at_once(self):
        a, b = await self.stream(), await self.stream()
        ra, rb = await asyncio.gather(
            self.register(a, {'username': 'nia', 'password': 'Newt pass 12'},
                          invite='tok-gamma-2X'),
            self.register(b, {'username': 'ned', 'password': 'Nag pass 12'},
                          invite='tok-gamma-2X'))
        types = sorted([ra.get('type'), rb.get('type')])
        self.assertEqual(types, ['error', 'result'], [to_str(ra), to_str(rb)])
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username IN "
                                  "('nia', 'ned')"), '1')


class PerAddressLimit(RegisterCase):
    config = config(reg_settings(max_per_address=2, window='1h', min_interval=0))

    @async_test
    async def test_window(self):
        src = '127.0.0.2'
        a = await self.stream(source=src)
        await self.expect_ok(a, {'username': 'p1', 'password': 'Pone pass 1'})
        # Failures do not count.
        await self.expect_error(a, {'username': 'p1', 'password': 'Pone pass 1'}, 'conflict')
        await self.expect_error(a, {'username': 'p9', 'password': 'short'}, 'not-acceptable')
        b = await self.stream(source=src)
        await self.expect_ok(b, {'username': 'p2', 'password': 'Ptwo pass 2'})
        # The limit holds on every stream from that address, whichever worker it is on.
        for i in range(4):
            c = await self.stream(source=src)
            _, text, etype = await self.expect_error(
                c, {'username': 'p3', 'password': 'Pthree pass 3'}, 'policy-violation')
            self.assertRegex(text, r'^too many registrations from your address; try again in '
                                   r'\d+ seconds$')
            n = int(text.split()[-2])
            self.assertTrue(3500 <= n <= 3600, text)
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'p3'"), '0')
        # Another address is not affected.
        d = await self.stream(source='127.0.0.3')
        await self.expect_ok(d, {'username': 'p3', 'password': 'Pthree pass 3'})


class MinInterval(RegisterCase):
    config = config(reg_settings(max_per_address=0, min_interval='3s'))

    @async_test
    async def test_min_interval(self):
        src = '127.0.0.4'
        a = await self.stream(source=src)
        await self.expect_ok(a, {'username': 'q1', 'password': 'Qone pass 1'})
        t0 = time.monotonic()
        b = await self.stream(source=src)
        _, text, _ = await self.expect_error(b, {'username': 'q2', 'password': 'Qtwo pass 2'},
                                             'policy-violation')
        self.assertRegex(text, r'^registering too fast from your address; try again in [1-3] '
                               r'seconds$')
        # Another address may register meanwhile.
        c = await self.stream(source='127.0.0.5')
        await self.expect_ok(c, {'username': 'q3', 'password': 'Qthree pass 3'})
        await asyncio.sleep(max(0.0, 3.2 - (time.monotonic() - t0)))
        await self.expect_ok(b, {'username': 'q2', 'password': 'Qtwo pass 2'})


class InsecureAllowed(RegisterCase):
    config = config(reg_settings(allow_insecure=True),
                    tls={'priority': 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2',
                         'require_c2s': False})

    @async_test
    async def test_plain_stream_registers(self):
        c = await self.stream(tls=False)
        self.assertIsNotNone(c.features.find('{%s}register' % NS_FEATURE), to_str(c.features))
        await self.expect_ok(c, {'username': 'olga', 'password': 'Owl pass 1'})
        el = await c.authenticate('olga', 'Owl pass 1', 'SCRAM-SHA-1')
        self.assertTrue(tag_is(el, 'success', NS_SASL), to_str(el))


class InsecureRefused(RegisterCase):
    """TLS optional for the server, but not for registration (allow_insecure = false)."""
    config = config(tls={'priority': 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2',
                         'require_c2s': False})
    users = {'pat@localhost': 'Pat pass 12'}

    @async_test
    async def test_plain_stream_refused(self):
        c = await self.stream(tls=False)
        self.assertIsNone(c.features.find('{%s}register' % NS_FEATURE), to_str(c.features))
        await self.expect_error(c, {'username': 'quinn', 'password': 'Quail pass 1'},
                                'not-authorized',
                                'registration needs an encrypted stream: negotiate TLS first')
        # Nor a password change on a plain stream.
        el = await c.authenticate('pat', 'Pat pass 12', 'SCRAM-SHA-1')
        self.assertTrue(tag_is(el, 'success', NS_SASL), to_str(el))
        await c.open_stream()
        await c.bind('r')
        self.secrets.append('Puma pass 34')
        r = await c.iq('set', query(legacy({'username': 'pat', 'password': 'Puma pass 34'})))
        self.assertEqual(error_of(r)[:2], ('not-authorized',
                                           'password changes need an encrypted stream'))
        # With TLS both work.
        d = await self.stream()
        self.assertIsNotNone(d.features.find('{%s}register' % NS_FEATURE), to_str(d.features))
        await self.expect_ok(d, {'username': 'quinn', 'password': 'Quail pass 1'})


class BadSettings(unittest.TestCase):
    def test_bad_fields_stop_the_start(self):
        cases = [
            (reg_settings(fields=['bad var=Label']), 'fields: "bad var=Label"'),
            (reg_settings(fields=['password=Again']), '"password" is one of the module'),
            (reg_settings(fields=['nick=Nick'], required_fields=['age']),
             'required_fields: "age" is neither'),
        ]
        for settings, message in cases:
            with self.subTest(settings=settings):
                s = Server(world(), 'regbad', config(settings))
                s.start(wait=False)
                rc = s.wait_exit()
                log = s.log_text()
                self.assertNotEqual(rc, 0, log)
                self.assertIn(message, log)
                self.assertIn('load failed', log)


if __name__ == '__main__':
    main()
