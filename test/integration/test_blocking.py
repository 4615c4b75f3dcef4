#!/usr/bin/python3
"""Simple communications blocking (XEP-0191, version 1.3 as stored in the XSF repository)
against mod_roster, written from the XEP.

Section numbers are those of XEP-0191 1.3: §3.1 discovery, §3.2 retrieving the block list,
§3.3 blocking (pushes, the errors for blocked stanzas in both directions, unavailable presence),
§3.4 unblocking, §3.5 unblocking all, §5 relationship to privacy lists (a user's own resources
are never blocked), §6 JID matching (full JID, bare JID, domain).
"""

import asyncio
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, tag_is, to_str, bare, attr,  # noqa
                     new_id, stanza_error, local, ns_of, Client, SLOW, NS_CLIENT)

NS_BLOCKING = 'urn:xmpp:blocking'
NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors'
NS_ROSTER = 'jabber:iq:roster'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_VERSION = 'jabber:iq:version'
PW = 'blocking pw'
QUIET = 0.5 * SLOW
CONFIG = {'modules': ['roster', 'disco']}

_accounts = itertools.count(1)


def is_block_push(el, kind=None):
    """An iq-set push of <block/> or <unblock/> (§3.3, §3.4, §3.5)."""
    if not (tag_is(el, 'iq') and el.get('type') == 'set' and len(el) == 1):
        return False
    child = el[0]
    if ns_of(child.tag) != NS_BLOCKING or local(child.tag) not in ('block', 'unblock'):
        return False
    return kind is None or local(child.tag) == kind


def item_jids(el):
    return sorted(i.get('jid') for i in el.findall('{%s}item' % NS_BLOCKING))


def is_roster_push(el):
    return (tag_is(el, 'iq') and el.get('type') == 'set'
            and el.find('{%s}query' % NS_ROSTER) is not None)


async def answer(c, iq):
    to = ' to=%s' % attr(iq.get('from')) if iq.get('from') else ''
    await c.send("<iq type='result' id=%s%s/>" % (attr(iq.get('id') or ''), to))


async def take_all(c):
    out = list(c.pending)
    c.pending.clear()
    for el in out:
        if is_block_push(el) or is_roster_push(el):
            await answer(c, el)
    return out


def from_account(el, jid):
    return bare(el.get('from') or '') == jid


class Party:
    def __init__(self, name, jid, c):
        self.name = name
        self.jid = jid
        self.c = c

    @property
    def full(self):
        return self.c.jid


