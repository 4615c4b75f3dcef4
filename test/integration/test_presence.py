#!/usr/bin/python3
"""Presence with mod_roster (RFC 6121 §4): initial presence probes the contacts one is
subscribed to and goes to the contacts subscribed to one; updates and unavailable presence
(on logout and on a dropped connection) reach the subscribers; a probe is answered with the
last presence of each available resource; presence to a bare JID reaches every available
resource; priorities; directed presence and its unavailable at logout; the presence path works
with the roster tables locked (no database on the way); real clients (slixmpp, three of them);
and account deletion with stanzactl cleaning the roster rows and the contacts' items."""

import asyncio
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SLOW, TIMEOUT, Client, ServerTestCase, async_test, main,  # noqa: E402
                     tag_is, to_str, bare, attr, x, NS_CLIENT)

NS_ROSTER = 'jabber:iq:roster'
PW = 'presence pw'
QUIET = 0.4 * SLOW
CONFIG = {'modules': ['roster']}


def is_push(el, about=None):
    if not (tag_is(el, 'iq') and el.get('type') == 'set'):
        return False
    q = el.find('{%s}query' % NS_ROSTER)
    return q is not None and (about is None or any(
        i.get('jid') == about for i in q.findall('{%s}item' % NS_ROSTER)))


def is_pres(el, frm=None, ptype='available'):
    """Presence from frm (a full JID, or a bare JID meaning any of its resources) of type ptype
    ('available' for none, or a type)."""
    if not tag_is(el, 'presence'):
        return False
    t = el.get('type') or 'available'
    if ptype is not None and t != ptype:
        return False
    f = el.get('from') or ''
    return frm is None or f == frm or ('/' not in frm and f.startswith(frm + '/'))


def child_text(el, name, ns=NS_CLIENT):
    c = el.find('{%s}%s' % (ns, name))
    return c.text if c is not None else None


class Party:
    def __init__(self, jid, c):
        self.jid = jid
        self.c = c

    @property
    def full(self):
        return self.c.jid


class PresenceCase(ServerTestCase):
    config = CONFIG
    users = {}
    _n = 0

    def new_account(self, prefix):
        PresenceCase._n += 1
        jid = '%s%d@localhost' % (prefix, PresenceCase._n)
        self.server.add_user(jid, PW)
        return jid

    async def login(self, jid, resource='r', *, roster=True, available=True, priority=None,
                    show=None, status=None):
        c = await self.raw_login(jid, password=PW, resource=resource)
        p = Party(jid, c)
        if roster:
            r = await c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
            self.assertEqual(r.get('type'), 'result', to_str(r))
        if available:
            await self.send_presence(p, priority=priority, show=show, status=status)
            await c.wait_for(lambda e: is_pres(e, c.jid), what='own initial presence')
        return p

    async def send_presence(self, p, *, to=None, ptype=None, priority=None, show=None,
                            status=None, pid=None):
        a = ''
        if to:
            a += ' to=%s' % attr(to)
        if ptype:
            a += ' type=%s' % attr(ptype)
        if pid:
            a += ' id=%s' % attr(pid)
        inner = ''
        if show:
            inner += '<show>%s</show>' % show
        if status:
            inner += '<status>%s</status>' % x(status)
        if priority is not None:
            inner += '<priority>%d</priority>' % priority
        await p.c.send('<presence%s>%s</presence>' % (a, inner))

    async def answer_pushes(self, p):
        for el in [e for e in p.c.pending if is_push(e)]:
            p.c.pending.remove(el)
            await p.c.send("<iq type='result' id=%s/>" % attr(el.get('id')))

    async def settle(self, *parties):
        await asyncio.gather(*(p.c.collect(QUIET) for p in parties))
        for p in parties:
            await self.answer_pushes(p)
            p.c.pending.clear()

    async def subscribe(self, a, b):
        """a subscribes to b's presence, b approves (RFC 6121 §3.1); both online."""
        await a.c.send("<presence to=%s type='subscribe'/>" % attr(b.jid))
        await b.c.wait_for(lambda e: is_pres(e, a.jid, 'subscribe'), what='subscribe')
        await b.c.send("<presence to=%s type='subscribed'/>" % attr(a.jid))
        await a.c.wait_for(lambda e: is_pres(e, b.jid, 'subscribed'), what='subscribed')
        await a.c.wait_for(lambda e: is_pres(e, b.full), what='presence after approval')

    async def mutual(self, a, b):
        await self.subscribe(a, b)
        await self.subscribe(b, a)
        await self.settle(a, b)

    async def nothing_from(self, p, frm, what):
        await p.c.collect(QUIET)
        got = [to_str(e) for e in p.c.pending if tag_is(e, 'presence') and bare(
            e.get('from') or '') == bare(frm)]
        self.assertEqual(got, [], what)


