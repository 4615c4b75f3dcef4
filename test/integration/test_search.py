#!/usr/bin/python3
"""mod_search: user directory search (XEP-0055) with paging (XEP-0059), over the vCards that
accounts store through mod_vcard.

Accounts set their vCards over XMPP; searches by each legacy field (first, last, nick, email)
and by the data form (full name too), case-insensitively, substring for three characters or
more and prefix below; whole e-mail addresses only; paging forwards, backwards, by index, the
last page, the count alone, the page size cap; accounts that opted out never appear, the
per-host default applies to the others; an empty query is refused; another host's directory is
closed; a changed vCard is found by its new fields. The 100,000-account timing is not a test:
contrib/bench/search-timing."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, RawClient, ServerTestCase, async_test, attr, main, stanza_error,  # noqa: E402
                     to_str, world, x)

NS_SEARCH = 'jabber:iq:search'
NS_DATA = 'jabber:x:data'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_VIS = 'urn:stanzad:search:visibility'
VAR_FN = '{urn:stanzad:search}fullname'

PW = 'search pw'
# username -> (FN, given, family, nick, email); None: no vCard.
PEOPLE = {
    'alice': ('Alice Liddell', 'Alice', 'Liddell', 'ally', 'alice@wonder.land'),
    'alicia': ('Alicia Keys', 'Alicia', 'Keys', 'keys', 'alicia@music.example'),
    'natalia': ('Natalia Romanova', 'Natalia', 'Romanova', 'widow', 'nat@shield.example'),
    'bob': ('Bob Builder', 'Bob', 'Builder', 'fixit', 'bob@build.example'),
    'hidden': ('Alice Hidden', 'Alice', 'Hidden', 'hideout', 'hidden@wonder.land'),
    'searcher': None,
}
for i in range(1, 8):
    PEOPLE['tester%d' % i] = ('T%d Tester' % i, 'T%d' % i, 'Tester', 'tt%d' % i,
                              'tester%d@test.example' % i)
OTHER_HOST = {  # example.test: findable_default = false, email_match = substring there
    'dave': ('Dave Default', 'Dave', 'Default', 'dd', 'dave@example.org'),
    'erin': ('Erin Default', 'Erin', 'Default', 'ed', 'erin@example.org'),
}


def vcard_xml(fn, given, family, nick, email):
    return ("<vCard xmlns='vcard-temp'><FN>%s</FN><N><FAMILY>%s</FAMILY><GIVEN>%s</GIVEN></N>"
            "<NICKNAME>%s</NICKNAME><EMAIL><INTERNET/><PREF/><USERID>%s</USERID></EMAIL>"
            "</vCard>" % (x(fn), x(family), x(given), x(nick), x(email)))


def legacy(**fields):
    return ''.join('<%s>%s</%s>' % (k, x(v), k) for k, v in fields.items())


def form(fields, form_type=NS_SEARCH):
    out = ["<x xmlns='%s' type='submit'>" % NS_DATA]
    if form_type:
        out.append("<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % form_type)
    out += ['<field var=%s><value>%s</value></field>' % (attr(k), x(v)) for k, v in fields.items()]
    out.append('</x>')
    return ''.join(out)


def rsm(**kw):
    out = ["<set xmlns='%s'>" % NS_RSM]
    for k, v in kw.items():
        out.append('<%s/>' % k if v is None else '<%s>%s</%s>' % (k, x(str(v)), k))
    out.append('</set>')
    return ''.join(out)


def items_of(r):
    """JIDs of a legacy result, in order."""
    q = r.find('{%s}query' % NS_SEARCH)
    return [i.get('jid') for i in q.findall('{%s}item' % NS_SEARCH)]


def set_of(r):
    """(first, first index, last, count) of the result's RSM <set/>, or None."""
    s = r.find('{%s}query/{%s}set' % (NS_SEARCH, NS_RSM))
    if s is None:
        return None
    first = s.find('{%s}first' % NS_RSM)
    count = s.findtext('{%s}count' % NS_RSM)
    return (None if first is None else first.text,
            None if first is None else int(first.get('index')),
            s.findtext('{%s}last' % NS_RSM), None if count is None else int(count))


