#!/usr/bin/python3
"""The first modules through the module ABI, checked with real clients (slixmpp) and exact XML:
service discovery (XEP-0030), ping in both directions (XEP-0199), software version (XEP-0092),
entity time (XEP-0202) and entity capabilities (XEP-0115). Then the runtime, through the
test-only modules in test/modules/: deferral and completion on the right worker (timers,
sd_post, sd_offload), prepared statements and migrations, per-session data, clean-up after a
failing load(). Last, contrib/example_module built against the installed headers in a
temporary prefix and loaded by the server."""

import asyncio
import base64
import datetime
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (BUILD_DIR, SOURCE_DIR, SLOW, Client, Server, ServerTestCase,  # noqa: E402
                     async_test, main, NS_PING, NS_CLIENT, stanza_error, tag_is,
                     to_str, body_of, world, new_id)

NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_VERSION = 'jabber:iq:version'
NS_TIME = 'urn:xmpp:time'
NS_DATA = 'jabber:x:data'
NS_DEFER = 'urn:stanzad:test:defer'
NS_DB = 'urn:stanzad:test:db'
NS_SD = 'urn:stanzad:test:sessdata'
NS_FAIL = 'urn:stanzad:test:failload'
XML_LANG = '{http://www.w3.org/XML/1998/namespace}lang'
CAPS_NODE = 'https://stanzad.invalid'

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
DAVE = 'dave@example.test'
USERS = {ALICE: 'alice pw', BOB: 'bob pw', DAVE: 'dave pw'}

SERVER_FEATURES = sorted([NS_INFO, NS_ITEMS, NS_PING, NS_VERSION, NS_TIME, NS_CAPS])


def with_modules(modules, settings=None, **extra):
    """Config overrides: `modules` and `module_settings` (the harness points server.module_dir
    at the build's modules, test-only ones included)."""
    cfg = {'modules': list(modules)}
    if settings:
        cfg['module_settings'] = settings
    cfg.update(extra)
    return cfg


def server_version():
    with open(os.path.join(SOURCE_DIR, 'include', 'stanzad', 'version.h')) as f:
        return re.search(r'#define SD_VERSION_STRING "([^"]+)"', f.read()).group(1)


def q(el, ns, name):
    return el.find('{%s}%s' % (ns, name))


def identities(query):
    return [(i.get('category'), i.get('type'), i.get('name'))
            for i in query.findall('{%s}identity' % NS_INFO)]


def features(query):
    return [f.get('var') for f in query.findall('{%s}feature' % NS_INFO)]


def caps_ver(query):
    """The XEP-0115 §5.1 verification string of a disco#info <query/>, with the §5.4 rules for
    XEP-0128 forms: the reference the server's 'ver' is compared with."""
    ids = sorted('%s/%s/%s/%s' % (i.get('category', ''), i.get('type', ''), i.get(XML_LANG, ''),
                                  i.get('name', ''))
                 for i in query.findall('{%s}identity' % NS_INFO))
    s = ''.join(x + '<' for x in ids)
    s += ''.join(x + '<' for x in sorted(features(query)))
    forms = []
    for x in query.findall('{%s}x' % NS_DATA):
        form_type, fields = None, {}
        for f in x.findall('{%s}field' % NS_DATA):
            vals = [v.text or '' for v in f.findall('{%s}value' % NS_DATA)]
            if f.get('var') == 'FORM_TYPE':
                if f.get('type') == 'hidden':
                    form_type = vals[0]
            else:
                fields[f.get('var')] = sorted(vals)
        if form_type is not None:
            forms.append((form_type, ''.join(k + '<' + ''.join(v + '<' for v in fields[k])
                                             for k in sorted(fields))))
    for form_type, text in sorted(forms):
        s += form_type + '<' + text
    return base64.b64encode(hashlib.sha1(s.encode('utf-8')).digest()).decode()


def is_request(el, ns=None, name=None):
    if not (tag_is(el, 'iq') and el.get('type') in ('get', 'set')):
        return False
    return ns is None or (len(el) > 0 and el[0].tag == '{%s}%s' % (ns, name))


async def login_slixmpp(case, jid, plugins=(), resource=None):
    """A slixmpp client with the given XEP plugins, logged in."""
    full = jid + ('/' + resource if resource else '')
    c = case.track(Client(full, case.users[jid]))
    for p in plugins:
        c.register_plugin(p)
    await c.login(case.server.starttls_port)
    return c


class ReferenceVerString(ServerTestCase):
    """The Python reference for 'ver' against XEP-0115's own examples (§5.2, §5.3)."""
    start_server = False

    def parse(self, text):
        import xml.etree.ElementTree as ET
        return ET.fromstring(text)

    def test_simple_example(self):
        query = self.parse(
            "<query xmlns='%s'><identity category='client' name='Exodus 0.9.1' type='pc'/>"
            "<feature var='http://jabber.org/protocol/caps'/>"
            "<feature var='http://jabber.org/protocol/disco#info'/>"
            "<feature var='http://jabber.org/protocol/disco#items'/>"
            "<feature var='http://jabber.org/protocol/muc'/></query>" % NS_INFO)
        self.assertEqual(caps_ver(query), 'QgayPKawpkPSDYmwT/WM94uAlu0=')

    def test_complex_example(self):
        query = self.parse(
            "<query xmlns='%s'>"
            "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
            "<identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>"
            "<feature var='http://jabber.org/protocol/caps'/>"
            "<feature var='http://jabber.org/protocol/disco#info'/>"
            "<feature var='http://jabber.org/protocol/disco#items'/>"
            "<feature var='http://jabber.org/protocol/muc'/>"
            "<x xmlns='jabber:x:data' type='result'>"
            "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value>"
            "</field><field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"
            "<field var='os'><value>Mac</value></field>"
            "<field var='os_version'><value>10.5.1</value></field>"
            "<field var='software'><value>Psi</value></field>"
            "<field var='software_version'><value>0.11</value></field></x></query>" % NS_INFO)
        self.assertEqual(caps_ver(query), 'q07IKJEyjvHSyhy//CH0CxmKi8w=')


