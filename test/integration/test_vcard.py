#!/usr/bin/python3
"""mod_vcard: vcard-temp (XEP-0054) and the avatar hash in presence (XEP-0153).

A real client (slixmpp's xep_0054) stores and reads back a vCard with a 64 KiB photo; raw
streams check the exact protocol: own and others' vCards, the empty vCard, <service-unavailable/>
for a missing vCard or account, <forbidden/> for someone else's, the size limit, a BINVAL that
is not base64, XML that survives storage exactly. Presence: the photo hash (SHA-1 of the decoded
image) in every available presence of every resource, the next presence after a change carrying
the new hash, an empty <photo/> without a photo, a client's own x:update replaced. The vCard is
gone with the account (stanzactl deluser), and a registration's profile becomes the first vCard."""

import asyncio
import base64
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, ServerTestCase, async_test, attr, main,  # noqa: E402
                     stanza_error, tag_is, to_str, x)

NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_REG = 'jabber:iq:register'
NS_DATA = 'jabber:x:data'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
CAROL = 'carol@localhost'
ERIN = 'erin@localhost'
DAVE = 'dave@example.test'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', CAROL: 'carol pw', ERIN: 'erin pw', DAVE: 'dave pw'}

# The vCard limit of these tests, and a stanza limit above it so that the vCard limit is what
# refuses a large vCard (with a stanza error, not the end of the stream).
MAX_SIZE = 128 * 1024
CONFIG = {'modules': ['disco', 'vcard'],
          'module_settings': {'vcard': {'max_size': '128K'}},
          'limits': {'max_stanza_size': 512 * 1024}}


def photo_bytes(n, seed=1):
    """n bytes of an 'image' that does not compress (so its base64 has the full size)."""
    out = bytearray()
    block = str(seed).encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def b64_lines(data):
    """base64 in 76-character lines, as RFC 2045 (and XEP-0153) write it."""
    s = base64.b64encode(data).decode()
    return '\n'.join(s[i:i + 76] for i in range(0, len(s), 76))


def vcard(fn=None, given=None, family=None, nick=None, email=None, photo=None, extra=''):
    parts = []
    if fn is not None:
        parts.append('<FN>%s</FN>' % x(fn))
    if given is not None or family is not None:
        parts.append('<N><FAMILY>%s</FAMILY><GIVEN>%s</GIVEN><MIDDLE/></N>'
                     % (x(family or ''), x(given or '')))
    if nick is not None:
        parts.append('<NICKNAME>%s</NICKNAME>' % x(nick))
    if email is not None:
        parts.append('<EMAIL><INTERNET/><PREF/><USERID>%s</USERID></EMAIL>' % x(email))
    if photo is not None:
        parts.append('<PHOTO><TYPE>image/png</TYPE><BINVAL>%s</BINVAL></PHOTO>' % b64_lines(photo))
    return "<vCard xmlns='vcard-temp'>%s%s</vCard>" % (''.join(parts), extra)


def vc_of(iq):
    return iq.find('{%s}vCard' % NS_VCARD)


def text_of(vc, path):
    el = vc.find('/'.join('{%s}%s' % (NS_VCARD, p) for p in path.split('/')))
    return None if el is None else (el.text or '')


def photo_of(pres):
    """The x:update photo of a presence: None without x:update, '' for an empty <photo/>."""
    upd = pres.find('{%s}x' % NS_UPDATE)
    if upd is None:
        return None
    ph = upd.find('{%s}photo' % NS_UPDATE)
    return None if ph is None else (ph.text or '')


def error_of(el):
    err = stanza_error(el)
    return err[1] if err else None


class VCardCase(ServerTestCase):
    config = CONFIG
    users = USERS

    def sql(self, q):
        return self.world.cluster.psql(q, db=self.server.db).strip()

    async def set_vcard(self, c, body, to=None):
        return await c.iq('set', body, to=to)

    async def get_vcard(self, c, to=None):
        return await c.iq('get', "<vCard xmlns='vcard-temp'/>", to=to)

    async def presence_step(self, sender, watchers, status, extra=''):
        """sender sends available presence with a unique status; returns that presence as each
        watcher (and the sender itself, by reflection) received it."""
        await sender.send_presence(extra='<status>%s</status>%s' % (x(status), extra))
        got = []
        for w in [sender] + [w for w in watchers if w is not sender]:
            el = await w.wait_for(
                lambda e: tag_is(e, 'presence') and e.get('from') == sender.jid
                and e.findtext('{jabber:client}status') == status,
                what='presence %r from %s' % (status, sender.jid))
            got.append(el)
        return got


