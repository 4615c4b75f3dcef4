#!/usr/bin/python3
"""The account API of modules (include/stanzad/accounts.h) through the test-only module
mod_test_accounts: sd_account_create / exists / set_password / delete, their statuses, logins
with the verifiers they write (SCRAM-SHA-1, SCRAM-SHA-256, PLAIN), the cascade of a deletion
(credentials, kv rows, module rows) and the end of the deleted account's sessions; the
SD_EV_ACCOUNT_CREATED / SD_EV_ACCOUNT_DELETED events, exactly once each, on the calling worker
before the callback, with the creator's info element; and the same events for stanzactl's
adduser / deluser while the server runs (PostgreSQL notifications, raised on worker 0)."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NS_STREAM_ERRORS, SLOW, ServerTestCase, async_test, attr, main,  # noqa
                     tag_is, to_str)

NS = 'urn:stanzad:test:accounts'
NS_INFO = 'urn:stanzad:test:accounts:info'
ADMIN = 'admin@localhost'
USERS = {ADMIN: 'admin pw'}


class AccountsCase(ServerTestCase):
    config = {'modules': ['test_accounts']}
    users = USERS

    async def admin(self):
        if getattr(self, '_admin', None) is None or self._admin.eof:
            self._admin = await self.raw_login(ADMIN, resource='admin')
        return self._admin

    def tearDown(self):
        self._admin = None
        super().tearDown()

    async def call(self, op, user, password=None, host=None, inner='', **attrs):
        """Sends one request to the module; returns the <status/> element."""
        a = await self.admin()
        s = ' user=%s' % attr(user)
        if password is not None:
            s += ' password=%s' % attr(password)
        if host is not None:
            s += ' host=%s' % attr(host)
        for k, v in attrs.items():
            s += ' %s=%s' % (k, attr(v))
        r = await a.iq('set', "<%s xmlns='%s'%s>%s</%s>" % (op, NS, s, inner, op), to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        return r.find('{%s}status' % NS)

    async def status(self, op, user, password=None, **kw):
        st = await self.call(op, user, password, **kw)
        self.assertIsNotNone(st, 'no <status/>')
        return st.get('name')

    async def events(self):
        a = await self.admin()
        r = await a.iq('get', "<events xmlns='%s'/>" % NS, to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        return [dict(e.attrib) for e in r.find('{%s}events' % NS)]

    async def events_of(self, jid, type=None):
        return [e for e in await self.events()
                if e['jid'] == jid and (type is None or e['type'] == type)]

    async def wait_event(self, jid, type, timeout=None):
        deadline = time.monotonic() + (timeout or 10 * SLOW)
        while True:
            evs = await self.events_of(jid, type)
            if evs:
                return evs
            if time.monotonic() > deadline:
                raise AssertionError('no %s event for %s; events: %r'
                                     % (type, jid, await self.events()))
            await asyncio.sleep(0.05)

    async def barrier(self, tag):
        """stanzactl adduser + deluser of a throw-away account, waiting for its deleted event:
        notifications arrive in commit order over one connection, so every earlier one has
        been handled by then."""
        jid = 'barrier-%s@localhost' % tag
        r = self.server.ctl('adduser', jid, input='barrier pw\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.server.ctl('deluser', jid)
        self.assertEqual(r.returncode, 0, r.stderr)
        await self.wait_event(jid, 'deleted')

    async def try_login(self, user, password, mech='PLAIN', host='localhost'):
        """SASL only: 'success' or the failure condition."""
        c = self.raw(host=host, name='%s@%s' % (user, host))
        await c.connect()
        await c.open_stream()
        await c.starttls()
        await c.open_stream()
        el = await c.authenticate(user, password, mech)
        cond = c.sasl_condition(el)
        await c.close()
        return cond

    def sql(self, query):
        return self.world.cluster.psql(query, db=self.server.db).strip()

    def rows_of(self, table, user, host='localhost'):
        """Rows of table whose account_id is the id the account had (kept in self.ids)."""
        return int(self.sql('SELECT count(*) FROM %s WHERE account_id = %d'
                            % (table, self.ids[(user, host)])))

    def remember_id(self, user, host='localhost'):
        if not hasattr(self, 'ids'):
            self.ids = {}
        v = self.sql("SELECT id FROM accounts WHERE host = '%s' AND username = '%s'"
                     % (host, user))
        self.assertTrue(v, 'no account row for %s@%s' % (user, host))
        self.ids[(user, host)] = int(v)


class Accounts(AccountsCase):

    @async_test(timeout=120)
    async def test_create_then_login(self):
        pw = 'bob secret'
        st = await self.call('create', 'bob', pw)
        self.assertEqual(st.get('name'), 'OK')
        # the event ran on the calling worker, before the callback
        self.assertEqual(st.get('started'), st.get('worker'))
        self.assertEqual(st.get('event-before'), '1')
        for mech in ('SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN'):
            self.assertEqual(await self.try_login('bob', pw, mech), 'success', mech)
        self.assertEqual(await self.try_login('bob', 'wrong', 'SCRAM-SHA-256'), 'not-authorized')
        # both verifiers, with the default iterations, and nothing else
        self.assertEqual(self.sql(
            "SELECT string_agg(c.mechanism || ':' || c.iterations, ',' ORDER BY c.mechanism) "
            "FROM credentials c JOIN accounts a ON a.id = c.account_id "
            "WHERE a.host = 'localhost' AND a.username = 'bob'"),
            'SCRAM-SHA-1:4096,SCRAM-SHA-256:4096')
        self.assertEqual(await self.status('exists', 'bob'), 'OK')
        # taken: EXISTS, and the first password still works
        self.assertEqual(await self.status('create', 'bob', 'other'), 'EXISTS')
        self.assertEqual(await self.status('create', 'BOB', 'other'), 'EXISTS')
        self.assertEqual(await self.try_login('bob', pw, 'SCRAM-SHA-1'), 'success')
        self.assertEqual(await self.try_login('bob', 'other', 'SCRAM-SHA-1'), 'not-authorized')
        # one created event, on the calling worker, without info
        evs = await self.events_of('bob@localhost')
        self.assertEqual([e['type'] for e in evs], ['created'], evs)
        self.assertEqual(evs[0]['worker'], st.get('worker'))
        self.assertNotIn('info', evs[0])
        # and the server's own notification did not raise it a second time
        await self.barrier('create')
        self.assertEqual(len(await self.events_of('bob@localhost')), 1)

    @async_test
    async def test_names(self):
        # preparation: case folded, the stored name is the prepared one
        self.assertEqual(await self.status('create', 'Carol', 'carol pw'), 'OK')
        self.assertEqual(self.sql("SELECT username FROM accounts WHERE username ILIKE 'carol'"),
                         'carol')
        self.assertEqual(await self.status('exists', 'CAROL'), 'OK')
        self.assertEqual(len(await self.events_of('carol@localhost', 'created')), 1)
        self.assertEqual(await self.try_login('carol', 'carol pw', 'SCRAM-SHA-256'), 'success')
        # refused names and hosts
        for user in ('a b', 'x@y', 'sl/ash', '', 'q' * 1100):
            self.assertEqual(await self.status('create', user, 'pw'), 'BAD_NAME', user)
            self.assertEqual(await self.status('exists', user), 'BAD_NAME', user)
        self.assertEqual(await self.status('create', 'dan', 'pw', host='elsewhere.test'),
                         'BAD_NAME')
        self.assertEqual(await self.status('delete', 'admin', host='elsewhere.test'), 'BAD_NAME')
        self.assertEqual(await self.status('set-password', 'carol', 'x', host='nowhere.test'),
                         'BAD_NAME')
        # the second host of the server is a host of ours
        self.assertEqual(await self.status('create', 'dan', 'dan pw', host='example.test'), 'OK')
        self.assertEqual(await self.try_login('dan', 'dan pw', 'SCRAM-SHA-1',
                                              host='example.test'), 'success')
        self.assertEqual(await self.status('exists', 'dan'), 'NOT_FOUND')
        self.assertEqual(await self.status('exists', 'nobody'), 'NOT_FOUND')
        # nothing was created for the refused ones
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE host NOT IN "
                                  "('localhost', 'example.test')"), '0')
        # an empty password is refused
        self.assertEqual(await self.status('create', 'erin', ''), 'BAD_PASSWORD')
        self.assertEqual(await self.status('exists', 'erin'), 'NOT_FOUND')

    @async_test(timeout=120)
    async def test_set_password(self):
        old, new = 'frank old', 'frank nëw'
        self.assertEqual(await self.status('create', 'frank', old), 'OK')
        frank = await self.raw_login('frank@localhost', old, resource='stays')
        st = await self.call('set-password', 'frank', new)
        self.assertEqual(st.get('name'), 'OK')
        self.assertEqual(st.get('started'), st.get('worker'))
        for mech in ('SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN'):
            self.assertEqual(await self.try_login('frank', old, mech), 'not-authorized', mech)
            self.assertEqual(await self.try_login('frank', new, mech), 'success', mech)
        self.assertEqual(self.server.ctl('check-password', 'frank@localhost',
                                         input=new + '\n').returncode, 0)
        self.assertEqual(await self.status('set-password', 'nobody', 'x'), 'NOT_FOUND')
        # sessions stay, and a password change raises no account event
        r = await frank.iq('get', "<ping xmlns='urn:xmpp:ping'/>")
        self.assertIn(r.get('type'), ('result', 'error'))
        self.assertFalse(frank.eof)
        self.assertEqual([e['type'] for e in await self.events_of('frank@localhost')],
                         ['created'])

    @async_test(timeout=120)
    async def test_delete(self):
        pw = 'gina pw'
        self.assertEqual(await self.status('create', 'gina', pw), 'OK')
        self.remember_id('gina')
        # rows that must go with the account: the core's kv and a module table
        self.sql("INSERT INTO kv (account_id, module, store, value) VALUES (%d, 'test_accounts', "
                 "'s', '<x/>')" % self.ids[('gina', 'localhost')])
        self.sql("INSERT INTO test_accounts_notes (account_id, note) VALUES (%d, 'n')"
                 % self.ids[('gina', 'localhost')])
        self.assertEqual(self.rows_of('kv', 'gina'), 1)
        self.assertEqual(self.rows_of('credentials', 'gina'), 2)
        s1 = await self.raw_login('gina@localhost', pw, resource='one')
        s2 = await self.raw_login('gina@localhost', pw, resource='two', mech='SCRAM-SHA-256')

        st = await self.call('delete', 'gina')
        self.assertEqual(st.get('name'), 'OK')
        self.assertEqual(st.get('started'), st.get('worker'))
        self.assertEqual(st.get('event-before'), '1')
        for s in (s1, s2):
            err = await s.expect_stream_error('not-authorized')
            text = err.find('{%s}text' % NS_STREAM_ERRORS)
            self.assertIsNotNone(text, to_str(err))
            self.assertEqual(text.text, 'account deleted')
        self.assertEqual(await self.try_login('gina', pw, 'PLAIN'), 'not-authorized')
        self.assertEqual(await self.try_login('gina', pw, 'SCRAM-SHA-256'), 'not-authorized')
        for table in ('credentials', 'kv', 'test_accounts_notes'):
            self.assertEqual(self.rows_of(table, 'gina'), 0, table)
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE username = 'gina'"), '0')
        self.assertEqual(await self.status('exists', 'gina'), 'NOT_FOUND')
        self.assertEqual(await self.status('delete', 'gina'), 'NOT_FOUND')
        await self.barrier('delete')
        evs = await self.events_of('gina@localhost')
        self.assertEqual([e['type'] for e in evs], ['created', 'deleted'], evs)
        self.assertEqual(evs[1]['worker'], st.get('worker'))
        # the name is free again
        self.assertEqual(await self.status('create', 'gina', 'again'), 'OK')
        self.assertEqual(await self.try_login('gina', 'again', 'SCRAM-SHA-1'), 'success')

    @async_test
    async def test_info_reaches_the_event(self):
        info = "<info xmlns='%s'><nick>Hank</nick><age>42</age></info>" % NS_INFO
        self.assertEqual((await self.call('create', 'hank', 'hank pw', inner=info)).get('name'),
                         'OK')
        ev = (await self.events_of('hank@localhost', 'created'))[0]
        self.assertEqual(ev.get('holder'), 'iq', ev)          # the creator's whole stanza
        self.assertEqual(ev.get('payload'), 'create', ev)
        self.assertIn('<nick>Hank</nick>', ev.get('info', ''), ev)
        self.assertIn(NS_INFO, ev.get('info', ''), ev)

    @async_test
    async def test_info_outlives_the_callers_stanza(self):
        """early='1': the module answers (and its stanza is freed) before the account exists;
        the event still gets the info element."""
        info = "<info xmlns='%s'><nick>Ivy</nick></info>" % NS_INFO
        a = await self.admin()
        r = await a.iq('set', "<create xmlns='%s' user='ivy' password='ivy pw' early='1'>%s"
                       "</create>" % (NS, info), to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertIsNotNone(r.find('{%s}started' % NS), to_str(r))
        res = await self.wait_event('ivy@localhost', 'result')
        self.assertEqual(res[0]['status'], 'OK')
        evs = await self.events_of('ivy@localhost')
        self.assertEqual([e['type'] for e in evs], ['created', 'result'], evs)
        self.assertIn('<nick>Ivy</nick>', evs[0].get('info', ''), evs)
        self.assertEqual(evs[0]['worker'], evs[1]['worker'])
        self.assertEqual(await self.try_login('ivy', 'ivy pw', 'SCRAM-SHA-256'), 'success')

    @async_test(timeout=180)
    async def test_concurrent_creates_one_wins(self):
        a = await self.admin()
        ids = ['c%d' % i for i in range(6)]
        for i in ids:
            await a.send("<iq type='set' id='%s' to='localhost'><create xmlns='%s' user='jack' "
                         "password='pw %s'/></iq>" % (i, NS, i))
        got = {}
        while len(got) < len(ids):
            el = await a.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') in ids
                                  and e.get('id') not in got)
            got[el.get('id')] = el.find('{%s}status' % NS).get('name')
        self.assertEqual(sorted(got.values()), ['EXISTS'] * 5 + ['OK'], got)
        winner = [i for i, s in got.items() if s == 'OK'][0]
        self.assertEqual(await self.try_login('jack', 'pw ' + winner, 'SCRAM-SHA-1'), 'success')
        self.assertEqual(len(await self.events_of('jack@localhost', 'created')), 1)


class StanzactlEvents(AccountsCase):
    """Changes made by stanzactl while the server runs: the server hears them (LISTEN) and
    raises the events on worker 0; a deletion ends the account's sessions."""

    @async_test(timeout=120)
    async def test_adduser_deluser_raise_events(self):
        jid, pw = 'kate@localhost', 'kate pw'
        r = self.server.ctl('adduser', jid, input=pw + '\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        evs = await self.wait_event(jid, 'created')
        self.assertEqual(evs[0]['worker'], '0')
        self.assertNotIn('info', evs[0])
        kate = await self.raw_login(jid, pw, resource='online')

        # passwd: no event, the session stays
        r = self.server.ctl('passwd', jid, input='kate new\n')
        self.assertEqual(r.returncode, 0, r.stderr)

        r = self.server.ctl('deluser', jid)
        self.assertEqual(r.returncode, 0, r.stderr)
        err = await kate.expect_stream_error('not-authorized')
        self.assertEqual(err.find('{%s}text' % NS_STREAM_ERRORS).text, 'account deleted')
        evs = await self.wait_event(jid, 'deleted')
        self.assertEqual(evs[0]['worker'], '0')
        await self.barrier('ctl')
        self.assertEqual([e['type'] for e in await self.events_of(jid)], ['created', 'deleted'])
        self.assertEqual(await self.try_login('kate', 'kate new', 'PLAIN'), 'not-authorized')

    @async_test
    async def test_failed_commands_raise_nothing(self):
        jid = 'liam@localhost'
        self.assertEqual(self.server.ctl('deluser', jid).returncode, 1)
        r = self.server.ctl('adduser', jid, input='one\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server.ctl('adduser', jid, input='two\n').returncode, 1)
        await self.barrier('failed')
        self.assertEqual([e['type'] for e in await self.events_of(jid)], ['created'])

    @async_test
    async def test_api_and_stanzactl_agree(self):
        # created through the API, deleted by stanzactl (and the other way round)
        self.assertEqual(await self.status('create', 'mia', 'mia pw'), 'OK')
        mia = await self.raw_login('mia@localhost', 'mia pw')
        self.assertEqual(self.server.ctl('deluser', 'mia@localhost').returncode, 0)
        await mia.expect_stream_error('not-authorized')
        await self.wait_event('mia@localhost', 'deleted')
        r = self.server.ctl('adduser', 'ned@localhost', input='ned pw\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(await self.status('create', 'ned', 'x'), 'EXISTS')
        self.assertEqual(await self.status('delete', 'ned'), 'OK')
        self.assertEqual(self.server.ctl('deluser', 'ned@localhost').returncode, 1)
        await self.barrier('agree')
        types = [(e['jid'], e['type']) for e in await self.events()
                 if e['jid'] in ('mia@localhost', 'ned@localhost')]
        self.assertEqual(types, [('mia@localhost', 'created'), ('mia@localhost', 'deleted'),
                                 ('ned@localhost', 'created'), ('ned@localhost', 'deleted')])


class DatabaseTrouble(AccountsCase):
    """The database goes away: calls answer UNAVAILABLE after storage.timeout; the listener
    connection comes back by itself and hears stanzactl again."""
    config = {'modules': ['test_accounts'], 'storage': {'timeout': 1}}

    def listener_pids(self):
        return self.sql("SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = 'LISTEN %s'"
                        % 'stanzad_accounts')

    def wait_listener(self, other_than=''):
        deadline = time.monotonic() + 15 * SLOW
        while True:
            pids = self.listener_pids()
            if pids and pids != other_than:
                return pids
            if time.monotonic() > deadline:
                raise AssertionError('no LISTEN connection (had %r)' % other_than)
            time.sleep(0.05)

    @async_test(timeout=120)
    async def test_listener_reconnects(self):
        old = self.wait_listener()
        self.assertNotIn(',', old, 'more than one listener connection')
        self.sql('SELECT pg_terminate_backend(%s)' % old)
        new = self.wait_listener(other_than=old)
        self.assertNotEqual(new, old)
        r = self.server.ctl('adduser', 'quinn@localhost', input='quinn pw\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        evs = await self.wait_event('quinn@localhost', 'created')
        self.assertEqual(len(evs), 1)
        self.assertIn('database listener on stanzad_accounts', self.server.log_text())

    @async_test(timeout=120)
    async def test_unavailable(self):
        await self.admin()      # logged in before the database goes
        db = self.server.db
        psql = self.world.cluster.psql
        psql('ALTER DATABASE "%s" ALLOW_CONNECTIONS false' % db)
        try:
            psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
                 % db)
            t0 = time.monotonic()
            self.assertEqual(await self.status('create', 'rita', 'rita pw'), 'UNAVAILABLE')
            self.assertEqual(await self.status('exists', 'admin'), 'UNAVAILABLE')
            self.assertEqual(await self.status('delete', 'admin'), 'UNAVAILABLE')
            self.assertLess(time.monotonic() - t0, 20 * SLOW)
        finally:
            psql('ALTER DATABASE "%s" ALLOW_CONNECTIONS true' % db)
        # back: the pool reconnects, the account was never created, admin was never deleted
        deadline = time.monotonic() + 20 * SLOW
        while True:
            s = await self.status('exists', 'admin')
            if s == 'OK' or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.assertEqual(s, 'OK')
        self.assertEqual(await self.status('exists', 'rita'), 'NOT_FOUND')
        self.assertEqual(await self.events_of('rita@localhost'), [])
        self.assertEqual(await self.events_of('admin@localhost', 'deleted'), [])
        self.wait_listener()


class ZzNoSecrets(AccountsCase):
    """Last (by name): no password passed to the API or stanzactl reaches the log or the
    database."""

    @async_test
    async def test_no_password_in_log_or_database(self):
        secrets = ['Zq7-api-create-secret', 'Zq7-api-new-secret', 'Zq7-ctl-secret']
        self.assertEqual(await self.status('create', 'olga', secrets[0]), 'OK')
        self.assertEqual(await self.status('set-password', 'olga', secrets[1]), 'OK')
        r = self.server.ctl('adduser', 'pete@localhost', input=secrets[2] + '\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        await self.wait_event('pete@localhost', 'created')
        self.assertEqual(await self.status('delete', 'olga'), 'OK')
        log = self.server.log_text()
        dump = self.world.cluster.dump(self.server.db)
        for s in secrets:
            self.assertNotIn(s, log)
            self.assertNotIn(s, dump)
            self.assertNotIn(s, r.stdout + r.stderr)
        # the changes themselves are logged
        self.assertIn('account olga@localhost created', log)
        self.assertIn('account pete@localhost created by another process', log)


if __name__ == '__main__':
    main()
