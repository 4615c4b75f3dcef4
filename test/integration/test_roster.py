#!/usr/bin/python3
"""mod_roster, the roster itself (RFC 6121 §2): get, set with names and groups, removal, pushes
to interested resources only, roster versioning (§2.6, XEP-0237) with the changes sent as
pushes, the limits and bad items of §2.3.3 with their exact errors, a 200-contact roster, and
the roster surviving the account's state being dropped from memory. Blocking (XEP-0191) is in
test_blocking.py; subscriptions in test_subscriptions.py; presence in test_presence.py."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SLOW, ServerTestCase, async_test, main, new_id, stanza_error,  # noqa: E402
                     tag_is, to_str, x, attr)

NS_ROSTER = 'jabber:iq:roster'
NS_ROSTERVER = 'urn:xmpp:features:rosterver'
NS_PREAPPROVAL = 'urn:xmpp:features:pre-approval'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


def with_roster(settings=None, modules=('roster',)):
    cfg = {'modules': list(modules)}
    if settings:
        cfg['module_settings'] = {'roster': settings}
    return cfg


def query_of(el):
    return el.find('{%s}query' % NS_ROSTER)


def items_of(el):
    """{jid: (name, subscription, ask, [groups])} of a roster result or push."""
    q = query_of(el)
    out = {}
    if q is None:
        return out
    for it in q.findall('{%s}item' % NS_ROSTER):
        out[it.get('jid')] = (it.get('name'), it.get('subscription'), it.get('ask'),
                              [g.text or '' for g in it.findall('{%s}group' % NS_ROSTER)])
    return out


def is_push(el):
    return (tag_is(el, 'iq') and el.get('type') == 'set' and query_of(el) is not None)


def item_xml(jid, name=None, groups=(), subscription=None):
    a = ' jid=%s' % attr(jid)
    if name is not None:
        a += ' name=%s' % attr(name)
    if subscription is not None:
        a += ' subscription=%s' % attr(subscription)
    return '<item%s>%s</item>' % (a, ''.join('<group>%s</group>' % x(g) for g in groups))


class RosterCase(ServerTestCase):
    """Helpers over RawClient."""

    async def get(self, c, ver=None):
        v = '' if ver is None else ' ver=%s' % attr(ver)
        return await c.iq('get', "<query xmlns='%s'%s/>" % (NS_ROSTER, v))

    async def set(self, c, jid, name=None, groups=(), subscription=None, raw=None):
        payload = raw if raw is not None else item_xml(jid, name, groups, subscription)
        return await c.iq('set', "<query xmlns='%s'>%s</query>" % (NS_ROSTER, payload))

    async def push(self, c, jid=None, timeout=None):
        """The next roster push (for jid, if given); answers it as a client must."""
        def pred(el):
            return is_push(el) and (jid is None or jid in items_of(el))
        el = await c.wait_for(pred, timeout, 'a roster push for %s' % jid)
        await c.send("<iq type='result' id=%s/>" % attr(el.get('id')))
        return el

    def assert_error(self, reply, condition, etype=None):
        self.assertEqual(reply.get('type'), 'error', to_str(reply))
        etype_got, cond_got = stanza_error(reply)
        self.assertEqual(cond_got, condition, to_str(reply))
        if etype is not None:
            self.assertEqual(etype_got, etype, to_str(reply))


class Roster(RosterCase):
    config = with_roster({'max_name_length': 20, 'max_group_length': 10, 'max_groups': 3,
                          'max_items': 250})
    users = {'%s@localhost' % u: '%s pw' % u for u in
             ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivan', 'judy')}

    @async_test
    async def test_features_and_empty_roster(self):
        c = await self.raw_login('alice@localhost', resource='r1')
        # RFC 6121 §2.6.1, §3.4: both advertised after authentication.
        self.assertIsNotNone(c.features.find('{%s}ver' % NS_ROSTERVER), to_str(c.features))
        self.assertIsNotNone(c.features.find('{%s}sub' % NS_PREAPPROVAL), to_str(c.features))
        await c.send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>")
        r = await c.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == 'g1')
        # From the bare JID, to the full JID, an empty query without 'ver' (none was asked).
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(r.get('from'), 'alice@localhost')
        self.assertEqual(r.get('to'), 'alice@localhost/r1')
        q = query_of(r)
        self.assertIsNotNone(q)
        self.assertEqual(len(q), 0)
        self.assertIsNone(q.get('ver'))

    @async_test
    async def test_add_update_remove(self):
        c = await self.raw_login('bob@localhost', resource='r1')
        await self.get(c)
        r = await self.set(c, 'friend@example.org', 'Friend', ['Work', 'Pals'])
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(r.get('from'), 'bob@localhost')
        p = await self.push(c, 'friend@example.org')
        self.assertEqual(p.get('from'), 'bob@localhost')
        self.assertEqual(p.get('to'), 'bob@localhost/r1')
        self.assertEqual(items_of(p)['friend@example.org'],
                         ('Friend', 'none', None, ['Work', 'Pals']))
        g = await self.get(c)
        self.assertEqual(items_of(g), {'friend@example.org': ('Friend', 'none', None,
                                                              ['Work', 'Pals'])})
        # Update: new name, one group less; 'subscription' and 'ask' in a set are ignored.
        r = await self.set(c, 'friend@example.org', raw="<item jid='friend@example.org' "
                           "name='Old friend' subscription='both' ask='subscribe'>"
                           "<group>Pals</group></item>")
        self.assertEqual(r.get('type'), 'result', to_str(r))
        p = await self.push(c, 'friend@example.org')
        self.assertEqual(items_of(p)['friend@example.org'],
                         ('Old friend', 'none', None, ['Pals']))
        # JIDs are prepared: another spelling is the same item.
        r = await self.set(c, 'Friend@EXAMPLE.org', 'Again')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        p = await self.push(c, 'friend@example.org')
        self.assertEqual(items_of(p)['friend@example.org'], ('Again', 'none', None, []))
        # Removal: a push with subscription='remove', and gone from the roster.
        r = await self.set(c, 'friend@example.org', subscription='remove')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        p = await self.push(c, 'friend@example.org')
        it = query_of(p).find('{%s}item' % NS_ROSTER)
        self.assertEqual(dict(it.attrib), {'jid': 'friend@example.org',
                                           'subscription': 'remove'})
        g = await self.get(c)
        self.assertEqual(items_of(g), {})
        # §2.5.3: removing what is not there.
        r = await self.set(c, 'friend@example.org', subscription='remove')
        self.assert_error(r, 'item-not-found')

    @async_test
    async def test_pushes_to_interested_resources_only(self):
        r1 = await self.raw_login('carol@localhost', resource='r1')
        r2 = await self.raw_login('carol@localhost', resource='r2')
        r3 = await self.raw_login('carol@localhost', resource='r3')   # never asks for the roster
        await self.get(r1)
        await self.get(r2)
        r = await self.set(r1, 'pal@example.org', 'Pal', ['G'])
        self.assertEqual(r.get('type'), 'result', to_str(r))
        for c in (r1, r2):
            p = await self.push(c, 'pal@example.org')
            self.assertEqual(p.get('to'), c.jid)
            self.assertEqual(items_of(p)['pal@example.org'], ('Pal', 'none', None, ['G']))
        # r3 gets nothing; and once it asks, it gets the next push as well.
        got = await r3.collect(0.5 * SLOW)
        self.assertEqual([to_str(e) for e in got if is_push(e)], [])
        g = await self.get(r3)
        self.assertIn('pal@example.org', items_of(g))
        await self.set(r2, 'pal@example.org', subscription='remove')
        for c in (r1, r2, r3):
            p = await self.push(c, 'pal@example.org')
            self.assertEqual(items_of(p)['pal@example.org'][1], 'remove')

    @async_test
    async def test_versioning(self):
        c = await self.raw_login('dave@localhost', resource='r1')
        g = await self.get(c, ver='')
        v0 = query_of(g).get('ver')
        self.assertTrue(v0, to_str(g))
        self.assertEqual(items_of(g), {})
        # Unchanged: an empty result, no query (§2.6.3).
        g = await self.get(c, ver=v0)
        self.assertEqual(g.get('type'), 'result')
        self.assertEqual(len(g), 0, to_str(g))
        await self.set(c, 'a@example.org', 'A')
        pa = await self.push(c, 'a@example.org')
        await self.set(c, 'b@example.org', 'B', ['G'])
        pb = await self.push(c, 'b@example.org')
        va, vb = query_of(pa).get('ver'), query_of(pb).get('ver')
        self.assertTrue(va and vb and len({v0, va, vb}) == 3, (v0, va, vb))
        # A client at v0 gets an empty result, then both changes as pushes, in order.
        later = await self.raw_login('dave@localhost', resource='r2')
        g = await self.get(later, ver=v0)
        self.assertEqual(g.get('type'), 'result')
        self.assertEqual(len(g), 0, to_str(g))
        p1 = await self.push(later)
        p2 = await self.push(later)
        self.assertEqual(list(items_of(p1)), ['a@example.org'])
        self.assertEqual(list(items_of(p2)), ['b@example.org'])
        self.assertEqual(query_of(p2).get('ver'), vb)
        # The empty result came before the pushes on the wire.
        order = [e for e in later.history if tag_is(e, 'iq')]
        self.assertIs(order[-3], g)
        # A removal is pushed as such to a client that was before it.
        await self.set(c, 'a@example.org', subscription='remove')
        prem = await self.push(c, 'a@example.org')
        vr = query_of(prem).get('ver')
        third = await self.raw_login('dave@localhost', resource='r3')
        g = await self.get(third, ver=vb)
        self.assertEqual(len(g), 0, to_str(g))
        p = await self.push(third)
        self.assertEqual(items_of(p), {'a@example.org': (None, 'remove', None, [])})
        self.assertEqual(query_of(p).get('ver'), vr)
        # Nothing else came.
        extra = await third.collect(0.3 * SLOW)
        self.assertEqual([to_str(e) for e in extra if is_push(e)], [])
        # An unknown version: the whole roster, with the current version.
        for bogus in ('nonsense', '0-1', v0.split('-')[0] + '-999'):
            g = await self.get(third, ver=bogus)
            self.assertEqual(query_of(g).get('ver'), vr, to_str(g))
            self.assertEqual(items_of(g), {'b@example.org': ('B', 'none', None, ['G'])})
        # Without 'ver': the roster without a version.
        g = await self.get(third)
        self.assertIsNone(query_of(g).get('ver'))

    @async_test
    async def test_bad_items(self):
        c = await self.raw_login('erin@localhost', resource='r1')
        cases = [
            # (item payload, condition, type) — RFC 6121 §2.3.3 unless noted
            (item_xml('a@example.org') + item_xml('b@example.org'), 'bad-request', 'modify'),
            ('', 'bad-request', 'modify'),
            ("<item name='no jid'/>", 'bad-request', 'modify'),
            (item_xml('a@example.org', groups=['G', 'G']), 'bad-request', 'modify'),
            (item_xml('a@example.org', groups=['']), 'not-acceptable', 'modify'),
            (item_xml('a@example.org', name='n' * 21), 'not-acceptable', 'modify'),
            (item_xml('a@example.org', groups=['g' * 11]), 'not-acceptable', 'modify'),
            (item_xml('a@example.org', groups=['1', '2', '3', '4']), 'not-acceptable', 'modify'),
            # RFC 6120 §8.3.3.8: not a JID
            (item_xml('a@@example.org'), 'jid-malformed', 'modify'),
            (item_xml('@example.org'), 'jid-malformed', 'modify'),
            # the account itself
            (item_xml('erin@localhost'), 'not-acceptable', 'modify'),
        ]
        for payload, cond, etype in cases:
            r = await self.set(c, None, raw=payload)
            self.assert_error(r, cond, etype)
        # Limits are in characters, not bytes: 20 two-byte characters fit.
        r = await self.set(c, 'a@example.org', name='é' * 20, groups=['ü' * 10])
        self.assertEqual(r.get('type'), 'result', to_str(r))
        # Nothing of the refused sets was kept.
        g = await self.get(c)
        self.assertEqual(list(items_of(g)), ['a@example.org'])
        # The exact error, as sent (the payload comes back with it).
        await c.send("<iq type='set' id='dup'><query xmlns='jabber:iq:roster'>"
                     "<item jid='x@example.org'/><item jid='y@example.org'/></query></iq>")
        r = await c.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == 'dup')
        err = r.find('{jabber:client}error')
        self.assertEqual([ch.tag for ch in err][0], '{%s}bad-request' % NS_STANZAS)
        self.assertEqual(r.get('from'), 'erin@localhost')
        self.assertEqual(r.get('to'), c.jid)

    @async_test
    async def test_other_accounts_roster_is_forbidden(self):
        c = await self.raw_login('frank@localhost', resource='r1')
        for typ, payload in (('get', "<query xmlns='jabber:iq:roster'/>"),
                             ('set', "<query xmlns='jabber:iq:roster'>%s</query>"
                              % item_xml('z@example.org'))):
            r = await c.iq(typ, payload, to='gina@localhost')
            self.assert_error(r, 'forbidden', 'auth')
        # To one's own bare JID it is the same as no 'to'.
        r = await c.iq('get', "<query xmlns='jabber:iq:roster'/>", to='frank@localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))

    @async_test(timeout=120)
    async def test_200_contacts(self):
        c = await self.raw_login('hank@localhost', resource='r1')
        jids = ['contact%03d@example.org' % i for i in range(200)]
        t0 = time.monotonic()
        ids = []
        for i, j in enumerate(jids):
            iid = 'add%d' % i
            ids.append(iid)
            await c.send("<iq type='set' id='%s'><query xmlns='jabber:iq:roster'>%s</query></iq>"
                         % (iid, item_xml(j, 'Contact %d' % i, ['Group %d' % (i % 7)])))
        for iid in ids:
            r = await c.wait_for(lambda e, iid=iid: tag_is(e, 'iq') and e.get('id') == iid,
                                 what='the result of %s' % iid)
            self.assertEqual(r.get('type'), 'result', to_str(r))
        t1 = time.monotonic()
        other = await self.raw_login('hank@localhost', resource='r2')
        g = await self.get(other, ver='')
        t2 = time.monotonic()
        items = items_of(g)
        self.assertEqual(sorted(items), jids)
        self.assertEqual(items['contact123@example.org'], ('Contact 123', 'none', None,
                                                           ['Group 4']))
        sys.stderr.write('\n200 roster sets in %.2f s; 200-item roster fetched in %.3f s\n'
                         % (t1 - t0, t2 - t1))
        # The version moved 200 times: a client that was at the start gets 200 pushes.
        self.assertTrue(query_of(g).get('ver').endswith('-200'), query_of(g).get('ver'))

    @async_test
    async def test_slixmpp_roster(self):
        a = await self.client('ivan@localhost', resource='s1')
        b = await self.client('ivan@localhost', resource='s2')
        await a.get_roster()
        await b.get_roster()
        a.update_roster('mate@example.org', name='Mate', groups=['Team'])
        deadline = time.monotonic() + 10 * SLOW
        while 'mate@example.org' not in b.client_roster and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.assertIn('mate@example.org', b.client_roster)
        self.assertEqual(b.client_roster['mate@example.org']['name'], 'Mate')
        self.assertEqual(b.client_roster['mate@example.org']['groups'], ['Team'])


class RosterLimit(RosterCase):
    config = with_roster({'max_items': 3})
    users = {'limited@localhost': 'pw'}

    @async_test
    async def test_roster_full(self):
        c = await self.raw_login('limited@localhost', resource='r')
        for i in range(3):
            r = await self.set(c, 'c%d@example.org' % i)
            self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.set(c, 'c3@example.org')
        self.assert_error(r, 'policy-violation')
        # Updating an item already there is still fine; after a removal there is room.
        r = await self.set(c, 'c0@example.org', 'Zero')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.set(c, 'c1@example.org', subscription='remove')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.set(c, 'c3@example.org')
        self.assertEqual(r.get('type'), 'result', to_str(r))


class PendingLimit(RosterCase):
    config = with_roster({'max_pending': 2})
    users = {'star@localhost': 'pw', 'fan1@localhost': 'pw', 'fan2@localhost': 'pw',
             'fan3@localhost': 'pw'}

    @async_test
    async def test_requests_beyond_max_pending_are_refused_not_dropped_quietly(self):
        start = self.server.log_offset()
        for i in (1, 2, 3):
            fan = await self.raw_login('fan%d@localhost' % i, resource='r')
            await self.get(fan)
            await fan.send("<presence to='star@localhost' type='subscribe'/>")
            # the fan's own side is pending out either way
            el = await self.push(fan, 'star@localhost')
            self.assertEqual(items_of(el)['star@localhost'][2], 'subscribe', to_str(el))
        deadline = time.monotonic() + 10 * SLOW
        while 'refusing one from fan3@localhost' not in self.server.log_text(start):
            self.assertLess(time.monotonic(), deadline, self.server.log_text(start)[-3000:])
            await asyncio.sleep(0.05)
        self.assertNotIn('from fan1@localhost with', self.server.log_text(start))
        # The star sees the two requests that were kept, not the third.
        star = await self.raw_login('star@localhost', resource='r')
        await self.get(star)
        await star.send('<presence/>')
        got = set()
        for _ in range(2):
            el = await star.wait_for(lambda e: tag_is(e, 'presence') and
                                     e.get('type') == 'subscribe')
            got.add(el.get('from'))
        self.assertEqual(got, {'fan1@localhost', 'fan2@localhost'})
        late = [e for e in await star.collect(0.3 * SLOW)
                if tag_is(e, 'presence') and e.get('type') == 'subscribe']
        self.assertEqual(late, [])


class RosterReload(RosterCase):
    """The account's state leaves memory at once when its last session ends (unload_after 0):
    everything must come back from the database, versions included."""
    config = with_roster({'unload_after': 0})
    users = {'paula@localhost': 'pw'}

    @async_test
    async def test_roster_comes_back_from_the_database(self):
        c = await self.raw_login('paula@localhost', resource='r')
        g = await self.get(c, ver='')
        await self.set(c, 'k1@example.org', 'K1', ['A', 'B'])
        await self.set(c, 'k2@example.org', 'K2')
        await self.set(c, 'k3@example.org', 'K3')
        await self.set(c, 'k2@example.org', subscription='remove')
        g = await self.get(c, ver='')
        ver = query_of(g).get('ver')
        await c.close()
        for _ in range(2):
            c = await self.raw_login('paula@localhost', resource='r')
            g = await self.get(c, ver=ver)
            self.assertEqual(len(g), 0, to_str(g))   # same version after reload
            g = await self.get(c)
            self.assertEqual(items_of(g), {'k1@example.org': ('K1', 'none', None, ['A', 'B']),
                                           'k3@example.org': ('K3', 'none', None, [])})
            await c.close()
        # The tombstone survived too: a client from before the removal hears of it.
        c = await self.raw_login('paula@localhost', resource='r')
        g = await self.get(c, ver=ver.rsplit('-', 1)[0] + '-2')
        self.assertEqual(len(g), 0, to_str(g))
        pushes = [await self.push(c), await self.push(c)]
        self.assertEqual([list(items_of(p).items())[0][0] for p in pushes],
                         ['k3@example.org', 'k2@example.org'])
        self.assertEqual(items_of(pushes[1])['k2@example.org'][1], 'remove')


if __name__ == '__main__':
    main()