class VCard(VCardCase):

    @async_test
    async def test_round_trip_with_a_64k_photo_through_slixmpp(self):
        image = photo_bytes(64 * 1024)
        c = self.track(Client(ALICE + '/slix', USERS[ALICE]))
        c.register_plugin('xep_0054')
        await c.login(self.server.starttls_port)
        card = c['xep_0054'].make_vcard()
        card['FN'] = 'Alice Liddell'
        card['NICKNAME'] = 'ally'
        card['N']['GIVEN'] = 'Alice'
        card['N']['FAMILY'] = 'Liddell'
        card['PHOTO']['TYPE'] = 'image/png'
        card['PHOTO']['BINVAL'] = image
        await c['xep_0054'].publish_vcard(card, timeout=20)
        iq = await c['xep_0054'].get_vcard(ALICE, timeout=20)
        self.assertEqual(iq['type'], 'result')
        back = iq.xml.find('{%s}vCard' % NS_VCARD)
        self.assertIsNotNone(back, str(iq)[:500])
        self.assertEqual(text_of(back, 'FN'), 'Alice Liddell')
        self.assertEqual(text_of(back, 'N/GIVEN'), 'Alice')
        self.assertEqual(text_of(back, 'N/FAMILY'), 'Liddell')
        self.assertEqual(text_of(back, 'NICKNAME'), 'ally')
        self.assertEqual(text_of(back, 'PHOTO/TYPE'), 'image/png')
        self.assertEqual(base64.b64decode(text_of(back, 'PHOTO/BINVAL')), image)
        # Stored with its hash and search fields.
        row = self.sql("SELECT c.photo_hash, s.fullname, s.nickname FROM vcard_cards c "
                       "JOIN vcard_search s USING (account_id) JOIN accounts a ON a.id = "
                       "c.account_id WHERE a.username = 'alice' AND a.host = 'localhost'")
        self.assertEqual(row, '%s|Alice Liddell|ally' % hashlib.sha1(image).hexdigest())

    @async_test
    async def test_own_vcard_empty_before_the_first_set(self):
        c = await self.raw_login(CAROL)
        r = await self.get_vcard(c)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        vc = vc_of(r)
        self.assertIsNotNone(vc, to_str(r))
        self.assertEqual(len(vc), 0, to_str(r))
        # To one's own bare JID: the same.
        r = await self.get_vcard(c, to=CAROL)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(len(vc_of(r)), 0)

    @async_test
    async def test_over_the_limit_refused_and_the_old_one_kept(self):
        c = await self.raw_login(ERIN)
        r = await self.set_vcard(c, vcard(fn='Erin', photo=photo_bytes(1000)))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        big = vcard(fn='Erin Big', photo=photo_bytes(100 * 1024, seed=2))
        self.assertGreater(len(big), MAX_SIZE)
        r = await self.set_vcard(c, big)
        self.assertEqual(error_of(r), 'not-acceptable', to_str(r)[:300])
        text = r.findtext('{jabber:client}error/{%s}text' % NS_STANZAS)
        self.assertIn('at most %d' % MAX_SIZE, text or '')
        r = await self.get_vcard(c)
        self.assertEqual(text_of(vc_of(r), 'FN'), 'Erin')
        # The stream is still fine.
        r = await self.get_vcard(c)
        self.assertEqual(r.get('type'), 'result')

    @async_test
    async def test_others_vcard_readable_missing_ones_unavailable(self):
        a = await self.raw_login(ALICE, resource='others')
        r = await self.set_vcard(a, vcard(fn='Alice L.', nick='ally', email='alice@example.com'))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        b = await self.raw_login(BOB)
        r = await self.get_vcard(b, to=ALICE)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(r.get('from'), ALICE)
        self.assertEqual(text_of(vc_of(r), 'FN'), 'Alice L.')
        self.assertEqual(text_of(vc_of(r), 'EMAIL/USERID'), 'alice@example.com')
        # From another virtual host of the server, too.
        d = await self.raw_login(DAVE)
        r = await self.get_vcard(d, to=ALICE)
        self.assertEqual(text_of(vc_of(r), 'NICKNAME'), 'ally')
        # No vCard and no account: the same answer (XEP-0054 1.3).
        r = await self.get_vcard(b, to=CAROL)
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))
        r = await self.get_vcard(b, to='nobody@localhost')
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    @async_test
    async def test_setting_someone_elses_vcard_is_forbidden(self):
        a = await self.raw_login(ALICE, resource='forbidden')
        r = await self.set_vcard(a, vcard(fn='The Real Alice'))
        self.assertEqual(r.get('type'), 'result')
        b = await self.raw_login(BOB, resource='forbidden')
        r = await self.set_vcard(b, vcard(fn='Not Alice'), to=ALICE)
        self.assertEqual(stanza_error(r), ('auth', 'forbidden'), to_str(r))
        r = await self.get_vcard(b, to=ALICE)
        self.assertEqual(text_of(vc_of(r), 'FN'), 'The Real Alice')

    @async_test
    async def test_binval_that_is_not_base64(self):
        c = await self.raw_login(BOB, resource='b64')
        r = await self.set_vcard(c, "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>not*base64!"
                                    "</BINVAL></PHOTO></vCard>")
        self.assertEqual(error_of(r), 'bad-request', to_str(r))

    @async_test
    async def test_stored_xml_comes_back_exactly(self):
        c = await self.raw_login(BOB, resource='xml')
        body = ("<vCard xmlns='vcard-temp' version='3.0'>"
                "<FN>Bob &amp; &lt;Co&gt; \"quoted\" 'apos' \u00e9\u4e2d\U0001F600</FN>"
                "<DESC>line one\nline two\ttab</DESC>"
                "<ADR><HOME/><STREET>1 Rue d&apos;Ici</STREET></ADR>"
                "<X-CUSTOM xmlns='urn:example:ext' kind='a&amp;b &lt;c&gt;'>"
                "<inner>text</inner>tail</X-CUSTOM>"
                "<NOTE>mixed <B>bold</B> and more</NOTE>"
                "</vCard>")
        r = await self.set_vcard(c, body)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.get_vcard(c)
        vc = vc_of(r)
        self.assertEqual(vc.get('version'), '3.0')
        self.assertEqual(text_of(vc, 'FN'), 'Bob & <Co> "quoted" \'apos\' \u00e9\u4e2d\U0001F600')
        self.assertEqual(text_of(vc, 'DESC'), 'line one\nline two\ttab')
        self.assertEqual(text_of(vc, 'ADR/STREET'), "1 Rue d'Ici")
        self.assertIsNotNone(vc.find('{%s}ADR/{%s}HOME' % (NS_VCARD, NS_VCARD)))
        ext = vc.find('{urn:example:ext}X-CUSTOM')
        self.assertIsNotNone(ext, to_str(vc))
        self.assertEqual(ext.get('kind'), 'a&b <c>')
        self.assertEqual(ext.findtext('{urn:example:ext}inner'), 'text')
        self.assertEqual(ext[0].tail, 'tail')
        note = vc.find('{%s}NOTE' % NS_VCARD)
        self.assertEqual((note.text, note[0].text, note[0].tail), ('mixed ', 'bold', ' and more'))

    @async_test
    async def test_disco_features(self):
        c = await self.raw_login(BOB, resource='disco')
        for to in ('localhost', BOB):
            r = await c.iq('get', "<query xmlns='%s'/>" % NS_INFO, to=to)
            feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
            self.assertIn('vcard-temp', feats, to_str(r))

    @async_test
    async def test_photo_hash_in_presence(self):
        # Four resources: with two workers, some are on another worker than the one that
        # handles the change.
        rs = [await self.raw_login(ALICE, resource='p%d' % i) for i in range(4)]
        for c in rs:
            await c.send_presence()
        one, others = rs[0], rs[1:]
        img1, img2 = photo_bytes(3000, seed=11), photo_bytes(5000, seed=12)
        h1, h2 = hashlib.sha1(img1).hexdigest(), hashlib.sha1(img2).hexdigest()

        r = await self.set_vcard(one, vcard(fn='Alice', photo=img1))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        for i, c in enumerate(rs):
            for el in await self.presence_step(c, [one], 'first-%d' % i):
                self.assertEqual(photo_of(el), h1, to_str(el))
        # A client's own (stale or empty) x:update is replaced by the server's.
        stale = "<x xmlns='vcard-temp:x:update'><photo>%s</photo></x>" % ('0' * 40)
        for el in await self.presence_step(others[0], [one], 'stale', extra=stale):
            self.assertEqual(photo_of(el), h1, to_str(el))
            self.assertEqual(len(el.findall('{%s}x' % NS_UPDATE)), 1, to_str(el))

        # A new photo: the next presence of every resource carries the new hash.
        r = await self.set_vcard(one, vcard(fn='Alice', photo=img2))
        self.assertEqual(r.get('type'), 'result')
        for i, c in enumerate(rs):
            for el in await self.presence_step(c, [one], 'second-%d' % i):
                self.assertEqual(photo_of(el), h2, to_str(el))

        # A resource bound now loads the hash at bind; its first presence has it.
        late = await self.raw_login(ALICE, resource='late')
        for el in await self.presence_step(late, [one], 'late'):
            self.assertEqual(photo_of(el), h2, to_str(el))

        # No photo: an empty <photo/> ("no avatar", XEP-0153 §3.2).
        r = await self.set_vcard(one, vcard(fn='Alice'))
        self.assertEqual(r.get('type'), 'result')
        for i, c in enumerate(rs + [late]):
            for el in await self.presence_step(c, [one], 'none-%d' % i):
                self.assertEqual(photo_of(el), '', to_str(el))
        # Unavailable presence is left alone.
        await others[2].send_presence(type='unavailable')
        el = await one.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == 'unavailable'
                                and e.get('from') == others[2].jid, what='unavailable presence')
        self.assertIsNone(photo_of(el), to_str(el))

    @async_test
    async def test_photo_hash_seen_by_someone_else(self):
        # Directed presence (no roster module here) reaches another account with the hash.
        img = photo_bytes(2048, seed=21)
        b = await self.raw_login(BOB, resource='watcher')
        d = await self.raw_login(DAVE, resource='directed')
        r = await self.set_vcard(d, vcard(fn='Dave', photo=img))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        await d.send_presence(to=b.jid, extra='<status>hello bob</status>')
        el = await b.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == d.jid,
                              what='directed presence from dave')
        self.assertEqual(photo_of(el), hashlib.sha1(img).hexdigest(), to_str(el))

    @async_test
    async def test_presence_right_after_bind(self):
        # The first presence may arrive before the hash is loaded: it waits for it.
        img = photo_bytes(1500, seed=31)
        c = await self.raw_login(ERIN, resource='setter')
        r = await self.set_vcard(c, vcard(fn='Erin', photo=img))
        self.assertEqual(r.get('type'), 'result')
        for i in range(5):
            fresh = self.raw(name='erin fresh %d' % i)
            await fresh.login('erin', USERS[ERIN], 'fresh%d' % i, presence=True)
            el = await fresh.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == fresh.jid,
                                      what='own presence')
            self.assertEqual(photo_of(el), hashlib.sha1(img).hexdigest(), to_str(el))
            await fresh.close()

    @async_test
    async def test_vcard_gone_with_the_account(self):
        self.server.add_user('gone@localhost', 'gone pw')
        c = self.raw(name='gone')
        await c.login('gone', 'gone pw', 'r')
        r = await self.set_vcard(c, vcard(fn='Soon Gone', nick='ghost', photo=photo_bytes(500)))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        ids = self.sql("SELECT id FROM accounts WHERE username = 'gone'")
        self.assertEqual(self.sql("SELECT count(*) FROM vcard_cards WHERE account_id = %s" % ids),
                         '1')
        res = self.server.ctl('deluser', 'gone@localhost')
        self.assertEqual(res.returncode, 0, res.stderr)
        for table in ('vcard_cards', 'vcard_search', 'vcard_extra'):
            self.assertEqual(self.sql("SELECT count(*) FROM %s WHERE account_id = %s"
                                      % (table, ids)), '0', table)
        b = await self.raw_login(BOB, resource='gone')
        r = await self.get_vcard(b, to='gone@localhost')
        self.assertEqual(error_of(r), 'service-unavailable', to_str(r))


