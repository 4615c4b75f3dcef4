#!/usr/bin/python3
"""An account's whole life with every module of issue 5 and 6 loaded: registered in-band
(XEP-0077), profile from the registration form (vCard), found in the directory (XEP-0055), a
contact with a mutual subscription and a blocked JID (roster, XEP-0191) — then cancelled in-band
(XEP-0077 §3.2): every row any module kept is gone in the same transaction (accounts(id)
ON DELETE CASCADE), the contact is told (unsubscribe, unsubscribed, unavailable, a push to
'none'), the directory and the vCard service no longer know the account, and a new
registration of the same name starts empty."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, stanza_error, tag_is,  # noqa: E402
                     to_str, x)

NS_REG = 'jabber:iq:register'
NS_DATA = 'jabber:x:data'
NS_ROSTER = 'jabber:iq:roster'
NS_VCARD = 'vcard-temp'
NS_SEARCH = 'jabber:iq:search'
NS_BLOCK = 'urn:xmpp:blocking'
BOB = 'bob@localhost'
PW = 'Kiwi pass 42'

# Every table a module of this tree keys by accounts(id), and the core's own.
ACCOUNT_TABLES = ('credentials', 'kv', 'roster_items', 'roster_version', 'roster_blocked',
                  'vcard_cards', 'vcard_search', 'vcard_extra')


def reg_form(fields):
    out = ["<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s</value></field>" % (NS_DATA, NS_REG)]
    for var, value in fields.items():
        out.append("<field var='%s'><value>%s</value></field>" % (var, x(value)))
    return "<query xmlns='%s'>%s</x></query>" % (NS_REG, ''.join(out))


class Lifecycle(ServerTestCase):
    users = {BOB: 'bob pw'}
    config = {
        'modules': ['disco', 'roster', 'register', 'vcard', 'search'],
        'module_settings': {
            'register': {'max_per_address': 0, 'min_interval': 0, 'fields': ['nick=Nickname']},
        },
    }

    def sql(self, q):
        return self.world.cluster.psql(q, db=self.server.db).strip()

    def rows_of(self, account_id):
        return {t: int(self.sql('SELECT count(*) FROM %s WHERE account_id = %s'
                                % (t, account_id))) for t in ACCOUNT_TABLES}

    async def register(self, user, nick):
        c = self.raw()
        await c.connect()
        await c.open_stream()
        await c.starttls()
        await c.open_stream()
        r = await c.iq('set', reg_form({'username': user, 'password': PW, 'nick': nick,
                                        'email': user + '@mail.example'}))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        await c.close()

    async def search_nick(self, c, nick):
        r = await c.iq('set', "<query xmlns='%s'><nick>%s</nick></query>" % (NS_SEARCH, nick),
                       to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        return [i.get('jid') for i in r.iter('{%s}item' % NS_SEARCH)]

    @async_test(timeout=120)
    async def test_register_live_and_cancel(self):
        await self.register('lena', 'lenny')
        acc = self.sql("SELECT id FROM accounts WHERE username = 'lena'")
        lena = await self.raw_login('lena@localhost', PW, resource='phone')
        bob = await self.raw_login(BOB, resource='desk')
        for c in (lena, bob):
            r = await c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
            self.assertEqual(r.get('type'), 'result', to_str(r))
            await c.send('<presence/>')

        # The profile came from the registration form; bob finds her by nickname.
        r = await bob.iq('get', "<vCard xmlns='%s'/>" % NS_VCARD, to='lena@localhost')
        self.assertEqual(r.findtext('{%s}vCard/{%s}NICKNAME' % (NS_VCARD, NS_VCARD)), 'lenny',
                         to_str(r))
        self.assertEqual(await self.search_nick(bob, 'lenny'), ['lena@localhost'])

        # A mutual subscription (RFC 6121 §3), then a blocked JID and a private vCard change.
        await lena.send("<presence to='%s' type='subscribe'/>" % BOB)
        await bob.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == 'subscribe')
        await bob.send("<presence to='lena@localhost' type='subscribed'/>")
        await bob.send("<presence to='lena@localhost' type='subscribe'/>")
        await lena.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == 'subscribe')
        await lena.send("<presence to='%s' type='subscribed'/>" % BOB)
        await bob.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') is None
                           and (e.get('from') or '').startswith('lena@localhost/'),
                           what="lena's presence once subscribed")
        r = await lena.iq('set', "<block xmlns='%s'><item jid='spam@example.org'/></block>"
                          % NS_BLOCK)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await lena.iq('set', "<vCard xmlns='%s'><FN>Lena L</FN><NICKNAME>lenny</NICKNAME>"
                          "</vCard>" % NS_VCARD)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        before = self.rows_of(acc)
        for t in ('credentials', 'roster_items', 'roster_blocked', 'vcard_cards',
                  'vcard_search'):
            self.assertGreater(before[t], 0, (t, before))

        # Cancellation: the result, then the stream ends; every row goes.
        await lena.send("<iq type='set' id='bye'><query xmlns='%s'><remove/></query></iq>"
                        % NS_REG)
        await lena.expect_stream_error('not-authorized')
        self.assertTrue(any(tag_is(e, 'iq') and e.get('id') == 'bye' and
                            e.get('type') == 'result' for e in lena.history))
        self.assertEqual(self.sql("SELECT count(*) FROM accounts WHERE id = %s" % acc), '0')
        self.assertEqual(self.rows_of(acc), {t: 0 for t in ACCOUNT_TABLES})

        # Bob is told, and his item stays with subscription 'none'.
        for stype in ('unsubscribe', 'unsubscribed', 'unavailable'):
            got = await bob.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == stype,
                                     what=stype)
            self.assertTrue(got.get('from').startswith('lena@localhost'), to_str(got))
        r = await bob.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
        items = {i.get('jid'): i.get('subscription') for i in r.iter('{%s}item' % NS_ROSTER)}
        self.assertEqual(items, {'lena@localhost': 'none'})

        # Nobody knows her any more.
        self.assertEqual(await self.search_nick(bob, 'lenny'), [])
        r = await bob.iq('get', "<vCard xmlns='%s'/>" % NS_VCARD, to='lena@localhost')
        self.assertEqual(stanza_error(r)[1], 'service-unavailable', to_str(r))

        # A new registration of the name starts empty: no roster, no blocklist, the new profile.
        await self.register('lena', 'lena2')
        again = await self.raw_login('lena@localhost', PW, resource='new')
        r = await again.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
        self.assertEqual(list(r.iter('{%s}item' % NS_ROSTER)), [], to_str(r))
        r = await again.iq('get', "<blocklist xmlns='%s'/>" % NS_BLOCK)
        self.assertEqual(list(r.iter('{%s}item' % NS_BLOCK)), [], to_str(r))
        r = await again.iq('get', "<vCard xmlns='%s'/>" % NS_VCARD)
        self.assertEqual(r.findtext('{%s}vCard/{%s}NICKNAME' % (NS_VCARD, NS_VCARD)), 'lena2',
                         to_str(r))
        self.assertIsNone(r.find('{%s}vCard/{%s}FN' % (NS_VCARD, NS_VCARD)), to_str(r))


if __name__ == '__main__':
    main()