def error_of(el):
    err = stanza_error(el)
    return err[1] if err else None


def testers(*ns):
    return ['tester%d@localhost' % n for n in ns]


class Search(ServerTestCase):
    users = {}

    @classmethod
    def setUpClass(cls):
        w = world()
        hosts = []
        for h in w.HOSTS:
            entry = {'name': h, 'certificate': w.certs[h][0], 'key': w.certs[h][1]}
            if h == 'example.test':
                entry['module_settings'] = {'search': {'findable_default': False,
                                                       'email_match': 'substring'}}
            hosts.append(entry)
        cls.config = {'modules': ['disco', 'vcard', 'search'], 'hosts': hosts,
                      'module_settings': {'search': {'max_results': 5}}}
        super().setUpClass()
        try:
            asyncio.run(cls.populate())
        except BaseException:
            w.failed = True
            cls.server.kill()
            raise

    @classmethod
    async def populate(cls):
        everyone = [(u, 'localhost', v) for u, v in PEOPLE.items()]
        everyone += [(u, 'example.test', v) for u, v in OTHER_HOST.items()]
        for user, host, card in everyone:
            cls.server.add_user('%s@%s' % (user, host), PW)
        for user, host, card in everyone:
            c = RawClient(cls.server.starttls_port, host=host, name=user)
            await c.login(user, PW, 'setup')
            if card is not None:
                r = await c.iq('set', vcard_xml(*card))
                assert r.get('type') == 'result', to_str(r)
            if user == 'hidden':
                r = await c.iq('set', "<visibility xmlns='%s' findable='false'/>" % NS_VIS,
                               to='localhost')
                assert r.get('type') == 'result', to_str(r)
            if user == 'erin':
                r = await c.iq('set', "<visibility xmlns='%s' findable='true'/>" % NS_VIS)
                assert r.get('type') == 'result', to_str(r)
            await c.close()

    async def searcher(self, user='searcher', host='localhost'):
        return await self.raw_login('%s@%s' % (user, host), PW, resource='s')

    async def search(self, c, inner, to='localhost'):
        return await c.iq('set', "<query xmlns='%s'>%s</query>" % (NS_SEARCH, inner), to=to)

    async def found(self, c, **fields):
        r = await self.search(c, legacy(**fields))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        return items_of(r)

    @async_test
    async def test_fields_and_form(self):
        c = await self.searcher()
        r = await c.iq('get', "<query xmlns='%s'/>" % NS_SEARCH, to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        q = r.find('{%s}query' % NS_SEARCH)
        self.assertTrue(q.findtext('{%s}instructions' % NS_SEARCH))
        for f in ('first', 'last', 'nick', 'email'):
            self.assertIsNotNone(q.find('{%s}%s' % (NS_SEARCH, f)), f)
        xf = q.find('{%s}x' % NS_DATA)
        self.assertEqual(xf.get('type'), 'form')
        fields = {f.get('var'): f for f in xf.findall('{%s}field' % NS_DATA)}
        self.assertEqual(fields['FORM_TYPE'].get('type'), 'hidden')
        self.assertEqual(fields['FORM_TYPE'].findtext('{%s}value' % NS_DATA), NS_SEARCH)
        self.assertEqual(sorted(fields), sorted(['FORM_TYPE', VAR_FN, 'first', 'last', 'nick',
                                                 'email']))

    @async_test
    async def test_slixmpp_form_search(self):
        """A real client (slixmpp's xep_0055 with xep_0004 forms): asks for the form, fills in
        the nickname, reads the result form (reported fields and items)."""
        c = self.track(Client('searcher@localhost/slix', PW))
        for plugin in ('xep_0004', 'xep_0055'):
            c.register_plugin(plugin)
        await c.login(self.server.starttls_port)
        iq = c.make_iq_get(ito='localhost')
        iq.enable('search')
        reply = await iq.send()
        got = reply['search']['form']
        self.assertIn('nick', got.get_fields())
        # slixmpp reads a hidden field as a list of values
        self.assertEqual(got.get_fields()['FORM_TYPE'].get_value(), [NS_SEARCH])
        iq = c.make_iq_set(ito='localhost')
        sub = c['xep_0004'].make_form('submit')
        sub.add_field(var='FORM_TYPE', ftype='hidden', value=NS_SEARCH)
        sub.add_field(var='nick', value='ALLY')
        iq['search'].append(sub)
        reply = await iq.send()
        result = reply['search']['form']
        self.assertEqual(result['type'], 'result')
        self.assertIn('jid', result.get_reported())
        rows = result.get_items()
        self.assertEqual([r['jid'] for r in rows], ['alice@localhost'], str(reply))
        self.assertEqual(rows[0]['nick'], 'ally', str(reply))

    @async_test
    async def test_each_legacy_field(self):
        c = await self.searcher()
        # three characters or more: anywhere, any case; opted-out 'hidden' never shows
        self.assertEqual(await self.found(c, first='ALI'),
                         ['alice@localhost', 'alicia@localhost', 'natalia@localhost'])
        self.assertEqual(await self.found(c, last='iddEL'), ['alice@localhost'])
        self.assertEqual(await self.found(c, nick='fix'), ['bob@localhost'])
        # e-mail: the whole address, any case; a part finds nothing
        self.assertEqual(await self.found(c, email='ALICE@Wonder.Land'), ['alice@localhost'])
        self.assertEqual(await self.found(c, email='wonder.land'), [])
        self.assertEqual(await self.found(c, email='hidden@wonder.land'), [])
        # fewer than three characters: the start of the field only
        self.assertEqual(await self.found(c, first='al'), ['alice@localhost', 'alicia@localhost'])
        # several fields: all must match
        self.assertEqual(await self.found(c, first='ali', last='key'), ['alicia@localhost'])
        self.assertEqual(await self.found(c, first='ali', nick='fixit'), [])

    @async_test
    async def test_result_items_carry_the_fields(self):
        c = await self.searcher()
        r = await self.search(c, legacy(nick='ally'))
        item = r.find('{%s}query/{%s}item' % (NS_SEARCH, NS_SEARCH))
        self.assertEqual(item.get('jid'), 'alice@localhost')
        got = {f: item.findtext('{%s}%s' % (NS_SEARCH, f)) for f in ('first', 'last', 'nick',
                                                                    'email')}
        self.assertEqual(got, {'first': 'Alice', 'last': 'Liddell', 'nick': 'ally',
                               'email': 'alice@wonder.land'})
        self.assertIsNone(set_of(r), to_str(r))  # nothing cut, no RSM asked: no <set/>
        r = await self.search(c, legacy(nick='nobody-has-this'))
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(len(r.find('{%s}query' % NS_SEARCH)), 0, to_str(r))

    @async_test
    async def test_by_form(self):
        c = await self.searcher()
        r = await self.search(c, form({VAR_FN: 'romanov'}))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        xf = r.find('{%s}query/{%s}x' % (NS_SEARCH, NS_DATA))
        self.assertEqual(xf.get('type'), 'result', to_str(r))
        reported = [f.get('var') for f in xf.findall('{%s}reported/{%s}field' % (NS_DATA, NS_DATA))]
        self.assertEqual(reported, ['jid', VAR_FN, 'first', 'last', 'nick', 'email'])
        items = xf.findall('{%s}item' % NS_DATA)
        self.assertEqual(len(items), 1, to_str(r))
        vals = {f.get('var'): f.findtext('{%s}value' % NS_DATA)
                for f in items[0].findall('{%s}field' % NS_DATA)}
        self.assertEqual(vals, {'jid': 'natalia@localhost', VAR_FN: 'Natalia Romanova',
                                'first': 'Natalia', 'last': 'Romanova', 'nick': 'widow',
                                'email': 'nat@shield.example'})
        # each registered var, and two together
        for var, value, want in (('first', 'bob', 'bob@localhost'),
                                 ('last', 'BUILD', 'bob@localhost'),
                                 ('nick', 'widow', 'natalia@localhost'),
                                 ('email', 'Alicia@Music.Example', 'alicia@localhost')):
            r = await self.search(c, form({var: value}))
            jids = [f.findtext('{%s}value' % NS_DATA) for f in
                    r.iter('{%s}field' % NS_DATA) if f.get('var') == 'jid' and len(f)]
            self.assertEqual(jids, [want], '%s=%s: %s' % (var, value, to_str(r)))
        r = await self.search(c, form({VAR_FN: 'tester', 'nick': 'tt7'}))
        self.assertEqual(len(r.findall('.//{%s}item' % NS_DATA)), 1, to_str(r))
        # a form without FORM_TYPE is read the same; another FORM_TYPE is refused
        r = await self.search(c, form({'nick': 'ally'}, form_type=None))
        self.assertEqual(len(r.findall('.//{%s}item' % NS_DATA)), 1, to_str(r))
        r = await self.search(c, form({'nick': 'ally'}, form_type='urn:other'))
        self.assertEqual(error_of(r), 'bad-request', to_str(r))

    @async_test
    async def test_paging(self):
        c = await self.searcher()
        # No RSM asked, more results than max_results (5): five, and a <set/> saying so.
        r = await self.search(c, legacy(last='tester'))
        self.assertEqual(items_of(r), testers(1, 2, 3, 4, 5))
        self.assertEqual(set_of(r), ('tester1@localhost', 0, 'tester5@localhost', 7))
        # Forwards, three at a time.
        r = await self.search(c, legacy(last='tester') + rsm(max=3))
        self.assertEqual(items_of(r), testers(1, 2, 3))
        self.assertEqual(set_of(r), ('tester1@localhost', 0, 'tester3@localhost', 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=3, after='tester3@localhost'))
        self.assertEqual(items_of(r), testers(4, 5, 6))
        self.assertEqual(set_of(r), ('tester4@localhost', 3, 'tester6@localhost', 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=3, after='tester6@localhost'))
        self.assertEqual(items_of(r), testers(7))
        self.assertEqual(set_of(r), ('tester7@localhost', 6, 'tester7@localhost', 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=3, after='tester7@localhost'))
        self.assertEqual(items_of(r), [])
        self.assertEqual(set_of(r), (None, None, None, 7))
        # Backwards, and the last page.
        r = await self.search(c, legacy(last='tester') + rsm(max=2, before='tester4@localhost'))
        self.assertEqual(items_of(r), testers(2, 3))
        self.assertEqual(set_of(r), ('tester2@localhost', 1, 'tester3@localhost', 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=3, before=None))
        self.assertEqual(items_of(r), testers(5, 6, 7))
        self.assertEqual(set_of(r), ('tester5@localhost', 4, 'tester7@localhost', 7))
        # By index; the count alone; a <max/> above max_results is capped.
        r = await self.search(c, legacy(last='tester') + rsm(max=3, index=5))
        self.assertEqual(items_of(r), testers(6, 7))
        self.assertEqual(set_of(r), ('tester6@localhost', 5, 'tester7@localhost', 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=0))
        self.assertEqual(items_of(r), [])
        self.assertEqual(set_of(r), (None, None, None, 7))
        r = await self.search(c, legacy(last='tester') + rsm(max=100))
        self.assertEqual(len(items_of(r)), 5)
        # The form takes RSM the same way.
        r = await self.search(c, form({'last': 'tester'}) + rsm(max=2, after='tester2@localhost'))
        jids = [f.findtext('{%s}value' % NS_DATA) for f in r.iter('{%s}field' % NS_DATA)
                if f.get('var') == 'jid' and len(f)]
        self.assertEqual(jids, testers(3, 4))
        self.assertEqual(set_of(r), ('tester3@localhost', 2, 'tester4@localhost', 7))
        # A bad <max/> is a bad request.
        r = await self.search(c, legacy(last='tester') + rsm(max='lots'))
        self.assertEqual(error_of(r), 'bad-request', to_str(r))

    @async_test
    async def test_opting_out_and_back_in(self):
        c = await self.searcher()
        a = await self.raw_login('alicia@localhost', PW, resource='vis')
        vis = "<visibility xmlns='%s'/>" % NS_VIS
        r = await a.iq('get', vis, to='localhost')
        v = r.find('{%s}visibility' % NS_VIS)
        self.assertEqual((v.get('findable'), v.get('default')), ('true', 'true'), to_str(r))
        r = await a.iq('set', "<visibility xmlns='%s' findable='false'/>" % NS_VIS, to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.found(c, first='alicia'), [])
        self.assertEqual(await self.found(c, email='alicia@music.example'), [])
        r = await a.iq('get', vis)
        v = r.find('{%s}visibility' % NS_VIS)
        self.assertEqual((v.get('findable'), v.get('default')), ('false', 'false'), to_str(r))
        r = await a.iq('set', "<visibility xmlns='%s' findable='default'/>" % NS_VIS)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.found(c, first='alicia'), ['alicia@localhost'])
        r = await a.iq('set', "<visibility xmlns='%s' findable='maybe'/>" % NS_VIS)
        self.assertEqual(error_of(r), 'bad-request', to_str(r))
        # Opted out with a vCard changed later: still out.
        h = await self.raw_login('hidden@localhost', PW, resource='again')
        r = await h.iq('set', vcard_xml('Alice Hidden', 'Alice', 'Hidden', 'hideout2',
                                        'hidden@wonder.land'))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.found(c, nick='hideout2'), [])

    @async_test
    async def test_settings_of_the_host(self):
        # example.test: findable_default = false; erin opted in, dave did not choose.
        d = await self.searcher('dave', 'example.test')
        r = await self.search(d, legacy(last='default'), to='example.test')
        self.assertEqual(items_of(r), ['erin@example.test'])
        # email_match = substring there: part of an address is enough.
        r = await self.search(d, legacy(email='ORG'), to='example.test')
        self.assertEqual(items_of(r), ['erin@example.test'])
        r = await d.iq('get', "<visibility xmlns='%s'/>" % NS_VIS, to='example.test')
        v = r.find('{%s}visibility' % NS_VIS)
        self.assertEqual((v.get('findable'), v.get('default')), ('false', 'true'), to_str(r))

    @async_test
    async def test_empty_query_refused(self):
        c = await self.searcher()
        for inner in ('', legacy(first='', nick='  '), form({'first': '', 'nick': ' '}),
                      rsm(max=3)):
            r = await self.search(c, inner)
            self.assertEqual(stanza_error(r), ('modify', 'not-acceptable'), to_str(r))
        r = await self.search(c, legacy(first='a' * 300))
        self.assertEqual(error_of(r), 'not-acceptable', to_str(r))

    @async_test
    async def test_wildcards_are_literal(self):
        c = await self.searcher()
        for v in ('%', '%%%', '_', '___', '\\'):
            self.assertEqual(await self.found(c, first=v), [], v)

    @async_test
    async def test_another_hosts_directory_is_closed(self):
        d = await self.searcher('dave', 'example.test')
        r = await self.search(d, legacy(first='alice'), to='localhost')
        self.assertEqual(error_of(r), 'forbidden', to_str(r))
        r = await d.iq('set', "<visibility xmlns='%s' findable='true'/>" % NS_VIS, to='localhost')
        self.assertEqual(error_of(r), 'not-allowed', to_str(r))

    @async_test
    async def test_a_changed_vcard_is_found_by_its_new_fields(self):
        c = await self.searcher()
        b = await self.raw_login('bob@localhost', PW, resource='change')
        r = await b.iq('set', vcard_xml('Robert Builder', 'Robert', 'Builder', 'bobcat',
                                        'robert@build.example'))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(await self.found(c, nick='bobcat'), ['bob@localhost'])
        self.assertEqual(await self.found(c, nick='fixit'), [])
        self.assertEqual(await self.found(c, email='robert@build.example'), ['bob@localhost'])
        r = await b.iq('set', vcard_xml(*PEOPLE['bob']))
        self.assertEqual(r.get('type'), 'result', to_str(r))

    @async_test
    async def test_disco(self):
        c = await self.searcher()
        r = await c.iq('get', "<query xmlns='%s'/>" % NS_INFO, to='localhost')
        q = r.find('{%s}query' % NS_INFO)
        ids = [(i.get('category'), i.get('type')) for i in q.findall('{%s}identity' % NS_INFO)]
        self.assertIn(('directory', 'user'), ids)
        feats = [f.get('var') for f in q.findall('{%s}feature' % NS_INFO)]
        for f in (NS_SEARCH, NS_RSM, NS_VIS, 'vcard-temp'):
            self.assertIn(f, feats)


if __name__ == '__main__':
    main()