class BlockingCase(ServerTestCase):
    config = CONFIG
    users = {}

    def new_account(self, prefix, host='localhost'):
        jid = '%s%d@%s' % (prefix, next(_accounts), host)
        self.server.add_user(jid, PW)
        return jid

    async def login(self, jid, resource='r', *, blocklist=False, available=True, roster=True,
                    show=None):
        c = await self.raw_login(jid, password=PW, resource=resource)
        p = Party('%s/%s' % (jid.split('@')[0], resource), jid, c)
        if roster:
            r = await c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
            self.assertEqual(r.get('type'), 'result', to_str(r))
        if blocklist:
            await self.blocklist(p)
        if available:
            await c.send('<presence>%s</presence>' % ('<show>%s</show>' % show if show else ''))
            await c.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == c.jid
                             and e.get('type') is None, what='own initial presence')
        return p

    async def quiet(self, *parties):
        await asyncio.gather(*(p.c.collect(QUIET) for p in parties))

    async def drain(self, *parties):
        await self.quiet(*parties)
        for p in parties:
            await take_all(p.c)

    # -- the protocol

    async def blocklist(self, p):
        """§3.2: the block list, checked for its exact form."""
        r = await p.c.iq('get', "<blocklist xmlns='%s'/>" % NS_BLOCKING)
        self.assertEqual(r.get('type'), 'result', to_str(r))
        self.assertEqual(len(r), 1, 'the result holds one <blocklist/>: ' + to_str(r))
        bl = r[0]
        self.assertEqual(bl.tag, '{%s}blocklist' % NS_BLOCKING, to_str(r))
        for it in bl:
            self.assertEqual(it.tag, '{%s}item' % NS_BLOCKING, to_str(r))
        return item_jids(bl)

    async def block(self, p, jids, *, raw=None):
        payload = raw if raw is not None else (
            "<block xmlns='%s'>%s</block>"
            % (NS_BLOCKING, ''.join('<item jid=%s/>' % attr(j) for j in jids)))
        return await p.c.iq('set', payload)

    async def unblock(self, p, jids=None):
        items = ''.join('<item jid=%s/>' % attr(j) for j in jids or ())
        return await p.c.iq('set', "<unblock xmlns='%s'>%s</unblock>" % (NS_BLOCKING, items))

    async def wait_block_push(self, p, kind, jids):
        el = await p.c.wait_for(lambda e: is_block_push(e, kind), what='a %s push' % kind)
        await answer(p.c, el)
        if el.get('to') is not None:
            self.assertEqual(bare(el.get('to')), p.jid, to_str(el))
        self.assertEqual(item_jids(el[0]), sorted(jids), 'the %s push: %s' % (kind, to_str(el)))
        return el

    def assertResult(self, r, what=''):
        self.assertEqual(r.get('type'), 'result', '%s: %s' % (what, to_str(r)))

    def assertError(self, el, condition, what=''):
        self.assertEqual(el.get('type'), 'error', '%s: %s' % (what, to_str(el)))
        self.assertEqual(stanza_error(el)[1], condition, '%s: %s' % (what, to_str(el)))

    def assertBlockedError(self, el, to, what=''):
        """§3.3: <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/>; returned,
        as in the XEP's example, from the address the stanza was sent to."""
        self.assertError(el, 'not-acceptable', what)
        err = el.find('{%s}error' % NS_CLIENT)
        self.assertIsNotNone(err.find('{%s}blocked' % NS_BLOCKING_ERRORS),
                             '%s: no <blocked xmlns=\'%s\'/>: %s'
                             % (what, NS_BLOCKING_ERRORS, to_str(el)))
        self.assertEqual(el.get('from'), to, '%s: %s' % (what, to_str(el)))

    async def message(self, snd, to, body):
        """Sends a chat message; returns its id."""
        mid = new_id('m')
        await snd.c.send_message(to, body, iid=mid)
        return mid

    async def wait_error(self, p, name, mid):
        return await p.c.wait_for(lambda e: tag_is(e, name) and e.get('id') == mid
                                  and e.get('type') == 'error', what='the error for %s' % mid)

    async def send_sub(self, p, to, stype):
        await p.c.send("<presence to=%s type=%s/>" % (attr(to), attr(stype)))

    async def mutual(self, a, b):
        """A mutual presence subscription (RFC 6121 §3.1), both sides settled."""
        async def push(p, sub):
            el = await p.c.wait_for(lambda e: is_roster_push(e) and any(
                i.get('subscription') == sub for i in e.iter('{%s}item' % NS_ROSTER)),
                what='roster push %s on %s' % (sub, p.name))
            await answer(p.c, el)
        await self.send_sub(a, b.jid, 'subscribe')
        await b.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == 'subscribe',
                           what='subscribe')
        await self.send_sub(b, a.jid, 'subscribed')
        await push(a, 'to')
        await self.send_sub(b, a.jid, 'subscribe')
        await a.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') == 'subscribe',
                           what='subscribe')
        await self.send_sub(a, b.jid, 'subscribed')
        await push(a, 'both')
        await push(b, 'both')
        for w, o in ((a, b), (b, a)):
            await w.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('type') is None
                               and e.get('from') == o.full, what='presence of %s' % o.name)
        await self.drain(a, b)

    def got_from(self, p, jid):
        """Everything p received from the account jid (any resource or the bare JID)."""
        return [e for e in p.c.history if from_account(e, jid)]