class Presence(PresenceCase):

    @async_test
    async def test_initial_presence_probes_and_broadcast(self):
        """§4.2.2: initial presence goes to contacts with 'from'/'both', and the probes it
        triggers bring back the contacts' last presence, from their full JIDs."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj, 'one')
        b = await self.login(bj, 'home', show='away', status='out for lunch', priority=3)
        await self.mutual(a, b)
        await a.c.close()
        a2 = await self.login(aj, 'two', available=False)
        await self.send_presence(a2, show='chat', status='back')
        got = await b.c.wait_for(lambda e: is_pres(e, a2.full), what="a2's initial presence")
        self.assertEqual(child_text(got, 'status'), 'back')
        self.assertEqual(child_text(got, 'show'), 'chat')
        ans = await a2.c.wait_for(lambda e: is_pres(e, b.full), what="b's presence (probe)")
        self.assertEqual(child_text(ans, 'show'), 'away')
        self.assertEqual(child_text(ans, 'status'), 'out for lunch')
        self.assertEqual(child_text(ans, 'priority'), '3')
        self.assertEqual(bare(ans.get('to')), aj)

    @async_test
    async def test_probe_answered_with_each_available_resource(self):
        """§4.3.2: the answer to a probe is the last presence of each available resource (any
        priority); a resource that never sent presence, or went unavailable, is not in it."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj, 'r')
        b1 = await self.login(bj, 'one', status='first', priority=5)
        await self.mutual(a, b1)
        b2 = await self.login(bj, 'two', status='second', priority=-1)
        await self.login(bj, 'silent', available=False)
        b4 = await self.login(bj, 'gone', status='soon gone')
        await self.send_presence(b4, status='updated')
        await self.send_presence(b4, ptype='unavailable')
        await b1.c.wait_for(lambda e: is_pres(e, b4.full, 'unavailable'),
                            what="b4's unavailable on b1")
        await self.settle(a, b1, b2, b4)
        a2 = await self.login(aj, 'new')
        seen = {}
        for _ in range(2):
            p = await a2.c.wait_for(lambda e: is_pres(e, bj) and e.get('from') not in seen,
                                    what='a presence of b')
            seen[p.get('from')] = (child_text(p, 'status'), child_text(p, 'priority'))
        self.assertEqual(seen, {b1.full: ('first', '5'), b2.full: ('second', '-1')})
        await a2.c.collect(QUIET)
        extra = [to_str(e) for e in a2.c.pending if is_pres(e, bj, None)]
        self.assertEqual(extra, [], 'presence from a resource that is not available')

    @async_test
    async def test_updates_reach_subscribers_only(self):
        """§4.4.2: an update is broadcast to the contacts with 'from'/'both' and delivered to
        all their available resources (§4.4.3); someone not subscribed gets nothing."""
        aj, bj, cj = self.new_account('a'), self.new_account('b'), self.new_account('c')
        a = await self.login(aj)
        b1 = await self.login(bj, 'one')
        await self.mutual(a, b1)
        b2 = await self.login(bj, 'two')
        c = await self.login(cj)
        await self.settle(a, b1, b2, c)
        await self.send_presence(a, show='dnd', status='busy')
        for p in (b1, b2):
            got = await p.c.wait_for(lambda e: is_pres(e, a.full) and
                                     child_text(e, 'show') == 'dnd', what='the update')
            self.assertEqual(child_text(got, 'status'), 'busy')
            self.assertEqual(bare(got.get('to')), bj)
        await self.nothing_from(c, aj, 'presence reached an account without a subscription')

    @async_test
    async def test_unavailable_on_logout(self):
        """§4.5.2: a clean logout (or unavailable presence) reaches the subscribers."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj)
        b = await self.login(bj)
        await self.mutual(a, b)
        await self.send_presence(a, ptype='unavailable', status='bye')
        got = await b.c.wait_for(lambda e: is_pres(e, a.full, 'unavailable'), what='unavailable')
        self.assertEqual(child_text(got, 'status'), 'bye')
        await self.send_presence(a, status='again')
        await b.c.wait_for(lambda e: is_pres(e, a.full) and child_text(e, 'status') == 'again',
                           what='available again')
        await a.c.close()
        await b.c.wait_for(lambda e: is_pres(e, a.full, 'unavailable') and
                           child_text(e, 'status') is None, what='unavailable at logout')

    @async_test
    async def test_unavailable_on_abrupt_disconnect(self):
        """§4.5.4: a connection that just drops (TCP reset, no </stream:stream>) ends in
        unavailable presence for the subscribers, for each available resource."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a1 = await self.login(aj, 'one')
        b = await self.login(bj)
        await self.mutual(a1, b)
        a2 = await self.login(aj, 'two')
        await b.c.wait_for(lambda e: is_pres(e, a2.full), what="a2's presence")
        a1.c.abort(rst=True)
        await b.c.wait_for(lambda e: is_pres(e, a1.full, 'unavailable'), what='unavailable a1')
        await a2.c.wait_for(lambda e: is_pres(e, a1.full, 'unavailable'),
                            what='unavailable a1 on the own other resource')
        await self.nothing_from(b, a2.full, 'a2 is still online')

    @async_test
    async def test_presence_to_bare_jid_reaches_all_available_resources(self):
        """RFC 6121 §8.5.2.1.1 / §4.6: presence to a bare JID goes to every available resource,
        whatever its priority, and not to one without presence."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj)
        b1 = await self.login(bj, 'one', priority=10)
        b2 = await self.login(bj, 'two', priority=-5)
        b3 = await self.login(bj, 'three', available=False)
        await self.send_presence(a, to=bj, status='directed to you')
        for p in (b1, b2):
            got = await p.c.wait_for(lambda e: is_pres(e, a.full), what='the directed presence')
            self.assertEqual(child_text(got, 'status'), 'directed to you')
        await self.nothing_from(b3, aj, 'a resource without presence got presence')

    @async_test
    async def test_priorities(self):
        """RFC 6121 §8.5.2.1.1: a message to the bare JID goes to the highest non-negative
        priority; a change of priority moves it."""
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj)
        hi = await self.login(bj, 'hi', priority=5)
        lo = await self.login(bj, 'lo', priority=1)
        await a.c.send_message(bj, 'first')
        await hi.c.wait_message('first')
        await self.send_presence(lo, priority=9)
        await lo.c.wait_for(lambda e: is_pres(e, lo.full) and child_text(e, 'priority') == '9',
                            what='own presence with priority 9')
        await a.c.send_message(bj, 'second')
        await lo.c.wait_message('second')
        await hi.c.collect(QUIET)
        self.assertEqual([m for m in hi.c.messages() if m.find('{%s}body' % NS_CLIENT).text
                          == 'second'], [])

    @async_test
    async def test_directed_presence_and_its_unavailable_at_logout(self):
        """§4.6: directed presence to someone not subscribed is delivered; the server remembers
        it and sends unavailable presence there when the session ends (§4.6.3)."""
        aj, cj = self.new_account('a'), self.new_account('c')
        a = await self.login(aj)
        c = await self.login(cj)
        await self.send_presence(a, to=c.full, show='chat', status='just for you')
        got = await c.c.wait_for(lambda e: is_pres(e, a.full), what='directed presence')
        self.assertEqual(child_text(got, 'status'), 'just for you')
        await self.send_presence(a, status='broadcast only')
        await self.nothing_from(c, aj, 'a broadcast reached a non-subscriber')
        await a.c.close()
        await c.c.wait_for(lambda e: is_pres(e, a.full, 'unavailable'),
                           what='unavailable after directed presence')

    @async_test
    async def test_own_resources_see_each_other(self):
        """§4.2.2: a new available resource gets the presence of the account's other available
        resources, and they get its own (reflection)."""
        aj = self.new_account('a')
        r1 = await self.login(aj, 'one', status='first one')
        r2 = await self.login(aj, 'two', available=False)
        await self.send_presence(r2, status='second one')
        got = await r2.c.wait_for(lambda e: is_pres(e, r1.full), what="r1's presence on r2")
        self.assertEqual(child_text(got, 'status'), 'first one')
        got = await r1.c.wait_for(lambda e: is_pres(e, r2.full), what="r2's presence on r1")
        self.assertEqual(child_text(got, 'status'), 'second one')

    @async_test(timeout=120)
    async def test_three_slixmpp_clients(self):
        """Three real clients (slixmpp approves requests and asks back by default): one
        subscribe each makes them mutual contacts; each sees the others online; one drops its
        connection and the other two see it go offline."""
        jids = [self.new_account(n) for n in ('sa', 'sb', 'sc')]
        clients = []
        for j in jids:
            c = self.track(Client(j + '/slix', PW))
            await c.login(self.server.starttls_port)
            await c.get_roster()
            c.send_presence(pstatus='hello from ' + j)
            clients.append(c)
        a, b, c = clients
        a.send_presence(pto=jids[1], ptype='subscribe')
        a.send_presence(pto=jids[2], ptype='subscribe')
        b.send_presence(pto=jids[2], ptype='subscribe')

        def all_both():
            for i, cl in enumerate(clients):
                for k, other in enumerate(jids):
                    if k == i:
                        continue
                    if other not in cl.client_roster or \
                            cl.client_roster[other]['subscription'] != 'both':
                        return False
            return True
        await a._wait(all_both, 20 * SLOW, 'mutual subscriptions among three clients')

        def all_online():
            for i, cl in enumerate(clients):
                for k, other in enumerate(jids):
                    if k != i and not cl.client_roster.presence(other):
                        return False
            return True
        await a._wait(all_online, 20 * SLOW, 'everyone sees everyone online')
        self.assertEqual(a.client_roster.presence(jids[1])['slix']['status'],
                         'hello from ' + jids[1])
        c.abort_now()

        def c_offline():
            return not a.client_roster.presence(jids[2]) and not b.client_roster.presence(jids[2])
        await a._wait(c_offline, 20 * SLOW, 'the dropped client seen offline')
        self.assertTrue(a.client_roster.presence(jids[1]), 'b went offline too')


class PresenceWithoutDatabase(PresenceCase):
    """The presence path of online accounts does not touch the database: with every table of
    the roster module (and the accounts table) locked by another transaction, presence still
    flows, probes are still answered and logouts still announced."""

    @async_test(timeout=120)
    async def test_presence_with_the_tables_locked(self):
        aj, bj = self.new_account('a'), self.new_account('b')
        a = await self.login(aj, 'one')
        b = await self.login(bj, 'home', status='here')
        await self.mutual(a, b)
        a2 = await self.login(aj, 'two', available=False)   # bound and loaded; silent
        cl = self.world.cluster
        locker = subprocess.Popen(
            [os.path.join(cl.bindir, 'psql'), '-X', '-q', '-A', '-t', '-h', cl.socket_dir, '-U', 'postgres',
             '-d', self.server.db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            locker.stdin.write("BEGIN; LOCK TABLE roster_items, roster_version, roster_blocked, "
                               "accounts IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
            locker.stdin.flush()
            line = await asyncio.get_running_loop().run_in_executor(None, locker.stdout.readline)
            self.assertIn('locked', line)
            t0 = time.monotonic()
            await self.send_presence(a, show='away')
            await b.c.wait_for(lambda e: is_pres(e, a.full) and child_text(e, 'show') == 'away',
                               timeout=3 * SLOW, what='the update')
            await self.send_presence(a2, status='second')        # initial: probes
            await b.c.wait_for(lambda e: is_pres(e, a2.full), timeout=3 * SLOW,
                               what="a2's initial presence")
            await a2.c.wait_for(lambda e: is_pres(e, b.full) and child_text(e, 'status') ==
                                'here', timeout=3 * SLOW, what='the probe answer')
            await b.c.close()
            await a.c.wait_for(lambda e: is_pres(e, b.full, 'unavailable'), timeout=3 * SLOW,
                               what="b's unavailable")
            self.assertLess(time.monotonic() - t0, 9 * SLOW)
        finally:
            try:
                locker.communicate('ROLLBACK;\n\\q\n', timeout=10)
            except subprocess.TimeoutExpired:
                locker.kill()
                locker.communicate()


class Restart(PresenceCase):
    """Subscription states and stored requests live in PostgreSQL: after a server restart (and
    with the accounts' state dropped from memory as soon as their sessions end) presence flows
    as before and an unanswered request is delivered."""
    config = {'modules': ['roster'], 'module_settings': {'roster': {'unload_after': 0}}}

    @async_test(timeout=120)
    async def test_state_survives_restart(self):
        aj, bj, cj = self.new_account('a'), self.new_account('b'), self.new_account('c')
        a = await self.login(aj)
        b = await self.login(bj)
        await self.mutual(a, b)
        await a.c.close()
        c = await self.login(cj)
        await c.c.send("<presence to=%s type='subscribe'><status>let me see</status>"
                       "<nick xmlns='http://jabber.org/protocol/nick'>Cee</nick>"
                       "<x xmlns='urn:example:ext'><y z='1' xml:lang='en'>a &amp; b</y></x>"
                       "</presence>" % attr(aj))
        await c.c.wait_for(lambda e: is_push(e, aj), what="c's push")
        # a's side (offline: its state is loaded for this) is written asynchronously.
        deadline = time.monotonic() + TIMEOUT
        while not self.world.cluster.psql(
                "SELECT 1 FROM roster_items r JOIN accounts a ON a.id = r.account_id WHERE "
                "a.username = '%s' AND r.jid = '%s' AND r.pending_in" % (aj.split('@')[0], cj),
                db=self.server.db).strip():
            self.assertLess(time.monotonic(), deadline, 'the request was not stored')
            await asyncio.sleep(0.05)
        await b.c.close()
        await c.c.close()
        self.server.stop()
        self.server.start()
        b = await self.login(bj, status='after the restart')
        a = await self.login(aj)
        got = await a.c.wait_for(lambda e: is_pres(e, b.full), what="b's presence (probe)")
        self.assertEqual(child_text(got, 'status'), 'after the restart')
        await b.c.wait_for(lambda e: is_pres(e, a.full), what="a's initial presence")
        req = await a.c.wait_for(lambda e: is_pres(e, cj, 'subscribe'), what="c's request")
        self.assertEqual(req.get('from'), cj)
        # Complete (RFC 6121 §3.1.3), rebuilt from the database.
        self.assertEqual(child_text(req, 'status'), 'let me see')
        self.assertEqual(child_text(req, 'nick', 'http://jabber.org/protocol/nick'), 'Cee')
        y = req.find('{urn:example:ext}x/{urn:example:ext}y')
        self.assertIsNotNone(y, to_str(req))
        self.assertEqual((y.get('z'), y.get('{http://www.w3.org/XML/1998/namespace}lang'),
                          y.text), ('1', 'en', 'a & b'))
        r = await a.c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
        items = {i.get('jid'): i.get('subscription') for i in r.iter('{%s}item' % NS_ROSTER)}
        self.assertEqual(items, {bj: 'both'})


class AccountDeletion(PresenceCase):

    @async_test(timeout=120)
    async def test_deluser_cleans_rows_and_contacts(self):
        """Deleting an account with stanzactl removes its roster and blocklist rows (ON DELETE
        CASCADE) and, for the local contacts that had it in their roster, cancels the
        subscriptions as if it had sent unsubscribe and unsubscribed (Appendix A.3.2, A.3.4):
        their items stay with subscription 'none', pushed; they see it go offline."""
        aj, tj = self.new_account('a'), self.new_account('temp')
        a = await self.login(aj)
        t = await self.login(tj)
        await self.mutual(a, t)
        await t.c.iq('set', "<block xmlns='urn:xmpp:blocking'><item jid='x@example.org'/>"
                     "</block>")
        await t.c.iq('set', "<query xmlns='%s'><item jid='other@example.org' name='O'/></query>"
                     % NS_ROSTER)
        db = self.server.db
        psql = self.world.cluster.psql
        tid = psql("SELECT id FROM accounts WHERE username = '%s'" % tj.split('@')[0],
                   db=db).strip()
        self.assertTrue(tid)
        rows = int(psql('SELECT (SELECT count(*) FROM roster_items WHERE account_id = %s) + '
                        '(SELECT count(*) FROM roster_blocked WHERE account_id = %s) + '
                        '(SELECT count(*) FROM roster_version WHERE account_id = %s)'
                        % (tid, tid, tid), db=db))
        self.assertGreaterEqual(rows, 4)
        r = self.server.ctl('deluser', tj)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for stype in ('unsubscribe', 'unsubscribed'):
            got = await a.c.wait_for(lambda e: is_pres(e, tj, stype), what=stype)
            self.assertEqual(got.get('from'), tj)
        await a.c.wait_for(lambda e: is_pres(e, t.full, 'unavailable'),
                           what='the deleted account goes offline')

        def none_push(e):
            if not is_push(e, tj):
                return False
            it = e.find('{%s}query/{%s}item' % (NS_ROSTER, NS_ROSTER))
            return it.get('subscription') == 'none' and it.get('ask') is None
        await a.c.wait_for(none_push, what="the push of the deleted contact's item")
        r = await a.c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
        items = {i.get('jid'): i.get('subscription')
                 for i in r.iter('{%s}item' % NS_ROSTER)}
        self.assertEqual(items, {tj: 'none'})
        rows = int(psql('SELECT (SELECT count(*) FROM roster_items WHERE account_id = %s) + '
                        '(SELECT count(*) FROM roster_blocked WHERE account_id = %s) + '
                        '(SELECT count(*) FROM roster_version WHERE account_id = %s)'
                        % (tid, tid, tid), db=db))
        self.assertEqual(rows, 0)
        # The contact's row for it, in the database too.
        deadline = time.monotonic() + TIMEOUT
        while True:
            sub = psql("SELECT r.sub FROM roster_items r JOIN accounts a ON a.id = r.account_id "
                       "WHERE a.username = '%s' AND r.jid = '%s'" % (aj.split('@')[0], tj),
                       db=db).strip()
            if sub == '0' or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(sub, '0')
        # A new account of the same name starts empty (its old version does not match).
        self.server.add_user(tj, PW)
        t2 = await self.login(tj, 'again')
        r = await t2.c.iq('get', "<query xmlns='%s' ver='x'/>" % NS_ROSTER)
        self.assertEqual([i for i in r.iter('{%s}item' % NS_ROSTER)], [])
        r = await t2.c.iq('get', "<blocklist xmlns='urn:xmpp:blocking'/>")
        self.assertEqual(len(r[0]), 0, to_str(r))


if __name__ == '__main__':
    main()