def reg_query(inner):
    return "<query xmlns='%s'>%s</query>" % (NS_REG, inner)


class RegistrationProfile(VCardCase):
    """A registration's fields become the account's first vCard (mod_register)."""

    config = {'modules': ['disco', 'register', 'vcard'],
              'module_settings': {
                  'register': {'max_per_address': 0, 'min_interval': 0,
                               'fields': ['nick=Nickname', 'fullname=Full name',
                                          'x-gender=Gender', 'x-age=Age']},
                  'vcard': {'max_size': '128K'}}}
    users = {}

    async def register(self, fields, use_form=True):
        c = self.raw(name='registrant')
        await c.connect()
        await c.open_stream()
        await c.starttls()
        await c.open_stream()
        if use_form:
            inner = ["<x xmlns='%s' type='submit'>" % NS_DATA,
                     "<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % NS_REG]
            inner += ['<field var=%s><value>%s</value></field>' % (attr(k), x(v))
                      for k, v in fields.items()]
            inner.append('</x>')
        else:
            inner = ['<%s>%s</%s>' % (k, x(v), k) for k, v in fields.items()]
        r = await c.iq('set', reg_query(''.join(inner)), to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        await c.close()

    async def wait_rows(self, q, want):
        for _ in range(50):
            got = self.sql(q)
            if got == want:
                return
            await asyncio.sleep(0.1)
        self.assertEqual(got, want, q)

    @async_test
    async def test_form_registration_makes_the_first_vcard(self):
        await self.register({'username': 'newbie', 'password': 'Green apples 7',
                             'email': 'newbie@example.org', 'nick': 'nb',
                             'fullname': 'New Bie', 'x-gender': 'other', 'x-age': '33'})
        await self.wait_rows("SELECT s.fullname, s.nickname, s.email FROM vcard_search s "
                             "WHERE s.username = 'newbie'", 'New Bie|nb|newbie@example.org')
        self.assertEqual(self.sql("SELECT string_agg(field || '=' || value, ',' ORDER BY field) "
                                  "FROM vcard_extra e JOIN accounts a ON a.id = e.account_id "
                                  "WHERE a.username = 'newbie'"), 'x-age=33,x-gender=other')
        c = self.raw(name='newbie')
        await c.login('newbie', 'Green apples 7', 'r')
        r = await self.get_vcard(c)
        vc = vc_of(r)
        self.assertEqual(text_of(vc, 'FN'), 'New Bie')
        self.assertEqual(text_of(vc, 'NICKNAME'), 'nb')
        self.assertEqual(text_of(vc, 'EMAIL/USERID'), 'newbie@example.org')
        # Nothing secret was kept anywhere in the profile.
        dump = self.sql("SELECT string_agg(xml, '') FROM vcard_cards") + \
            self.sql("SELECT coalesce(string_agg(field || value, ''), '') FROM vcard_extra")
        self.assertNotIn('Green apples 7', dump)
        self.assertNotIn('password', dump)

    @async_test
    async def test_legacy_registration_names(self):
        await self.register({'username': 'oldtimer', 'password': 'Sunny days 42',
                             'email': 'old@example.org', 'first': 'Olde', 'last': 'Tymer'},
                            use_form=False)
        await self.wait_rows("SELECT s.fullname, s.given, s.family, s.email FROM vcard_search s "
                             "WHERE s.username = 'oldtimer'", 'Olde Tymer|Olde|Tymer|old@example.org')

    @async_test
    async def test_administrator_created_account_has_no_vcard(self):
        self.server.add_user('byadmin@localhost', 'admin made pw')
        c = self.raw(name='byadmin')
        await c.login('byadmin', 'admin made pw', 'r')
        r = await self.get_vcard(c)
        self.assertEqual(len(vc_of(r)), 0, to_str(r))


if __name__ == '__main__':
    main()