class Blocking(BlockingCase):

    @async_test
    async def test_disco_feature(self):
        """XEP-0191 §3.1: the server MUST return the feature "urn:xmpp:blocking"."""
        a = await self.login(self.new_account('u'), available=False)
        r = await a.c.iq('get', "<query xmlns='%s'/>" % NS_DISCO_INFO, to='localhost')
        self.assertResult(r)
        feats = [f.get('var') for f in r.iter('{%s}feature' % NS_DISCO_INFO)]
        self.assertIn(NS_BLOCKING, feats)

    @async_test
    async def test_empty_blocklist(self):
        """XEP-0191 §3.2: with nothing blocked the result is an empty <blocklist/>."""
        a = await self.login(self.new_account('u'), available=False)
        self.assertEqual(await self.blocklist(a), [])

    @async_test(timeout=120)
    async def test_block_unblock_and_pushes(self):
        """XEP-0191 §3.3 (block one JID, then several in one <block/>: IQ result and a push to
        every resource that requested the block list, none to the others), §3.2 (the list
        returns them), §3.4 (unblock one: result, push with the item), §3.5 (unblock all:
        result, push with an empty <unblock/>)."""
        u = self.new_account('u')
        r1 = await self.login(u, 'r1', blocklist=True)
        r2 = await self.login(u, 'r2', blocklist=True)
        r3 = await self.login(u, 'r3')          # never asks for the block list
        x1, x2, x3 = 'blk-one@localhost', 'blk-two@example.test', 'elsewhere.example'

        self.assertResult(await self.block(r1, [x1]), 'block one')
        for p in (r1, r2):
            await self.wait_block_push(p, 'block', [x1])
        self.assertResult(await self.block(r2, [x2, x3]), 'block several')
        for p in (r1, r2):
            await self.wait_block_push(p, 'block', [x2, x3])
        await self.quiet(r3)
        self.assertFalse([e for e in r3.c.history if is_block_push(e)],
                         'a resource that never requested the block list got a push')
        self.assertEqual(await self.blocklist(r3), sorted([x1, x2, x3]))

        self.assertResult(await self.unblock(r1, [x2]), 'unblock one')
        for p in (r1, r2, r3):
            await self.wait_block_push(p, 'unblock', [x2])
        self.assertEqual(await self.blocklist(r1), sorted([x1, x3]))

        self.assertResult(await self.unblock(r2), 'unblock all')
        for p in (r1, r2, r3):
            el = await self.wait_block_push(p, 'unblock', [])
            self.assertEqual(len(el[0]), 0, 'unblock-all push is empty: ' + to_str(el))
        self.assertEqual(await self.blocklist(r2), [])

    @async_test
    async def test_block_without_items_is_bad_request(self):
        """XEP-0191 §3.3: a <block/> without an <item/> MUST get <bad-request/>; nothing is
        pushed and the list is unchanged."""
        a = await self.login(self.new_account('u'), blocklist=True)
        r = await self.block(a, [])
        self.assertError(r, 'bad-request', 'empty <block/>')
        await self.quiet(a)
        self.assertFalse([e for e in a.c.history if is_block_push(e)])
        self.assertEqual(await self.blocklist(a), [])

    @async_test
    async def test_item_without_jid_is_bad_request(self):
        """XEP-0191 §10.1 (schema: the 'jid' attribute of <item/> is required) and §3.3 ("other
        standard XMPP stanza errors also apply"): an item without 'jid' does not conform to the
        schema, which RFC 6120 §8.3.3.1 answers with <bad-request/>."""
        a = await self.login(self.new_account('u'), blocklist=True)
        r = await self.block(a, None, raw="<block xmlns='%s'><item/></block>" % NS_BLOCKING)
        self.assertError(r, 'bad-request', '<item/> without jid')
        self.assertEqual(await self.blocklist(a), [])

    @async_test
    async def test_malformed_jids_are_jid_malformed(self):
        """XEP-0191 §3.3 ("other standard XMPP stanza errors also apply; see XMPP Core"): an
        item whose 'jid' is not a valid JID gets RFC 6120's <jid-malformed/> (§8.3.3.8), for
        block and unblock alike; the list is unchanged."""
        a = await self.login(self.new_account('u'), blocklist=True)
        for bad in ('@localhost', 'user@', 'a b@localhost', 'x@localhost/'):
            with self.subTest(jid=bad):
                self.assertError(await self.block(a, [bad]), 'jid-malformed', 'block %r' % bad)
                self.assertError(await self.unblock(a, [bad]), 'jid-malformed',
                                 'unblock %r' % bad)
        self.assertEqual(await self.blocklist(a), [])

    @async_test(timeout=120)
    async def test_presence_at_block_and_unblock(self):
        """XEP-0191 §3.3: blocking a contact that may see the user's presence sends it the
        user's unavailable presence (an unsubscribed one gets nothing); afterwards no presence
        goes either way. §3.4: unblocking sends the user's current presence (again only to a
        contact allowed to see it), and the contact's later presence is delivered again."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        b = await self.login(self.new_account('c'), 'b')
        stranger = await self.login(self.new_account('s'), 's')
        await self.mutual(a, b)

        self.assertResult(await self.block(a, [b.jid, stranger.jid]))
        un = await b.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == a.full
                                and e.get('type') == 'unavailable',
                                what="the user's unavailable presence at block time")
        self.assertIsNotNone(un)
        await self.drain(a, b, stranger)
        self.assertFalse(self.got_from(stranger, a.jid),
                         'a contact without a subscription got presence at block time')

        await a.c.send('<presence><show>away</show></presence>')
        await b.c.send('<presence><show>xa</show></presence>')
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.pending if from_account(e, a.jid)],
                         'the blocked contact got presence from the user')
        self.assertFalse([e for e in a.c.pending if from_account(e, b.jid)],
                         'the user got presence from the blocked contact')
        await self.drain(a, b)

        self.assertResult(await self.unblock(a, [b.jid, stranger.jid]))
        cur = await b.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == a.full
                                 and e.get('type') is None,
                                 what="the user's current presence after unblock")
        show = cur.find('{%s}show' % NS_CLIENT)
        self.assertEqual(show is not None and show.text, 'away',
                         'not the current presence: ' + to_str(cur))
        await b.c.send('<presence><show>dnd</show></presence>')
        await a.c.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == b.full
                           and e.find('{%s}show' % NS_CLIENT) is not None
                           and e.find('{%s}show' % NS_CLIENT).text == 'dnd',
                           what="the contact's presence after unblock")
        await self.quiet(stranger)
        self.assertFalse(self.got_from(stranger, a.jid),
                         'a contact without a subscription got presence at unblock time')

    @async_test(timeout=120)
    async def test_new_sessions_exchange_no_presence_while_blocked(self):
        """XEP-0191 §3.3: no stanza from the blocked JID is delivered to the user and the user
        appears offline to it — also through the presence of new sessions on either side
        (initial presence broadcast and the probes it triggers, RFC 6121 §4.2.2, §4.3)."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        b = await self.login(self.new_account('c'), 'b')
        await self.mutual(a, b)
        self.assertResult(await self.block(a, [b.jid]))
        await self.drain(a, b)
        a2 = await self.login(a.jid, 'a2')
        b2 = await self.login(b.jid, 'b2')
        await self.quiet(a, a2, b, b2)
        for p in (a, a2):
            leaked = [e for e in p.c.pending if from_account(e, b.jid)]
            self.assertFalse(leaked, 'stanzas of the blocked contact reached %s: %s'
                             % (p.name, [to_str(e) for e in leaked]))
        for p in (b, b2):
            leaked = [e for e in p.c.pending if from_account(e, a.jid)
                      and tag_is(e, 'presence') and e.get('type') is None]
            self.assertFalse(leaked, 'the blocked contact (%s) got available presence of the '
                             'user: %s' % (p.name, [to_str(e) for e in leaked]))

    @async_test(timeout=120)
    async def test_stanzas_from_a_blocked_jid(self):
        """XEP-0191 §3.3: nothing from a blocked JID reaches the user. Messages get an error
        (SHOULD be <service-unavailable/>); iq get/set MUST get an error (SHOULD be
        <service-unavailable/>), other iqs are dropped silently; presence of any kind
        (including subscription requests) gets no answer and no error. Others are unaffected,
        and the blocked JID can still talk to others."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        bj = self.new_account('c')
        b1 = await self.login(bj, 'b1')
        b2 = await self.login(bj, 'b2')
        carol = await self.login(self.new_account('o'), 'o')
        self.assertResult(await self.block(a, [bj]))
        await self.drain(a, b1, b2, carol)

        for snd, to in ((b1, a.jid), (b2, a.full)):
            mid = await self.message(snd, to, 'let me in')
            err = await self.wait_error(snd, 'message', mid)
            self.assertError(err, 'service-unavailable', 'message to %s' % to)
        for itype in ('get', 'set'):
            iid = new_id('iq')
            await b1.c.send("<iq type='%s' id=%s to=%s><query xmlns='%s'/></iq>"
                            % (itype, attr(iid), attr(a.full), NS_VERSION))
            self.assertError(await self.wait_error(b1, 'iq', iid), 'service-unavailable',
                             'iq ' + itype)
        await b1.c.send("<iq type='result' id='res-1' to=%s/>" % attr(a.full))
        await b1.c.send("<presence to=%s><show>chat</show></presence>" % attr(a.full))
        await b1.c.send("<presence to=%s type='subscribe'/>" % attr(a.jid))

        mid = await self.message(carol, a.full, 'carol is not blocked')
        await a.c.wait_message('carol is not blocked')
        await self.message(b2, carol.full, 'bob can talk to carol')
        await carol.c.wait_message('bob can talk to carol')
        await self.quiet(a, b1, b2)
        self.assertFalse(self.got_from(a, bj), 'stanzas from the blocked JID reached the user: '
                         + str([to_str(e) for e in self.got_from(a, bj)]))
        extra = [e for e in b1.c.pending if e.get('type') == 'error']
        self.assertFalse(extra, 'errors for an iq result or presence (must be silent): %s'
                         % [to_str(e) for e in extra])

    @async_test
    async def test_stanzas_to_a_blocked_jid(self):
        """XEP-0191 §3.3: the user's own stanzas to a blocked JID are not routed and get
        <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/> (messages to the
        bare and the full JID, an iq)."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        b = await self.login(self.new_account('c'), 'b')
        self.assertResult(await self.block(a, [b.jid]))
        for to in (b.jid, b.full):
            mid = await self.message(a, to, 'can you hear me now?')
            self.assertBlockedError(await self.wait_error(a, 'message', mid), to,
                                    'message to %s' % to)
        r = await a.c.iq('get', "<query xmlns='%s'/>" % NS_VERSION, to=b.full)
        self.assertBlockedError(r, b.full, 'iq to the blocked JID')
        await self.quiet(b)
        self.assertFalse(self.got_from(b, a.jid), 'stanzas reached the blocked JID')

    @async_test
    async def test_directed_presence_to_a_blocked_jid(self):
        """XEP-0191 §3.3: "If the user attempts to send an outbound stanza to the JID, the
        user's server MUST NOT route the stanza ... but instead MUST return a <not-acceptable/>
        error": directed presence is an outbound stanza too."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        b = await self.login(self.new_account('c'), 'b')
        self.assertResult(await self.block(a, [b.jid]))
        await a.c.send("<presence to=%s id='dp1'><show>chat</show></presence>" % attr(b.full))
        err = await self.wait_error(a, 'presence', 'dp1')
        self.assertBlockedError(err, b.full, 'directed presence')
        await self.quiet(b)
        self.assertFalse(self.got_from(b, a.jid), 'the directed presence was routed')

    @async_test(timeout=120)
    async def test_domain_block_matches_every_account_there(self):
        """XEP-0191 §6: a <domain> item matches the domain and any user@domain: a user at the
        blocked domain is blocked both ways, one elsewhere is not; unblocking the domain lets
        the messages through again."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        dave = await self.login(self.new_account('d', 'example.test'), 'd')
        carol = await self.login(self.new_account('o'), 'o')
        self.assertResult(await self.block(a, ['example.test']))
        mid = await self.message(dave, a.jid, 'from the blocked domain')
        self.assertError(await self.wait_error(dave, 'message', mid), 'service-unavailable')
        mid = await self.message(a, dave.full, 'to the blocked domain')
        self.assertBlockedError(await self.wait_error(a, 'message', mid), dave.full)
        await self.message(carol, a.full, 'from localhost')
        await a.c.wait_message('from localhost')
        self.assertFalse([e for e in self.got_from(a, dave.jid) if e.get('type') != 'error'],
                         'a stanza from the blocked domain reached the user')
        self.assertResult(await self.unblock(a, ['example.test']))
        await self.message(dave, a.full, 'after the unblock')
        await a.c.wait_message('after the unblock')

    @async_test(timeout=120)
    async def test_full_jid_block_matches_only_that_resource(self):
        """XEP-0191 §6: a <user@domain/resource> item matches only that resource: the other
        resource of the same account is not blocked, either way."""
        a = await self.login(self.new_account('u'), 'a', blocklist=True)
        bj = self.new_account('c')
        b1 = await self.login(bj, 'one')
        b2 = await self.login(bj, 'two')
        self.assertResult(await self.block(a, [b1.full]))
        self.assertEqual(await self.blocklist(a), [b1.full])
        mid = await self.message(b1, a.full, 'from the blocked resource')
        self.assertError(await self.wait_error(b1, 'message', mid), 'service-unavailable')
        await self.message(b2, a.full, 'from the other resource')
        await a.c.wait_message('from the other resource')
        mid = await self.message(a, b1.full, 'to the blocked resource')
        self.assertBlockedError(await self.wait_error(a, 'message', mid), b1.full)
        await self.message(a, b2.full, 'to the other resource')
        await b2.c.wait_message('to the other resource')
        self.assertFalse([e for e in a.c.history if e.get('from') == b1.full
                          and e.get('type') != 'error'],
                         'a stanza from the blocked resource reached the user')

    @async_test
    async def test_own_resources_are_never_blocked(self):
        """XEP-0191 §5: "An implementation MUST NOT block communications from one of a user's
        resources to another, even if the user happens to define a rule that would otherwise
        result in that behavior": with the user's own bare JID in the list (whether
        or not the server accepts such items), the resources still talk to each other."""
        u = self.new_account('u')
        r1 = await self.login(u, 'one', blocklist=True)
        r2 = await self.login(u, 'two')
        await self.block(r1, [u])
        await self.message(r1, r2.full, 'to myself')
        await r2.c.wait_message('to myself')
        await self.message(r2, r1.full, 'and back')
        await r1.c.wait_message('and back')