# ---------------------------------------------------------------------------------------------
# disco, version, time, ping (answering), caps


class Disco(ServerTestCase):
    config = with_modules(['disco', 'ping', 'version', 'time', 'caps'])
    users = USERS

    async def disco(self, c, ns, to=None, node=None):
        attrs = " node='%s'" % node if node else ''
        return await c.iq('get', "<query xmlns='%s'%s/>" % (ns, attrs), to=to)

    @async_test
    async def test_server_info_exact(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.disco(alice, NS_INFO, to='localhost')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(r.get('from'), 'localhost')
        query = q(r, NS_INFO, 'query')
        self.assertIsNotNone(query, to_str(r))
        self.assertIsNone(query.get('node'))
        self.assertEqual(identities(query), [('server', 'im', 'stanzad')])
        # every loaded module's features, each once, in order
        self.assertEqual(features(query), SERVER_FEATURES)

    @async_test
    async def test_server_info_slixmpp(self):
        c = await login_slixmpp(self, ALICE, ['xep_0030'])
        info = await c['xep_0030'].get_info(jid='localhost', local=False, cached=False)
        di = info['disco_info']
        self.assertIn(('server', 'im', None, 'stanzad'), di['identities'])
        self.assertEqual(sorted(di['features']), SERVER_FEATURES)
        items = await c['xep_0030'].get_items(jid='localhost', local=False)
        self.assertEqual(list(items['disco_items']['items']), [])

    @async_test
    async def test_account_info_on_behalf_of_the_account(self):
        alice = await self.raw_login(ALICE, resource='r')
        for to in (ALICE, None):
            r = await self.disco(alice, NS_INFO, to=to)
            self.assertEqual(r.get('type'), 'result', to_str(r))
            query = q(r, NS_INFO, 'query')
            self.assertEqual(identities(query), [('account', 'registered', None)])
            self.assertEqual(features(query), sorted([NS_INFO, NS_ITEMS, NS_PING]))
            if to:
                self.assertEqual(r.get('from'), ALICE)
            r = await self.disco(alice, NS_ITEMS, to=to)
            self.assertEqual(r.get('type'), 'result', to_str(r))
            self.assertEqual(len(q(r, NS_ITEMS, 'query')), 0)

    @async_test
    async def test_another_account_is_not_answered(self):
        # Without a roster there is no subscription to check: the core's default answers.
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.disco(alice, NS_INFO, to=BOB)
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    @async_test
    async def test_unknown_nodes(self):
        alice = await self.raw_login(ALICE, resource='r')
        for ns in (NS_INFO, NS_ITEMS):
            for to in ('localhost', ALICE):
                r = await self.disco(alice, ns, to=to, node='no-such-node')
                self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'), to_str(r))
        r = await self.disco(alice, NS_INFO, to='localhost', node=CAPS_NODE + '#wrongver')
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'), to_str(r))

    @async_test
    async def test_disco_set_is_not_handled(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await alice.iq('set', "<query xmlns='%s'/>" % NS_INFO, to='localhost')
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    @async_test
    async def test_full_jid_query_goes_to_the_client(self):
        bob = await login_slixmpp(self, BOB, ['xep_0030'], resource='desk')
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.disco(alice, NS_INFO, to=BOB + '/desk')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(r.get('from'), BOB + '/desk')
        # slixmpp's own identity, not the server's
        self.assertIn('client', [i[0] for i in identities(q(r, NS_INFO, 'query'))], to_str(r))
        await bob.logout()

    @async_test
    async def test_other_host_has_the_same_modules(self):
        dave = await self.raw_login(DAVE, resource='r')
        r = await self.disco(dave, NS_INFO, to='example.test')
        self.assertEqual(r.get('from'), 'example.test')
        self.assertEqual(features(q(r, NS_INFO, 'query')), SERVER_FEATURES)

    # -- version and time

    @async_test
    async def test_version_slixmpp(self):
        c = await login_slixmpp(self, ALICE, ['xep_0092'])
        r = await c['xep_0092'].get_version('localhost')
        v = r['software_version']
        self.assertEqual(v['name'], 'stanzad')
        self.assertEqual(v['version'], server_version())
        self.assertEqual(v['os'], '')   # show_os defaults to false
        self.assertIsNone(r.xml.find('{%s}query/{%s}os' % (NS_VERSION, NS_VERSION)))

    @async_test
    async def test_version_only_for_the_server(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await alice.iq('get', "<query xmlns='%s'/>" % NS_VERSION, to=ALICE)
        self.assertEqual(stanza_error(r), ('cancel', 'service-unavailable'), to_str(r))

    @async_test
    async def test_time_slixmpp(self):
        c = await login_slixmpp(self, ALICE, ['xep_0202'])
        before = datetime.datetime.now(datetime.timezone.utc)
        r = await c['xep_0202'].get_entity_time('localhost')
        after = datetime.datetime.now(datetime.timezone.utc)
        # slixmpp 1.8.3's ['utc'] appends a second 'Z' to the XEP-0082 value (a client bug):
        # parse the element's text with its XEP-0082 parser instead.
        from slixmpp.plugins import xep_0082
        utc = xep_0082.parse(r.xml.find('{%s}time/{%s}utc' % (NS_TIME, NS_TIME)).text)
        self.assertEqual(utc.utcoffset(), datetime.timedelta(0))
        self.assertLessEqual(before - datetime.timedelta(seconds=2), utc)
        self.assertLessEqual(utc, after + datetime.timedelta(seconds=2))

    @async_test
    async def test_time_exact_format(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await alice.iq('get', "<time xmlns='%s'/>" % NS_TIME, to='localhost')
        t = q(r, NS_TIME, 'time')
        self.assertIsNotNone(t, to_str(r))
        self.assertRegex(t.find('{%s}utc' % NS_TIME).text,
                         r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
        tzo = t.find('{%s}tzo' % NS_TIME).text
        self.assertRegex(tzo, r'^[+-]\d\d:\d\d$')
        off = time.localtime().tm_gmtoff   # the server runs here, with our time zone
        self.assertEqual(tzo, '%s%02d:%02d' % ('-' if off < 0 else '+', abs(off) // 3600,
                                               abs(off) // 60 % 60))

    # -- ping, answered by the server

    @async_test
    async def test_ping_server_own_account_and_no_to(self):
        alice = await self.raw_login(ALICE, resource='r')
        for to in ('localhost', ALICE, None):
            r = await alice.iq('get', "<ping xmlns='%s'/>" % NS_PING, to=to)
            self.assertEqual(r.get('type'), 'result', to_str(r))
            self.assertEqual(len(r), 0, to_str(r))

    @async_test
    async def test_ping_slixmpp(self):
        c = await login_slixmpp(self, ALICE, ['xep_0199'])
        # send_ping raises on an error reply (ping() would take an error from the own host)
        r = await c['xep_0199'].send_ping('localhost', timeout=10)
        self.assertEqual(r['type'], 'result')

    @async_test
    async def test_ping_to_a_full_jid_goes_to_the_client(self):
        bob = await login_slixmpp(self, BOB, ['xep_0199'], resource='desk')
        alice = await self.raw_login(ALICE, resource='r')
        r = await alice.iq('get', "<ping xmlns='%s'/>" % NS_PING, to=BOB + '/desk')
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(r.get('from'), BOB + '/desk')
        await bob.logout()

    # -- entity capabilities

    @async_test
    async def test_caps_in_stream_features_match_disco(self):
        alice = self.raw()
        await alice.connect()
        pre = await alice.open_stream()
        self.assertIsNone(q(pre, NS_CAPS, 'c'), 'caps offered before authentication')
        await alice.close()

        alice = self.raw(name='alice')
        await alice.login('alice', USERS[ALICE], 'r')
        # login() opened the authenticated stream; its features are the last ones
        c = q(alice.features, NS_CAPS, 'c')
        self.assertIsNotNone(c, to_str(alice.features))
        self.assertEqual(c.get('hash'), 'sha-1')
        self.assertEqual(c.get('node'), CAPS_NODE)
        ver = c.get('ver')
        r = await self.disco(alice, NS_INFO, to='localhost')
        root = q(r, NS_INFO, 'query')
        self.assertEqual(ver, caps_ver(root))
        # the node#ver query (XEP-0115 §6.2) gives the same information, with the node
        r = await self.disco(alice, NS_INFO, to='localhost', node=CAPS_NODE + '#' + ver)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        node = q(r, NS_INFO, 'query')
        self.assertEqual(node.get('node'), CAPS_NODE + '#' + ver)
        self.assertEqual((identities(node), features(node)), (identities(root), features(root)))

    @async_test
    async def test_caps_verified_by_slixmpp(self):
        c = await login_slixmpp(self, ALICE, ['xep_0030', 'xep_0115'])
        self.assertIn('caps', c.features)
        expected = caps_ver(q(await self.raw_disco_root(), NS_INFO, 'query'))
        # slixmpp asks node#ver and checks the hash itself; only then it records the string
        deadline = time.monotonic() + 10 * SLOW
        ver = None
        while time.monotonic() < deadline:
            ver = await c['xep_0115'].get_verstring('localhost')
            if ver:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(ver, expected)
        info = await c['xep_0115'].get_caps(verstring=ver)
        self.assertEqual(sorted(info['features']), SERVER_FEATURES)

    async def raw_disco_root(self):
        bob = await self.raw_login(BOB, resource='caps')
        return await self.disco(bob, NS_INFO, to='localhost')

    @async_test
    async def test_caps_per_host(self):
        dave = self.raw(host='example.test', name='dave')
        await dave.login('dave', USERS[DAVE], 'r')
        c = q(dave.features, NS_CAPS, 'c')
        r = await self.disco(dave, NS_INFO, to='example.test')
        self.assertEqual(c.get('ver'), caps_ver(q(r, NS_INFO, 'query')))


class CapsWithExtensions(ServerTestCase):
    """Another module extends disco#info (SD_EV_DISCO_INFO, XEP-0128 forms with unsorted
    fields and values): 'ver' must cover them exactly as a client computes it."""
    config = with_modules(['disco', 'caps', 'test_hooks'])
    users = USERS

    @async_test
    async def test_forms_in_disco_and_in_ver(self):
        alice = self.raw(name='alice')
        await alice.login('alice', USERS[ALICE], 'r')
        ver = q(alice.features, NS_CAPS, 'c').get('ver')
        r = await alice.iq('get', "<query xmlns='%s'/>" % NS_INFO, to='localhost')
        query = q(r, NS_INFO, 'query')
        forms = query.findall('{%s}x' % NS_DATA)
        self.assertEqual(len(forms), 2, to_str(r))
        self.assertEqual(ver, caps_ver(query))
        r = await alice.iq('get', "<query xmlns='%s' node='%s#%s'/>" % (NS_INFO, CAPS_NODE, ver),
                           to='localhost')
        self.assertEqual(caps_ver(q(r, NS_INFO, 'query')), ver)
        # the account's answer is extended too (the event says which entity is asked)
        r = await alice.iq('get', "<query xmlns='%s'/>" % NS_INFO, to=ALICE)
        self.assertIn('urn:stanzad:test:hooks:account', features(q(r, NS_INFO, 'query')))

    @async_test
    async def test_slixmpp_accepts_the_hash(self):
        c = await login_slixmpp(self, ALICE, ['xep_0030', 'xep_0004', 'xep_0115'])
        deadline = time.monotonic() + 10 * SLOW
        ver = None
        while time.monotonic() < deadline and not ver:
            ver = await c['xep_0115'].get_verstring('localhost')
            await asyncio.sleep(0.1)
        self.assertTrue(ver, 'slixmpp did not validate the server caps')


class VersionSettings(ServerTestCase):
    """What mod_version reveals is the operator's choice, per host."""
    users = USERS

    @classmethod
    def setUpClass(cls):
        w = world()
        cls.config = with_modules(
            ['version'], {'version': {'name': 'Chat Server', 'show_version': False,
                                      'show_os': True}},
            hosts=[{'name': 'localhost', 'certificate': w.certs['localhost'][0],
                    'key': w.certs['localhost'][1]},
                   {'name': 'example.test', 'certificate': w.certs['example.test'][0],
                    'key': w.certs['example.test'][1],
                    'module_settings': {'version': {'show_version': True, 'show_os': False}}}])
        super().setUpClass()

    @async_test
    async def test_global_settings(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await alice.iq('get', "<query xmlns='%s'/>" % NS_VERSION, to='localhost')
        query = q(r, NS_VERSION, 'query')
        self.assertEqual(query.find('{%s}name' % NS_VERSION).text, 'Chat Server')
        self.assertIsNone(query.find('{%s}version' % NS_VERSION), to_str(r))
        u = os.uname()
        self.assertEqual(query.find('{%s}os' % NS_VERSION).text, '%s %s' % (u.sysname, u.release))

    @async_test
    async def test_host_override(self):
        dave = await self.raw_login(DAVE, resource='r')
        r = await dave.iq('get', "<query xmlns='%s'/>" % NS_VERSION, to='example.test')
        query = q(r, NS_VERSION, 'query')
        self.assertEqual(query.find('{%s}name' % NS_VERSION).text, 'Chat Server')
        self.assertEqual(query.find('{%s}version' % NS_VERSION).text, server_version())
        self.assertIsNone(query.find('{%s}os' % NS_VERSION), to_str(r))


# ---------------------------------------------------------------------------------------------
# ping: the server pings idle clients


class PingIdleClients(ServerTestCase):
    """interval 10 s (the minimum), timeout 2 s: a silent client is pinged from its host; no
    answer closes its stream with <connection-timeout/>; any answer (an error too) keeps it."""
    INTERVAL, TIMEOUT = 10, 2
    config = with_modules(['ping'], {'ping': {'interval': '%ds' % INTERVAL,
                                              'timeout': '%ds' % TIMEOUT}})
    users = USERS

    async def wait_ping(self, c, limit):
        el = await c.wait_for(lambda e: is_request(e, NS_PING, 'ping'), timeout=limit,
                              what='a ping from the server')
        self.assertEqual(el.get('type'), 'get')
        self.assertEqual(el.get('from'), c.host)
        self.assertEqual(el.get('to'), c.jid)
        return el

    @async_test(timeout=120)
    async def test_idle_clients(self):
        limit = (self.INTERVAL * 1.25 + 5) * SLOW   # sweep every interval/4, plus slack

        async def silent():
            c = await self.raw_login(ALICE, resource='silent')
            t0 = time.monotonic()
            await self.wait_ping(c, limit)
            waited = time.monotonic() - t0
            self.assertGreaterEqual(waited, self.INTERVAL - 0.5)
            t1 = time.monotonic()
            await c.expect_stream_error('connection-timeout', timeout=(self.TIMEOUT + 5) * SLOW)
            self.assertGreaterEqual(time.monotonic() - t1, self.TIMEOUT - 0.5)

        async def answering():
            c = await self.raw_login(BOB, resource='answers')
            el = await self.wait_ping(c, limit)
            await c.send("<iq type='result' id='%s' to='%s'/>" % (el.get('id'), c.host))
            # the next ping is answered with an error: still alive
            el = await self.wait_ping(c, limit)
            await c.send("<iq type='error' id='%s' to='%s'><ping xmlns='%s'/><error type='cancel'>"
                         "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                         "</error></iq>" % (el.get('id'), c.host, NS_PING))
            await asyncio.sleep(self.TIMEOUT + 1)
            r = await c.iq('get', "<ping xmlns='%s'/>" % NS_PING, to=c.host)
            self.assertEqual(r.get('type'), 'result')
            self.assertIsNone(c.stream_error)

        async def slix():
            c = await login_slixmpp(self, DAVE, ['xep_0199'])   # answers pings by itself
            await asyncio.sleep(limit + self.TIMEOUT)
            self.assertTrue(c.authenticated and c.transport is not None, 'slixmpp was dropped')
            self.assertEqual(c.stream_errors, [])

        await asyncio.gather(silent(), answering(), slix())
        log = self.server.log_text(self._log_start)
        self.assertIn('did not answer a ping', log)


# ---------------------------------------------------------------------------------------------
# deferral, timers, posting and offloading (mod_test_defer)


class Deferral(ServerTestCase):
    config = with_modules(['test_defer'])
    users = USERS

    async def defer(self, c, how, ms=100, timeout=None):
        r = await c.iq('set', "<defer xmlns='%s' how='%s' ms='%d'/>" % (NS_DEFER, how, ms),
                       to='localhost', timeout=timeout)
        return r

    def done(self, r):
        d = q(r, NS_DEFER, 'done')
        self.assertIsNotNone(d, to_str(r))
        return d

    @async_test
    async def test_timer(self):
        alice = await self.raw_login(ALICE, resource='r')
        t0 = time.monotonic()
        d = self.done(await self.defer(alice, 'timer', 300))
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)
        self.assertEqual(d.get('worker'), d.get('started'))

    @async_test
    async def test_rearmed_timer_fires_at_the_new_time(self):
        alice = await self.raw_login(ALICE, resource='r')
        t0 = time.monotonic()
        d = self.done(await self.defer(alice, 'rearm', 200, timeout=20))
        self.assertLess(time.monotonic() - t0, 10)   # not the first arming's 60 s
        self.assertEqual(d.get('worker'), d.get('started'))

    @async_test
    async def test_stopped_timer_does_not_fire(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.defer(alice, 'stop', 400)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.done(r)

    @async_test
    async def test_post_to_another_worker_and_back(self):
        # several sessions, so that both workers start some of them
        clients = [await self.raw_login(ALICE, resource='p%d' % i) for i in range(6)]
        replies = await asyncio.gather(*(self.defer(c, 'post') for c in clients))
        for r in replies:
            d = self.done(r)
            self.assertEqual(d.get('worker'), d.get('started'), to_str(r))
            self.assertNotEqual(d.get('via'), d.get('started'), to_str(r))

    @async_test
    async def test_offload(self):
        alice = await self.raw_login(ALICE, resource='r')
        t0 = time.monotonic()
        d = self.done(await self.defer(alice, 'offload', 300))
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)
        self.assertEqual(d.get('worker'), d.get('started'))
        self.assertEqual(d.get('helper-thread'), 'other')

    @async_test
    async def test_offload_does_not_block_the_worker(self):
        # a long job on the helper pool; the same worker keeps serving other clients
        clients = [await self.raw_login(BOB, resource='o%d' % i) for i in range(4)]
        slow = [asyncio.ensure_future(self.defer(c, 'offload', 1500)) for c in clients[:2]]
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        for c in clients[2:]:
            r = await c.iq('get', "<now xmlns='%s'/>" % NS_DEFER, to='localhost')
            self.assertEqual(r.get('type'), 'result')
        self.assertLess(time.monotonic() - t0, 1.0 * SLOW)
        for f in slow:
            self.done(await f)

    @async_test
    async def test_pass_resumes_with_the_next_handler(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.defer(alice, 'pass')
        self.assertIsNotNone(q(r, NS_DEFER, 'passed'), to_str(r))

    @async_test
    async def test_error(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.defer(alice, 'error')
        self.assertEqual(stanza_error(r), ('modify', 'not-acceptable'), to_str(r))
        # the original payload is kept in the error
        self.assertIsNotNone(q(r, NS_DEFER, 'defer'), to_str(r))

    @async_test
    async def test_done_sends_nothing_and_releases_the_stream(self):
        alice = await self.raw_login(ALICE, resource='r')
        iid = new_id('done')
        await alice.send("<iq type='set' id='%s' to='localhost'><defer xmlns='%s' how='done' "
                         "ms='100'/></iq>" % (iid, NS_DEFER))
        r = await alice.iq('get', "<now xmlns='%s'/>" % NS_DEFER, to='localhost')
        self.assertEqual(r.get('type'), 'result')
        await asyncio.sleep(0.3)
        self.assertFalse([e for e in alice.history if e.get('id') == iid])

    @async_test
    async def test_in_order_behind_a_deferred_iq(self):
        alice = await self.raw_login(ALICE, resource='r')
        bob = await self.raw_login(BOB, resource='r')
        a, b = new_id('slow'), new_id('fast')
        await alice.send("<iq type='set' id='%s' to='localhost'><defer xmlns='%s' how='timer' "
                         "ms='500'/></iq><iq type='get' id='%s' to='localhost'><now xmlns='%s'/>"
                         "</iq>" % (a, NS_DEFER, b, NS_DEFER))
        await alice.send_message(bob.jid, 'after both')
        await alice.wait_for(lambda e: e.get('id') == b, what='the second reply')
        ids = [e.get('id') for e in alice.history if tag_is(e, 'iq')]
        self.assertLess(ids.index(a), ids.index(b), ids)
        await bob.wait_message('after both')

    async def replaced_while_deferred(self, resource):
        """A session that ends while its iq is deferred: the server ends it because a second
        login takes the same resource (sessions.conflict = replace). Returns the new session
        once the deferred iq was completed (the module logs that it found no session)."""
        old = await self.raw_login(ALICE, resource=resource, name='old')
        await old.send("<iq type='set' id='g-%s' to='localhost'><defer xmlns='%s' how='gone' "
                       "ms='1500'/></iq>" % (resource, NS_DEFER))
        await asyncio.sleep(0.2)
        new = await self.raw_login(ALICE, resource=resource, name='new')
        await old.expect_stream_error('conflict')
        deadline = time.monotonic() + 10 * SLOW
        while 'completed after its session ended' not in self.server.log_text(self._log_start):
            self.assertLess(time.monotonic(), deadline, 'the deferred iq never completed')
            await asyncio.sleep(0.1)
        return new

    @async_test
    async def test_completion_after_the_session_ended(self):
        new = await self.replaced_while_deferred('gone1')
        r = await new.iq('get', "<now xmlns='%s'/>" % NS_DEFER, to='localhost')
        self.assertEqual(r.get('type'), 'result')

    @async_test
    async def test_reply_to_an_ended_session_is_dropped(self):
        new = await self.replaced_while_deferred('gone2')
        await new.iq('get', "<now xmlns='%s'/>" % NS_DEFER, to='localhost')
        self.assertFalse([to_str(e) for e in new.history if e.get('id') == 'g-gone2'])

    @async_test
    async def test_client_vanishes_while_deferred(self):
        # While a stanza is deferred the stream is not read (RFC 6120 §10.1), so the server
        # notices the vanished client only when it writes the reply; nothing else must suffer.
        alice = await self.raw_login(ALICE, resource='vanish')
        await alice.send("<iq type='set' id='v1' to='localhost'><defer xmlns='%s' how='timer' "
                         "ms='300'/></iq>" % NS_DEFER)
        await asyncio.sleep(0.1)
        alice.abort()
        await asyncio.sleep(0.6)
        bob = await self.raw_login(BOB, resource='after')
        r = await bob.iq('get', "<now xmlns='%s'/>" % NS_DEFER, to='localhost')
        self.assertEqual(r.get('type'), 'result')

    @async_test
    async def test_many_concurrent(self):
        clients = [await self.raw_login(BOB, resource='c%d' % i) for i in range(8)]
        hows = ['timer', 'post', 'offload', 'pass']
        replies = await asyncio.gather(*(self.defer(c, hows[i % 4], 50 + 10 * i)
                                         for i, c in enumerate(clients)))
        for r in replies:
            self.assertEqual(r.get('type'), 'result', to_str(r))


# ---------------------------------------------------------------------------------------------
# statements and migrations (mod_test_db)


class Database(ServerTestCase):
    config = with_modules(['test_db'])
    users = USERS

    async def req(self, c, type, payload):
        return await c.iq(type, payload, to='localhost')

    def item(self, r):
        it = q(r, NS_DB, 'item')
        self.assertIsNotNone(it, to_str(r))
        return it

    @async_test
    async def test_migrations_recorded_and_applied(self):
        psql = self.world.cluster.psql
        self.assertEqual(psql("SELECT version FROM schema_versions WHERE owner = 'test_db' "
                              "ORDER BY version", db=self.server.db).split(), ['1', '2'])
        cols = psql("SELECT column_name FROM information_schema.columns WHERE table_name = "
                    "'test_db_items' ORDER BY column_name", db=self.server.db).split()
        self.assertEqual(cols, ['k', 'owner', 'updated', 'v'])

    @async_test
    async def test_put_get_update(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.req(alice, 'set', "<put xmlns='%s' key='k1'>v &amp; 1 &lt;x/&gt;</put>"
                           % NS_DB)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        d = q(r, NS_DB, 'put')
        self.assertEqual(d.get('worker'), d.get('started'))
        it = self.item(await self.req(alice, 'get', "<get xmlns='%s' key='k1'/>" % NS_DB))
        self.assertEqual((it.text, it.get('updated')), ('v & 1 <x/>', '0'))
        self.assertEqual(it.get('worker'), it.get('started'))
        await self.req(alice, 'set', "<put xmlns='%s' key='k1'>second</put>" % NS_DB)
        it = self.item(await self.req(alice, 'get', "<get xmlns='%s' key='k1'/>" % NS_DB))
        self.assertEqual((it.text, it.get('updated')), ('second', '1'))
        # what is stored is exactly the parameter: no SQL text was built from it
        stored = self.world.cluster.psql("SELECT v FROM test_db_items WHERE owner = '%s' AND "
                                         "k = 'k1'" % ALICE, db=self.server.db)
        self.assertEqual(stored.strip(), 'second')

    @async_test
    async def test_sql_null_and_hostile_text(self):
        alice = await self.raw_login(ALICE, resource='r')
        await self.req(alice, 'set', "<put xmlns='%s' key='n' null='1'/>" % NS_DB)
        it = self.item(await self.req(alice, 'get', "<get xmlns='%s' key='n'/>" % NS_DB))
        self.assertEqual(it.get('null'), '1')
        evil = "x'); DROP TABLE test_db_items; --"
        await self.req(alice, 'set', "<put xmlns='%s' key=\"%s\">%s</put>"
                       % (NS_DB, evil.replace("'", '&apos;'), evil.replace("'", '&apos;')))
        it = self.item(await self.req(alice, 'get', "<get xmlns='%s' key=\"%s\"/>"
                                      % (NS_DB, evil.replace("'", '&apos;'))))
        self.assertEqual(it.text, evil)

    @async_test
    async def test_missing_row_and_constraint_violation(self):
        alice = await self.raw_login(ALICE, resource='r')
        r = await self.req(alice, 'get', "<get xmlns='%s' key='none'/>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'), to_str(r))
        r = await self.req(alice, 'set', "<insert xmlns='%s' key='once'>1</insert>" % NS_DB)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.req(alice, 'set', "<insert xmlns='%s' key='once'>2</insert>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'conflict'), to_str(r))
        self.assertIn('23505', to_str(r))   # the SQLSTATE reached the module

    @async_test
    async def test_count_and_owners_are_separate(self):
        bob = await self.raw_login(BOB, resource='r')
        dave = await self.raw_login(DAVE, resource='r')
        for i in range(3):
            await self.req(bob, 'set', "<put xmlns='%s' key='c%d'>x</put>" % (NS_DB, i))
        r = await self.req(bob, 'get', "<count xmlns='%s'/>" % NS_DB)
        self.assertEqual(q(r, NS_DB, 'count').get('n'), '3')
        r = await self.req(dave, 'get', "<count xmlns='%s'/>" % NS_DB)
        self.assertEqual(q(r, NS_DB, 'count').get('n'), '0')
        r = await self.req(dave, 'get', "<get xmlns='%s' key='c0'/>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'))

    @async_test
    async def test_kv(self):
        alice = await self.raw_login(ALICE, resource='r')
        dave = await self.raw_login(DAVE, resource='r')
        r = await self.req(alice, 'get', "<kv-get xmlns='%s'/>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'), to_str(r))
        blob = "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN></vCard>"
        r = await self.req(alice, 'set', "<kv-put xmlns='%s'>%s</kv-put>"
                           % (NS_DB, harness.x(blob)))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.req(alice, 'get', "<kv-get xmlns='%s'/>" % NS_DB)
        self.assertEqual(q(r, NS_DB, 'value').text, blob)
        r = await self.req(dave, 'get', "<kv-get xmlns='%s'/>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'))
        await self.req(alice, 'set', "<kv-put xmlns='%s'>second</kv-put>" % NS_DB)
        r = await self.req(alice, 'get', "<kv-get xmlns='%s'/>" % NS_DB)
        self.assertEqual(q(r, NS_DB, 'value').text, 'second')
        r = await self.req(alice, 'set', "<kv-delete xmlns='%s'/>" % NS_DB)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        r = await self.req(alice, 'get', "<kv-get xmlns='%s'/>" % NS_DB)
        self.assertEqual(stanza_error(r), ('cancel', 'item-not-found'))

    @async_test
    async def test_restart_keeps_data_and_does_not_migrate_again(self):
        alice = await self.raw_login(ALICE, resource='r')
        await self.req(alice, 'set', "<put xmlns='%s' key='keep'>kept</put>" % NS_DB)
        await alice.close()
        self.server.stop()
        self.server.start()
        alice = await self.raw_login(ALICE, resource='r2')
        it = self.item(await self.req(alice, 'get', "<get xmlns='%s' key='keep'/>" % NS_DB))
        self.assertEqual(it.text, 'kept')
        n = self.world.cluster.psql("SELECT count(*) FROM schema_versions WHERE owner = "
                                    "'test_db'", db=self.server.db)
        self.assertEqual(n.strip(), '2')


# ---------------------------------------------------------------------------------------------
# per-session data (mod_test_session_data)


class SessionData(ServerTestCase):
    config = with_modules(['test_session_data'])
    users = USERS

    async def get(self, c):
        r = await c.iq('get', "<get xmlns='%s'/>" % NS_SD, to='localhost')
        d = q(r, NS_SD, 'data')
        self.assertIsNotNone(d, to_str(r))
        return d.get('jid'), d.get('value')

    async def counters(self, c):
        r = await c.iq('get', "<counters xmlns='%s'/>" % NS_SD, to='localhost')
        d = q(r, NS_SD, 'counters')
        return int(d.get('made')), int(d.get('freed'))

    async def wait_log(self, text, start):
        deadline = time.monotonic() + 10 * SLOW
        while text not in self.server.log_text(start):
            self.assertLess(time.monotonic(), deadline, 'not in the log: %r' % text)
            await asyncio.sleep(0.05)

    @async_test
    async def test_each_session_has_its_own(self):
        a1 = await self.raw_login(ALICE, resource='one')
        a2 = await self.raw_login(ALICE, resource='two')
        self.assertEqual(await self.get(a1), (a1.jid, 'initial'))
        await a1.iq('set', "<set xmlns='%s' value='v1'/>" % NS_SD, to='localhost')
        self.assertEqual(await self.get(a1), (a1.jid, 'v1'))
        self.assertEqual(await self.get(a2), (a2.jid, 'initial'))

    @async_test
    async def test_freed_when_replaced_and_at_session_end(self):
        start = self.server.log_offset()
        bob = await self.raw_login(BOB, resource='sd')
        made0, freed0 = await self.counters(bob)
        await bob.iq('set', "<replace xmlns='%s' value='second'/>" % NS_SD, to='localhost')
        await self.wait_log('freed session data of %s (value initial, replaced)' % bob.jid,
                            start)
        self.assertEqual(await self.get(bob), (bob.jid, 'second'))
        await bob.iq('set', "<set xmlns='%s' value='last'/>" % NS_SD, to='localhost')
        made1, freed1 = await self.counters(bob)
        self.assertEqual((made1 - made0, freed1 - freed0), (1, 1))
        await bob.close()
        await self.wait_log('freed session data of %s (value last, session end)' % bob.jid,
                            start)
        dave = await self.raw_login(DAVE, resource='x')
        made2, freed2 = await self.counters(dave)
        self.assertEqual(freed2 - freed1, 1)
        self.assertEqual(made2 - made1, 1)   # dave's own
        # once each: the record of an ended session is not freed again
        text = self.server.log_text(start)
        self.assertEqual(text.count('freed session data of %s (value last' % bob.jid), 1)

    @async_test
    async def test_freed_on_abrupt_disconnect(self):
        start = self.server.log_offset()
        c = await self.raw_login(ALICE, resource='abrupt')
        jid = c.jid
        c.abort()
        await self.wait_log('freed session data of %s (value initial, session end)' % jid, start)


# ---------------------------------------------------------------------------------------------
# a failing load() (mod_test_failload)


class FailingLoad(ServerTestCase):
    start_server = False
    users = USERS

    def new_server(self, fail):
        cfg = with_modules(['disco', 'test_failload'], {'test_failload': {'fail': fail}})
        return Server(self.world, 'failload', cfg)

    def test_start_up_stops_with_the_modules_message(self):
        s = self.new_server(True)
        s.start(wait=False)
        rc = s.wait_exit(timeout=30 * SLOW)
        log = s.log_text()
        self.assertNotEqual(rc, 0, log)
        self.assertIn('module test_failload: load failed: deliberate failure after registering '
                      '(test_failload)', log)
        s.check_log()   # no sanitizer report: what it registered was removed cleanly
        self.assertNotIn('ready with', log)

    @async_test
    async def test_control_same_module_loading(self):
        s = self.new_server(False)
        s.start()
        try:
            s.add_user(ALICE, USERS[ALICE])
            c = harness.RawClient(s.starttls_port, name='alice')
            await c.login('alice', USERS[ALICE], 'r')
            self.assertIsNotNone(q(c.features, NS_FAIL, 'leftover'))
            r = await c.iq('get', "<probe xmlns='%s'/>" % NS_FAIL, to='localhost')
            self.assertEqual(q(r, NS_FAIL, 'probe').get('loaded'), '1')
            r = await c.iq('get', "<query xmlns='%s'/>" % NS_INFO, to='localhost')
            self.assertIn(NS_FAIL, features(q(r, NS_INFO, 'query')))
            await c.close()
        finally:
            s.stop()


# ---------------------------------------------------------------------------------------------
# contrib/example_module: built against the installed headers only, then loaded


def run(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600, **kw)
    if r.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s' % (' '.join(argv), r.returncode, r.stdout))
    return r.stdout


class ExampleModule(ServerTestCase):
    """cmake --install into a temporary prefix; contrib/example_module copied out of the tree
    and built with PKG_CONFIG_PATH only; installed into the prefix's module directory; the
    installed stanzad loads it from there."""
    users = USERS
    start_server = False

    @classmethod
    def setUpClass(cls):
        cls.world = world()
        cls.tmp = tempfile.mkdtemp(prefix='stanzad-example-', dir=cls.world.base)
        prefix = os.path.join(cls.tmp, 'prefix')
        run(['cmake', '--install', BUILD_DIR, '--prefix', prefix])
        pcs = glob.glob(os.path.join(prefix, 'lib*', '**', 'stanzad.pc'), recursive=True)
        assert len(pcs) == 1, pcs
        cls.pc_dir = os.path.dirname(pcs[0])
        src = os.path.join(cls.tmp, 'mod_motd-src')
        shutil.copytree(os.path.join(SOURCE_DIR, 'contrib', 'example_module'), src)
        env = dict(os.environ, PKG_CONFIG_PATH=cls.pc_dir)
        env.pop('CFLAGS', None)
        build = os.path.join(cls.tmp, 'mod_motd-build')
        run(['cmake', '-S', src, '-B', build, '-DCMAKE_EXPORT_COMPILE_COMMANDS=ON'], env=env)
        run(['cmake', '--build', build, '--verbose'], env=env)
        run(['cmake', '--install', build], env=env)
        cls.build = build
        cls.module_dir = os.path.normpath(
            run(['pkg-config', '--variable=moduledir', 'stanzad'], env=env).strip())
        cls.prefix = prefix
        cls.stanzad = os.path.join(prefix, 'bin', 'stanzad')
        w = cls.world
        cls.config = {
            'server': {'module_dir': cls.module_dir},
            'modules': ['motd'],
            'module_settings': {'motd': {'text': 'Welcome, all!', 'interval': '1d'}},
            'hosts': [{'name': 'localhost', 'certificate': w.certs['localhost'][0],
                       'key': w.certs['localhost'][1]},
                      {'name': 'example.test', 'certificate': w.certs['example.test'][0],
                       'key': w.certs['example.test'][1],
                       'module_settings': {'motd': {'text': 'Hello example', 'interval': 0}}}],
        }
        super().setUpClass()
        # The installed daemon, not the build tree's (it finds the installed libstanzad).
        saved = harness.STANZAD_BIN
        harness.STANZAD_BIN = cls.stanzad
        try:
            cls.server.start()
            for jid, pw in cls.users.items():
                cls.server.add_user(jid, pw)
        except BaseException:
            cls.world.failed = True
            cls.server.kill()
            raise
        finally:
            harness.STANZAD_BIN = saved
        cls.start_server = True

    def test_built_from_installed_headers_only(self):
        import json
        with open(os.path.join(self.build, 'compile_commands.json')) as f:
            cmds = json.load(f)
        self.assertEqual(len(cmds), 1)
        args = shlex.split(cmds[0]['command'])
        dirs = []
        for i, a in enumerate(args):
            if a in ('-I', '-isystem'):
                dirs.append(args[i + 1])
            elif a.startswith('-I'):
                dirs.append(a[2:])
        # the include path is the prefix's, and nothing of the source tree is seen
        self.assertEqual([os.path.normpath(d) for d in dirs],
                         [os.path.join(self.prefix, 'include')])
        self.assertNotIn(SOURCE_DIR, cmds[0]['command'])
        syms = run(['nm', '-D', '--defined-only', os.path.join(self.module_dir, 'mod_motd.so')])
        self.assertEqual([ln.split()[-1] for ln in syms.splitlines() if ln.strip()],
                         ['sd_module_v1'])

    @async_test
    async def test_loaded_migrated_and_sends_once_per_interval(self):
        self.assertIn('module motd 1.0 loaded from %s' % os.path.join(self.module_dir,
                                                                      'mod_motd.so'),
                      self.server.log_text())
        psql = self.world.cluster.psql
        self.assertEqual(psql("SELECT version FROM schema_versions WHERE owner = 'motd'",
                              db=self.server.db).strip(), '1')
        alice = await self.raw_login(ALICE, resource='one')
        m = await alice.wait_for(lambda e: tag_is(e, 'message'), what='the message of the day')
        self.assertEqual(m.get('type'), 'headline')
        self.assertEqual(m.get('from'), 'localhost')
        self.assertEqual(m.get('to'), alice.jid)
        self.assertEqual(body_of(m), 'Welcome, all!')
        self.assertEqual(m.find('{%s}subject' % NS_CLIENT).text, 'Message of the day')
        await alice.close()
        # within the interval: not again
        alice = await self.raw_login(ALICE, resource='two')
        more = await alice.collect(1.0 * SLOW)
        self.assertFalse([e for e in more if tag_is(e, 'message')], [to_str(e) for e in more])
        self.assertEqual(psql("SELECT count(*) FROM motd_seen s JOIN accounts a "
                              "ON a.id = s.account_id WHERE a.username = 'alice' AND "
                              "a.host = 'localhost' AND s.seen_at > now() - interval '1 minute'",
                              db=self.server.db).strip(), '1')
        # the row goes with the account
        before = int(psql("SELECT count(*) FROM motd_seen", db=self.server.db))
        self.server.ctl('deluser', ALICE)
        after = int(psql("SELECT count(*) FROM motd_seen", db=self.server.db))
        self.assertEqual(after, before - 1)
        self.server.add_user(ALICE, USERS[ALICE])

    @async_test
    async def test_host_override_interval_zero(self):
        for i in range(2):
            dave = await self.raw_login(DAVE, resource='d%d' % i)
            m = await dave.wait_for(lambda e: tag_is(e, 'message'), what='the message')
            self.assertEqual(body_of(m), 'Hello example')
            self.assertEqual(m.get('from'), 'example.test')
            await dave.close()


if __name__ == '__main__':
    main()