class SlixmppBlocking(BlockingCase):

    @async_test
    async def test_slixmpp_blocking_plugin(self):
        """XEP-0191 §3.1-§3.4 through slixmpp's xep_0191 plugin: the feature is discovered, the
        list is fetched, a block and an unblock are answered and pushed (slixmpp's 'blocked' and
        'unblocked' events), and the blocked JID's message is refused meanwhile."""
        u, bj = self.new_account('u'), self.new_account('c')
        c = self.track(Client(u + '/slix', PW))
        c.register_plugin('xep_0030')
        c.register_plugin('xep_0191')
        events = []
        c.add_event_handler('blocked', lambda iq: events.append('blocked'))
        c.add_event_handler('unblocked', lambda iq: events.append('unblocked'))
        await c.login(self.server.starttls_port)
        info = await c['xep_0030'].get_info(jid='localhost')
        self.assertIn(NS_BLOCKING, info['disco_info']['features'])
        r = await c['xep_0191'].get_blocked()
        self.assertEqual(set(r['blocklist']['items']), set())
        await c['xep_0191'].block(bj)
        await c._wait(lambda: 'blocked' in events, None, 'the block push')
        r = await c['xep_0191'].get_blocked()
        self.assertEqual({str(j) for j in r['blocklist']['items']}, {bj})
        b = await self.login(bj, 'b')
        mid = await self.message(b, u + '/slix', 'blocked?')
        self.assertError(await self.wait_error(b, 'message', mid), 'service-unavailable')
        await c['xep_0191'].unblock(bj)
        await c._wait(lambda: 'unblocked' in events, None, 'the unblock push')
        r = await c['xep_0191'].get_blocked()
        self.assertEqual(set(r['blocklist']['items']), set())
        await self.message(b, u + '/slix', 'unblocked')
        await c.wait_message('unblocked')


class Persistence(BlockingCase):

    @async_test(timeout=180)
    async def test_blocklist_survives_reconnect_and_restart(self):
        """XEP-0191 §3.3: "the duration of the block is potentially unlimited and applies across
        sessions": the list and its effect survive a new session and a server restart (it is
        kept in PostgreSQL, in a table of the roster module)."""
        u = self.new_account('u')
        target = self.new_account('c')
        proof = 'stored-proof-%d@far.example' % next(_accounts)   # in no other table
        items = sorted([target, proof, 'far.example'])
        a = await self.login(u, 'one', blocklist=True)
        self.assertResult(await self.block(a, items))
        await a.c.close()

        a = await self.login(u, 'two', blocklist=True)
        self.assertEqual(await self.blocklist(a), items)
        await a.c.close()

        self.server.stop()
        self.server.start()
        a = await self.login(u, 'three', blocklist=True)
        self.assertEqual(await self.blocklist(a), items)
        t = await self.login(target, 't')
        mid = await self.message(t, a.full, 'still blocked?')
        self.assertError(await self.wait_error(t, 'message', mid), 'service-unavailable')
        tables = self.world.cluster.psql(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'roster%'",
            db=self.server.db).split()
        self.assertTrue(tables, 'no table of the roster module in the database')
        self.assertIn(proof.split('@')[0], self.world.cluster.dump(self.server.db),
                      'the blocked JID is not stored in PostgreSQL')


if __name__ == '__main__':
    main()
