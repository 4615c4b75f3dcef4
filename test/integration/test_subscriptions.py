#!/usr/bin/python3
"""Presence subscriptions (RFC 6121 §3 and Appendix A) against mod_roster, written from the RFC.

Every row of the four outbound tables (A.2) is exercised, and with it the row of the inbound
table (A.3) that the routed stanza reaches. Both accounts live on this server, so
one stanza a user sends is processed twice: by the user's server as an outbound stanza (tables
A.2.x, the user's state S) and by the contact's server as an inbound stanza (tables A.3.x, the
contact's state, which is the mirror of S: To <-> From, Pending Out <-> Pending In). Each
transition test therefore checks one A.2 row and one A.3 row:

  1. two fresh accounts log in (roster requested, initial presence sent: each resource is
     interested and available, §3.1 implementation note);
  2. a short script of subscription stanzas between them sets up the state S;
  3. the user sends the stanza; the expected roster pushes (subscription / ask / approved),
     deliveries and availability presence are waited for, then, after a quiet period, nothing
     else may have arrived: no delivery the table marks M.N./S.N., no push that disagrees with
     the new state, no available presence from someone the receiver is not subscribed to;
  4. a roster get on both sides must show the new states;
  5. "Pending In" is invisible in the roster (A.1 #3), so it is probed: the side sends
     presence of type "subscribed"; by A.2.3 / §3.4.2 that approves (subscription gains
     "from") exactly when a request is pending, and is otherwise a pre-approval.

Between two consistent rosters on one server, some A.3 rows are never reached by a routed
stanza: an inbound "subscribed" in "None", "None + Pending In" or "From", an inbound
"unsubscribed" in "None", "None + Pending In" or "From" (the sending side does not route them:
A.2.3 M.N., A.2.4 S.N.). Some come up through the contact server's auto-replies (A.3.1 [2],
A.3.2 [1]), whose non-delivery the quiet-period checks cover; the rest would need a
desynchronised pair, i.e. a remote server.

The expected results are computed by a small model of the tables below (outbound(), inbound()),
written from the RFC text; the other classes cover pre-approval (§3.4), requests kept for an
offline contact (§3.1.3), roster removal (§2.5.2) and presence broadcast after subscription
changes (§3.1.5, §3.2.2, §3.3.3, §4).
"""

import asyncio
import dataclasses
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, tag_is, to_str, bare, attr, x,  # noqa
                     new_id, stanza_error, Client, SLOW, TIMEOUT, NS_CLIENT)

NS_ROSTER = 'jabber:iq:roster'
NS_PREAPPROVAL = 'urn:xmpp:features:pre-approval'
NS_NICK = 'http://jabber.org/protocol/nick'
NS_EXT = 'urn:example:stanzad:subscription-extension'
SUB_TYPES = ('subscribe', 'subscribed', 'unsubscribe', 'unsubscribed')
PW = 'subscription pw'
QUIET = 0.3 * SLOW          # how long "nothing else arrives" is watched for
CONFIG = {'modules': ['roster', 'disco']}

_accounts = itertools.count(1)

# ---------------------------------------------------------------------------------------------
# The model of RFC 6121 Appendix A

MUST, MUST_NOT, SHOULD_NOT = 'MUST', 'M.N.', 'S.N.'


def _sub(to, frm):
    return {(False, False): 'none', (True, False): 'to', (False, True): 'from',
            (True, True): 'both'}[(bool(to), bool(frm))]


@dataclasses.dataclass
class View:
    """One account's view of the other: the Appendix A state (subscription, Pending Out, Pending
    In), whether a roster item exists (None + Pending In without one is not in the roster, A.1
    #3) and the pre-approval flag (None = either value is acceptable)."""
    sub: str = 'none'
    po: bool = False
    pi: bool = False
    item: bool = False
    approved: object = False

    def has_to(self):
        return self.sub in ('to', 'both')

    def has_from(self):
        return self.sub in ('from', 'both')

    def copy(self, **kw):
        return dataclasses.replace(self, **kw)

    def visible(self):
        """What a roster get shows: None (no item) or (subscription, ask, approved)."""
        if not self.item:
            return None
        return (self.sub, 'subscribe' if self.po else None, self.approved)

    def state_name(self):
        return STATE_OF[(self.sub, self.po, self.pi)]

    def mirror(self):
        inv = {'none': 'none', 'to': 'from', 'from': 'to', 'both': 'both'}
        return (inv[self.sub], self.pi, self.po)


STATES = {                      # Appendix A.1, in its order
    'none': ('none', False, False),
    'none_pending_out': ('none', True, False),
    'none_pending_in': ('none', False, True),
    'none_pending_out_in': ('none', True, True),
    'to': ('to', False, False),
    'to_pending_in': ('to', False, True),
    'from': ('from', False, False),
    'from_pending_out': ('from', True, False),
    'both': ('both', False, False),
}
STATE_OF = {v: k for k, v in STATES.items()}
RFC_NAME = {
    'none': '"None"', 'none_pending_out': '"None + Pending Out"',
    'none_pending_in': '"None + Pending In"', 'none_pending_out_in': '"None + Pending Out+In"',
    'to': '"To"', 'to_pending_in': '"To + Pending In"', 'from': '"From"',
    'from_pending_out': '"From + Pending Out"', 'both': '"Both"',
}
OUT_TABLE = {'subscribe': 'A.2.1 (Table 2)', 'unsubscribe': 'A.2.2 (Table 3)',
             'subscribed': 'A.2.3 (Table 4)', 'unsubscribed': 'A.2.4 (Table 5)'}
IN_TABLE = {'subscribe': 'A.3.1 (Table 6)', 'unsubscribe': 'A.3.2 (Table 7)',
            'subscribed': 'A.3.3 (Table 8)', 'unsubscribed': 'A.3.4 (Table 9)'}


def outbound(stype, v):
    """(route, new view) for a stanza the user sends: tables A.2.1-A.2.4 and §3.4.2."""
    if stype == 'subscribe':                    # A.2.1: always routed
        if v.has_to():
            return MUST, v.copy()
        return MUST, v.copy(po=True, item=True)
    if stype == 'unsubscribe':                  # A.2.2: always routed
        return MUST, v.copy(po=False, sub=_sub(False, v.has_from()))
    if stype == 'subscribed':                   # A.2.3
        if v.pi:                                # approval (§3.1.5)
            return MUST, v.copy(pi=False, sub=_sub(v.has_to(), True), item=True)
        if v.has_from():                        # §3.4.2 #1: silently ignored
            return MUST_NOT, v.copy()
        return MUST_NOT, v.copy(approved=True, item=True)      # pre-approval, §3.4.2 #3, #4
    if stype == 'unsubscribed':                 # A.2.4
        if v.pi or v.has_from():
            return MUST, v.copy(pi=False, sub=_sub(v.has_to(), False))
        return SHOULD_NOT, v.copy(approved=False)              # cancels a pre-approval
    raise ValueError(stype)


def inbound(stype, v):
    """(deliver, new view, auto-reply type or None) for a stanza the contact's server receives:
    tables A.3.1-A.3.4 and §3.4.2."""
    if stype == 'subscribe':                    # A.3.1
        if v.has_from():
            return SHOULD_NOT, v.copy(), 'subscribed'          # [2]
        if v.pi:
            return SHOULD_NOT, v.copy(), None
        if v.approved is True:                  # §3.4.2: auto-approved, not delivered
            return MUST_NOT, v.copy(sub=_sub(v.has_to(), True), approved=None), 'subscribed'
        return MUST, v.copy(pi=True), None
    if stype == 'unsubscribe':                  # A.3.2
        if v.pi or v.has_from():
            return MUST, v.copy(pi=False, sub=_sub(v.has_to(), False)), 'unsubscribed'
        return SHOULD_NOT, v.copy(), None
    if stype == 'subscribed':                   # A.3.3
        if v.po:
            return MUST, v.copy(po=False, sub=_sub(True, v.has_from())), None
        return SHOULD_NOT, v.copy(), None
    if stype == 'unsubscribed':                 # A.3.4
        if v.po or v.has_to():
            return MUST, v.copy(po=False, sub=_sub(False, v.has_from())), None
        return SHOULD_NOT, v.copy(), None
    raise ValueError(stype)


# How each state is reached, from the user's ('a') perspective, starting with no relation.
SCRIPTS = {
    'none': [],
    'none_pending_out': [('a', 'subscribe')],
    'none_pending_in': [('b', 'subscribe')],
    'none_pending_out_in': [('a', 'subscribe'), ('b', 'subscribe')],
    'to': [('a', 'subscribe'), ('b', 'subscribed')],
    'to_pending_in': [('a', 'subscribe'), ('b', 'subscribed'), ('b', 'subscribe')],
    'from': [('b', 'subscribe'), ('a', 'subscribed')],
    'from_pending_out': [('b', 'subscribe'), ('a', 'subscribed'), ('a', 'subscribe')],
    'both': [('a', 'subscribe'), ('b', 'subscribed'), ('b', 'subscribe'), ('a', 'subscribed')],
}

# ---------------------------------------------------------------------------------------------
# Stanza helpers


def is_push(el, about=None):
    """A roster push (§2.1.6), optionally about one JID."""
    if not (tag_is(el, 'iq') and el.get('type') == 'set'):
        return False
    q = el.find('{%s}query' % NS_ROSTER)
    if q is None:
        return False
    return about is None or any(i.get('jid') == about
                                for i in q.findall('{%s}item' % NS_ROSTER))


def push_items(el):
    return el.find('{%s}query' % NS_ROSTER).findall('{%s}item' % NS_ROSTER)


def is_sub_presence(el, frm, stype=None):
    """A subscription-related presence whose sender is frm (bare or any of its resources)."""
    return (tag_is(el, 'presence') and bare(el.get('from') or '') == frm
            and el.get('type') in SUB_TYPES and (stype is None or el.get('type') == stype))


def is_availability(el, frm_bare, ptype='any'):
    """Available (ptype None) or unavailable presence from one of frm_bare's resources (a bare
    'from' is not counted: §3.1.3 #3 allows an unavailable from the bare JID as an
    acknowledgement)."""
    if not tag_is(el, 'presence'):
        return False
    f = el.get('from') or ''
    if not f.startswith(frm_bare + '/'):
        return False
    t = el.get('type')
    if ptype == 'any':
        return t in (None, 'unavailable')
    return t == ptype


def item_state(it):
    """(subscription, ask, approved) of a roster item element."""
    return (it.get('subscription', 'none'), it.get('ask'),
            it.get('approved', 'false') in ('true', '1'))


def index_in(c, el):
    for i, e in enumerate(c.history):
        if e is el:
            return i
    raise AssertionError('element not in history')


async def answer(c, iq):
    """The client's reply to a roster push (§2.1.6: the client MUST reply)."""
    to = ' to=%s' % attr(iq.get('from')) if iq.get('from') else ''
    await c.send("<iq type='result' id=%s%s/>" % (attr(iq.get('id') or ''), to))


async def take_all(c):
    """Removes and returns everything pending; roster pushes among them are answered."""
    out = list(c.pending)
    c.pending.clear()
    for el in out:
        if is_push(el):
            await answer(c, el)
    return out


async def roster_get(c):
    r = await c.iq('get', "<query xmlns='%s'/>" % NS_ROSTER)
    if r.get('type') != 'result':
        raise AssertionError('%s: roster get failed: %s' % (c.name, to_str(r)))
    q = r.find('{%s}query' % NS_ROSTER)
    if q is None:
        raise AssertionError('%s: roster result without <query/>: %s' % (c.name, to_str(r)))
    return {i.get('jid'): i for i in q.findall('{%s}item' % NS_ROSTER)}


class Party:
    """One logged-in resource of an account."""

    def __init__(self, name, jid, c):
        self.name = name
        self.jid = jid          # bare
        self.c = c

    @property
    def full(self):
        return self.c.jid

    def __repr__(self):
        return '<%s %s>' % (self.name, self.full)


class SubscriptionCase(ServerTestCase):
    config = CONFIG
    users = {}

    # -- accounts and sessions

    def new_account(self, prefix):
        jid = '%s%d@localhost' % (prefix, next(_accounts))
        self.server.add_user(jid, PW)
        return jid

    async def login(self, jid, resource='r', *, roster=True, available=True, name=None,
                    show=None, status=None):
        """A RawClient session; roster requested (an interested resource) and initial presence
        sent (an available resource) unless told otherwise."""
        c = await self.raw_login(jid, password=PW, resource=resource,
                                 name=name or '%s/%s' % (jid, resource))
        if roster:
            await roster_get(c)
        if available:
            inner = ''
            if show:
                inner += '<show>%s</show>' % show
            if status:
                inner += '<status>%s</status>' % x(status)
            await c.send('<presence>%s</presence>' % inner)
            # initial presence is reflected to the sender (RFC 6121 §4.2.2): when it is back,
            # the server has processed it
            await c.wait_for(lambda e: tag_is(e, 'presence') and e.get('from') == c.jid
                             and e.get('type') is None, what='own initial presence')
        return Party(name or jid.split('@')[0], jid, c)

    async def pair(self, **kw):
        a = await self.login(self.new_account('u'), name='user', **kw)
        b = await self.login(self.new_account('c'), name='contact', **kw)
        return a, b

    async def quiet(self, *parties, duration=QUIET):
        await asyncio.gather(*(p.c.collect(duration) for p in parties))

    async def drain(self, *parties, duration=QUIET):
        """Waits for a quiet period, then forgets whatever arrived (pushes answered)."""
        await self.quiet(*parties, duration=duration)
        for p in parties:
            await take_all(p.c)

    async def wait_push(self, p, about, expect=None, timeout=None, what=''):
        """The next roster push about `about`; answered; its single item returned. `expect` is
        (subscription, ask, approved) with approved None meaning either."""
        el = await p.c.wait_for(lambda e: is_push(e, about) and (
            expect is None or self.state_matches(push_items(e)[0], expect)),
            timeout, 'a roster push about %s%s %s' % (about, '' if expect is None
                                                      else ' with %r' % (expect,), what))
        await answer(p.c, el)
        items = push_items(el)
        self.assertEqual(len(items), 1, 'a roster push carries exactly one item (RFC 6121 '
                                        '§2.1.6): %s' % to_str(el))
        self.assertIn(el.get('from'), (None, p.jid),
                      'a roster push comes from the account itself (§2.1.6): %s' % to_str(el))
        return el, items[0]

    @staticmethod
    def state_matches(it, expect):
        sub, ask, approved = item_state(it)
        esub, eask, eapproved = expect
        return (sub, ask) == (esub, eask) and (eapproved is None or approved == eapproved)

    def assertRosterItem(self, items, jid, expect, what):
        it = items.get(jid)
        if expect is None:
            self.assertIsNone(it, '%s: no roster item for %s expected (RFC 6121 A.1), got %s'
                              % (what, jid, to_str(it) if it is not None else ''))
            return
        self.assertIsNotNone(it, '%s: roster item for %s missing (expected %r)'
                             % (what, jid, expect))
        self.assertTrue(self.state_matches(it, expect),
                        '%s: roster item %s, expected (subscription, ask, approved) = %r'
                        % (what, to_str(it), expect))

    async def send_sub(self, p, to, stype, extra=''):
        await p.c.send('<presence to=%s type=%s id=%s>%s</presence>'
                       % (attr(to), attr(stype), attr(new_id('s')), extra))

    # -- one subscription stanza, with everything the tables say must follow

    async def step(self, snd, rcv, sv, rv, stype, *, strict):
        """snd sends presence of type stype to rcv's bare JID; sv and rv are their views of
        each other before. Waits for every consequence the model predicts; with strict, also
        checks that nothing else arrives. Returns the new (sv, rv)."""
        route, sv_out = outbound(stype, sv)
        deliver, rv2, auto = MUST_NOT, rv.copy(), None
        if route == MUST:
            deliver, rv2, auto = inbound(stype, rv)
        # RFC 6121 contradicts itself on one case: an inbound "unsubscribe" whose only effect
        # is to drop a pending inbound request. A.3.2 says the state changes and the stanza
        # MUST be delivered; §3.3.3 says only 'from'/'both' lead to delivery (and that a kept
        # request from someone not in the roster is simply forgotten). The state change is
        # required (both agree for the no-item case, A.3.2 for all); the delivery is accepted
        # either way.
        delivery_optional = (stype == 'unsubscribe' and route == MUST and rv.pi
                             and not rv.has_from())
        if delivery_optional:
            deliver = 'either'
        sv2, auto_deliver = sv_out, False
        if auto is not None:
            d2, sv2, _ = inbound(auto, sv_out)
            auto_deliver = d2 == MUST
        ctx = ('%s (%s) sends %s to %s (%s)'
               % (snd.name, sv.state_name(), stype, rcv.name, rv.state_name()))

        await self.send_sub(snd, rcv.jid, stype)

        # the sender's roster push (§3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4.2)
        if sv2.visible() != sv.visible() and sv2.visible() is not None:
            await self.wait_push(snd, rcv.jid, sv2.visible(), what='(%s)' % ctx)
        # delivery to the receiver, stamped with the sender's bare JID (§3 implementation note)
        delivered = None
        if deliver == MUST:
            delivered = await rcv.c.wait_for(lambda e: is_sub_presence(e, snd.jid, stype),
                                             what='the %s from %s (%s)' % (stype, snd.jid, ctx))
            self.assertEqual(delivered.get('from'), snd.jid,
                             'subscription stanzas are stamped with the bare JID (RFC 6121 §3): '
                             + to_str(delivered))
        # the receiver's roster push, after the delivery (§3.1.6 #1, §3.2.3 #1, §3.3.3 #1)
        if rv2.visible() != rv.visible() and rv2.visible() is not None:
            push, _ = await self.wait_push(rcv, snd.jid, rv2.visible(), what='(%s)' % ctx)
            if delivered is not None and strict:
                self.assertLess(index_in(rcv.c, delivered), index_in(rcv.c, push),
                                '%s: the stanza must be delivered before the roster push '
                                '(RFC 6121 §3.1.6, §3.2.3, §3.3.3)' % ctx)
        if auto_deliver:
            await snd.c.wait_for(lambda e: is_sub_presence(e, rcv.jid, auto),
                                 what='the auto-reply %s from %s (%s)' % (auto, rcv.jid, ctx))
        # availability: who sees whom before and after
        for watcher, watched, before, after in ((rcv, snd, rv.has_to(), rv2.has_to()),
                                                (snd, rcv, sv.has_to(), sv2.has_to())):
            if after and not before:     # §3.1.5, §3.1.6 #3: current presence
                await watcher.c.wait_for(lambda e: is_availability(e, watched.jid, None),
                                         what='available presence from %s (%s)'
                                         % (watched.full, ctx))
            elif before and not after:   # §3.2.2, §3.3.3 #3: unavailable
                un = await watcher.c.wait_for(
                    lambda e: is_availability(e, watched.jid, 'unavailable'),
                    what='unavailable presence from %s (%s)' % (watched.full, ctx))
                if (stype == 'unsubscribed' and delivered is not None and watcher is rcv
                        and strict):
                    self.assertLess(index_in(rcv.c, un), index_in(rcv.c, delivered),
                                    '%s: unavailable presence must come before the '
                                    'unsubscribed (RFC 6121 §3.2.2)' % ctx)
        if strict:
            await self.quiet(snd, rcv)
            for me, other, mine_before, mine_after, mid in (
                    (snd, rcv, sv, sv2, sv_out), (rcv, snd, rv, rv2, rv2)):
                rest = await take_all(me.c)
                subs = [e for e in rest if is_sub_presence(e, other.jid)
                        and not (delivery_optional and me is rcv
                                 and e.get('type') == stype)]
                self.assertFalse(subs, '%s: %s got subscription stanzas the tables say are not '
                                 'delivered (%s / %s): %s'
                                 % (ctx, me.name, OUT_TABLE[stype], IN_TABLE[stype],
                                    [to_str(e) for e in subs]))
                ok = [v.visible() for v in (mine_before, mid, mine_after)]
                for e in rest:
                    if is_push(e, other.jid):
                        it = push_items(e)[0]
                        self.assertTrue(any(v is not None and self.state_matches(it, v)
                                            for v in ok),
                                        '%s: %s got a roster push %s that matches neither the '
                                        'old nor the new state %r'
                                        % (ctx, me.name, to_str(e), ok[-1]))
                    if is_availability(e, other.jid, None) and not mine_after.has_to():
                        self.fail('%s: %s got available presence from %s without a '
                                  'subscription to it (presence leak): %s'
                                  % (ctx, me.name, other.jid, to_str(e)))
        return sv2, rv2

    async def run_script(self, a, b, state):
        av, bv = View(), View()
        for who, stype in SCRIPTS[state]:
            if who == 'a':
                av, bv = await self.step(a, b, av, bv, stype, strict=False)
            else:
                bv, av = await self.step(b, a, bv, av, stype, strict=False)
        assert av.state_name() == state and bv.state_name() == STATE_OF[av.mirror()], \
            (av, bv)
        await self.drain(a, b, duration=QUIET / 2)
        return av, bv

    async def probe_pending_in(self, p, other, v, what):
        """Pending In is not in the roster; it shows in what an outbound "subscribed" does
        (A.2.3 / §3.4.2): an approval (subscription gains 'from') if and only if a request is
        pending, a pre-approval otherwise."""
        if v.has_from() or v.approved is not False:
            return
        await self.send_sub(p, other.jid, 'subscribed')
        try:
            el = await p.c.wait_for(lambda e: is_push(e, other.jid),
                                    TIMEOUT if v.pi else 2 * QUIET, 'a roster push (probe)')
            await answer(p.c, el)
        except AssertionError:
            if v.pi:
                raise
        items = await roster_get(p.c)
        it = items.get(other.jid)
        got = it is not None and it.get('subscription') in ('from', 'both')
        self.assertEqual(got, v.pi, '%s: %s has %sa pending inbound request from %s (expected '
                         'state %s): presence of type "subscribed" %s'
                         % (what, p.name, '' if got else 'no ', other.jid,
                            RFC_NAME[v.state_name()],
                            'approved it' if got else 'did not approve anything'))


# ---------------------------------------------------------------------------------------------
# Appendix A, every row


class Transitions(SubscriptionCase):
    """One test per (state, stanza): the user 'a' in state S sends the stanza to the contact
    'b' (state mirror(S)); A.2.x for a's server, A.3.x for b's."""

    async def run_transition(self, state, stype):
        a, b = await self.pair()
        av, bv = await self.run_script(a, b, state)
        av2, bv2 = await self.step(a, b, av, bv, stype, strict=True)
        what = '%s sends %s' % (RFC_NAME[state], stype)
        self.assertRosterItem(await roster_get(a.c), b.jid, av2.visible(),
                              what + ', user side (%s)' % OUT_TABLE[stype])
        self.assertRosterItem(await roster_get(b.c), a.jid, bv2.visible(),
                              what + ', contact side (%s)' % IN_TABLE[stype])
        await self.probe_pending_in(a, b, av2, what + ', user side')
        await self.probe_pending_in(b, a, bv2, what + ', contact side')


def _transition_test(state, stype):
    v = View(*STATES[state])
    route, av2 = outbound(stype, v)
    mirror = STATE_OF[v.mirror()]
    mv = View(*STATES[mirror])
    new = RFC_NAME[av2.state_name()] + (' with a pre-approval' if av2.approved else '')
    if route != MUST:
        inbound_part = ('not routed, so %s row %s (the contact\'s state) is not reached'
                        % (IN_TABLE[stype], RFC_NAME[mirror]))
    else:
        deliver = inbound(stype, mv)[0]
        if stype == 'unsubscribe' and mv.pi and not mv.has_from():
            deliver = 'MUST per A.3.2, not per §3.3.3: either accepted'
        inbound_part = ('%s row %s for the contact (deliver %s -> %s)'
                        % (IN_TABLE[stype], RFC_NAME[mirror], deliver,
                           RFC_NAME[inbound(stype, mv)[1].state_name()]))

    async def test(self):
        await self.run_transition(state, stype)
    test.__doc__ = ('%s sends "%s": RFC 6121 %s row %s for the user (route %s -> %s); %s'
                    % (RFC_NAME[state], stype, OUT_TABLE[stype], RFC_NAME[state], route, new,
                       inbound_part))
    return async_test(test, timeout=120)


for _state in STATES:
    for _stype in SUB_TYPES:
        setattr(Transitions, 'test_%s_sends_%s' % (_state, _stype),
                _transition_test(_state, _stype))


# ---------------------------------------------------------------------------------------------
# §3.1.2, §3.1.3: details of requests


class Requests(SubscriptionCase):

    @async_test
    async def test_subscribe_to_full_jid_is_treated_as_bare(self):
        """RFC 6121 §3.1.2 #1: a subscribe 'to' a full JID SHOULD be treated as directed to the
        bare JID; the roster item and the delivered request name the bare JID, and the 'from'
        is the user's bare JID (§3 implementation note)."""
        a, b = await self.pair()
        await self.send_sub(a, b.jid + '/whatever', 'subscribe')
        _, it = await self.wait_push(a, b.jid, ('none', 'subscribe', False))
        self.assertEqual(it.get('jid'), b.jid)
        p = await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'),
                               what='the subscribe')
        self.assertEqual(p.get('from'), a.jid)
        self.assertEqual(bare(p.get('to') or b.jid), b.jid, to_str(p))
        self.assertNotEqual(p.get('to'), b.jid + '/whatever', to_str(p))
        self.assertNotIn(b.jid + '/whatever', (await roster_get(a.c)).keys())

    @async_test
    async def test_requests_go_to_available_resources_pushes_to_interested_ones(self):
        """RFC 6121 §3.1 implementation note and §3.1.3 #3: a subscription request goes to every
        available resource of the contact (not to one that never sent initial presence);
        roster pushes go to every interested resource (§2.1.6: those that requested the
        roster), not to the others."""
        a = await self.login(self.new_account('u'), name='user')
        cj = self.new_account('c')
        both = await self.login(cj, 'both', name='roster+presence')
        avail = await self.login(cj, 'avail', roster=False, name='presence only')
        inter = await self.login(cj, 'inter', available=False, name='roster only')
        await self.send_sub(a, cj, 'subscribe')
        for p in (both, avail):
            await p.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'),
                               what='the subscribe on %s' % p.full)
        # the contact approves from one resource: pushes to interested ones only
        await self.send_sub(both, a.jid, 'subscribed')
        for p in (both, inter):
            await self.wait_push(p, a.jid, ('from', None, None))
        await self.wait_push(a, cj, ('to', None, False))
        await self.quiet(both, avail, inter)
        self.assertFalse([e for e in inter.c.history if is_sub_presence(e, a.jid)],
                         'a resource without initial presence got the subscription request')
        self.assertFalse([e for e in avail.c.history if is_push(e)],
                         'a resource that never requested the roster got a roster push')


# ---------------------------------------------------------------------------------------------
# §3.1.3 #4: requests for a contact with no available resource


class OfflineRequests(SubscriptionCase):

    @staticmethod
    def request_content(el):
        """(status text, nick, the 'z' of the extension element) of a request; None for what
        is missing."""
        status = el.find('{%s}status' % NS_CLIENT)
        nick = el.find('{%s}nick' % NS_NICK)
        y = el.find('{%s}x/{%s}y' % (NS_EXT, NS_EXT))
        return (status.text if status is not None else None,
                nick.text if nick is not None else None,
                y.get('z') if y is not None else None)

    async def sub_requests(self, p, frm, duration=QUIET):
        await self.quiet(p, duration=duration)
        return [e for e in p.c.history if is_sub_presence(e, frm, 'subscribe')]

    @async_test(timeout=120)
    async def test_request_kept_until_initial_presence_and_redelivered(self):
        """RFC 6121 §3.1.3 #4: a request for a contact with no available resource is kept
        ("a record of the complete presence stanza comprising the subscription request,
        including any extended content": here a status, a nick and an element of a namespace
        the server does not know) and delivered when the contact next
        has an available resource — not before initial presence (§3.1 implementation note),
        only one of several (MUST NOT deliver more than one), and again whenever the contact
        creates an available resource until it approves or denies. Until approval the contact's
        roster has no item for the user (§3.1.3 security warning)."""
        a = await self.login(self.new_account('u'), name='user')
        cj = self.new_account('c')
        ext = "<status>%s</status><nick xmlns='%s'>%s</nick><x xmlns='%s'><y z='%s'/></x>"
        await self.send_sub(a, cj, 'subscribe', ext % ('first request', NS_NICK, 'One', NS_EXT,
                                                       '1'))
        await self.wait_push(a, cj, ('none', 'subscribe', False))
        await self.send_sub(a, cj, 'subscribe', ext % ('second request', NS_NICK, 'Two', NS_EXT,
                                                       '2'))
        await self.quiet(a)

        b1 = await self.login(cj, 'one', available=False, name='contact/one')
        self.assertNotIn(a.jid, await roster_get(b1.c),
                         'the contact\'s server added the requester to the roster before approval')
        self.assertEqual(await self.sub_requests(b1, a.jid), [],
                         'the request was delivered before initial presence')
        await b1.c.send('<presence/>')
        got = await b1.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'),
                                  what='the stored subscribe')
        self.assertEqual(got.get('from'), a.jid)
        pair = self.request_content(got)
        self.assertIn(pair, [('first request', 'One', '1'), ('second request', 'Two', '2')],
                      'the delivered request is not one of the complete stanzas sent '
                      '(status, nick, extension): ' + to_str(got))
        self.assertEqual(len(await self.sub_requests(b1, a.jid)), 1,
                         'more than one stored request was delivered')
        await b1.c.close()

        # unanswered: delivered again at the next available resource, and the one after
        b2 = await self.login(cj, 'two', name='contact/two')
        again = await b2.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'),
                                    what='the request again at the next login')
        self.assertEqual(self.request_content(again), pair, to_str(again))
        b3 = await self.login(cj, 'three', name='contact/three')
        await b3.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'),
                            what='the request again at another new available resource')

        # approved: no more deliveries
        await self.send_sub(b3, a.jid, 'subscribed')
        await a.c.wait_for(lambda e: is_sub_presence(e, cj, 'subscribed'), what='subscribed')
        await self.wait_push(a, cj, ('to', None, False))
        b4 = await self.login(cj, 'four', name='contact/four')
        self.assertEqual(await self.sub_requests(b4, a.jid), [],
                         'an approved request was delivered again')
        self.assertRosterItem(await roster_get(b4.c), a.jid, ('from', None, None), 'contact')

    @async_test
    async def test_denied_request_is_not_delivered_again(self):
        """RFC 6121 §3.1.3 #4 (until the contact denies), §3.2: a denied request (unsubscribed)
        reaches the user, clears its 'ask' (A.3.4 "None + Pending Out" -> "None") and is not
        delivered to the contact again."""
        a = await self.login(self.new_account('u'), name='user')
        cj = self.new_account('c')
        await self.send_sub(a, cj, 'subscribe')
        await self.wait_push(a, cj, ('none', 'subscribe', False))
        b1 = await self.login(cj, 'one')
        await b1.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'), what='subscribe')
        await self.send_sub(b1, a.jid, 'unsubscribed')
        await a.c.wait_for(lambda e: is_sub_presence(e, cj, 'unsubscribed'), what='denial')
        await self.wait_push(a, cj, ('none', None, False))
        await b1.c.close()
        b2 = await self.login(cj, 'two')
        self.assertEqual(await self.sub_requests(b2, a.jid), [],
                         'a denied request was delivered again')
        self.assertNotIn(a.jid, await roster_get(b2.c))

    @async_test
    async def test_unsubscribe_withdraws_a_stored_request(self):
        """RFC 6121 §3.3.3 (last paragraph): an unsubscribe from a user whose request is kept
        but who is not in the contact's roster makes the contact's server remove the record, so
        it is never delivered."""
        a = await self.login(self.new_account('u'), name='user')
        cj = self.new_account('c')
        await self.send_sub(a, cj, 'subscribe')
        await self.wait_push(a, cj, ('none', 'subscribe', False))
        await self.send_sub(a, cj, 'unsubscribe')
        await self.wait_push(a, cj, ('none', None, False))
        b = await self.login(cj, 'one')
        self.assertEqual(await self.sub_requests(b, a.jid), [],
                         'a withdrawn request was delivered')
        self.assertNotIn(a.jid, await roster_get(b.c))


# ---------------------------------------------------------------------------------------------
# §3.4: pre-approval


class PreApproval(SubscriptionCase):

    @async_test
    async def test_stream_feature_after_authentication(self):
        """RFC 6121 §3.4: a server supporting pre-approvals MUST advertise
        <sub xmlns='urn:xmpp:features:pre-approval'/> during stream negotiation (here: in the
        features after authentication)."""
        jid = self.new_account('u')
        c = await self.raw_login(jid, password=PW, resource='r')
        self.assertIsNotNone(c.features.find('{%s}sub' % NS_PREAPPROVAL),
                             'no pre-approval feature after authentication: '
                             + to_str(c.features))

    @async_test
    async def test_preapproved_request_is_approved_by_the_server(self):
        """RFC 6121 §3.4.2 #4: "subscribed" to someone not in the roster creates an item with
        subscription 'none' and approved='true' (pushed, §2.1.2.1) and is not routed; the later
        subscribe from the contact is not delivered to the user but answered with "subscribed"
        on the user's behalf (§3.4.2, A.3.1 [1]); the contact's roster becomes 'to', the
        user's 'from', and the contact gets the user's current presence (§3.1.5, §3.1.6 #3)."""
        a, b = await self.pair()
        await self.send_sub(a, b.jid, 'subscribed')
        _, it = await self.wait_push(a, b.jid, ('none', None, True))
        self.assertEqual(it.get('approved'), 'true', to_str(it))
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.history if is_sub_presence(e, a.jid)],
                         'the pre-approval was routed to the contact (A.2.3: M.N.)')
        self.assertRosterItem(await roster_get(a.c), b.jid, ('none', None, True), 'user')

        await self.send_sub(b, a.jid, 'subscribe')
        await self.wait_push(b, a.jid, ('none', 'subscribe', False))
        ok = await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribed'),
                                what='the automatic approval')
        self.assertEqual(ok.get('from'), a.jid)
        await self.wait_push(b, a.jid, ('to', None, False))
        await self.wait_push(a, b.jid, ('from', None, None))
        await b.c.wait_for(lambda e: is_availability(e, a.jid, None),
                           what="the user's current presence")
        await self.quiet(a, b)
        self.assertFalse([e for e in a.c.history if is_sub_presence(e, b.jid, 'subscribe')],
                         'a pre-approved request was delivered to the user (§3.4.2: MUST NOT)')
        self.assertRosterItem(await roster_get(a.c), b.jid, ('from', None, None), 'user')
        self.assertRosterItem(await roster_get(b.c), a.jid, ('to', None, False), 'contact')

    @async_test
    async def test_preapproval_with_pending_out_ends_in_both(self):
        """RFC 6121 §3.4.2 #3 ("None + Pending Out" keeps its ask, gains approved='true'), then
        A.3.3 (the contact's approval makes it "To") and A.3.1 [1] / §3.4.2 (the contact's own
        request is answered by the server): both rosters end with 'both'."""
        a, b = await self.pair()
        await self.send_sub(a, b.jid, 'subscribe')
        await self.wait_push(a, b.jid, ('none', 'subscribe', False))
        await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'), what='subscribe')
        await self.send_sub(a, b.jid, 'subscribed')
        await self.wait_push(a, b.jid, ('none', 'subscribe', True))
        # b has a pending request from a; it approves and asks back
        await self.send_sub(b, a.jid, 'subscribed')
        await self.wait_push(a, b.jid, ('to', None, True))
        await self.send_sub(b, a.jid, 'subscribe')
        await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribed'),
                           what='the automatic approval')
        await self.wait_push(b, a.jid, ('both', None, False))
        await self.wait_push(a, b.jid, ('both', None, None))
        await self.quiet(a, b)
        self.assertFalse([e for e in a.c.history if is_sub_presence(e, b.jid, 'subscribe')],
                         'a pre-approved request was delivered to the user (§3.4.2: MUST NOT)')
        self.assertRosterItem(await roster_get(a.c), b.jid, ('both', None, None), 'user')
        self.assertRosterItem(await roster_get(b.c), a.jid, ('both', None, False), 'contact')

    @async_test
    async def test_unsubscribed_cancels_a_preapproval(self):
        """RFC 6121 §3.2.2 #2 and the §3.4.2 implementation note: "unsubscribed" cancels a
        pre-approval (roster push without approved='true'), is not routed to the contact, and
        the contact's later request is delivered to the user again instead of being
        auto-approved."""
        a, b = await self.pair()
        await self.send_sub(a, b.jid, 'subscribed')
        await self.wait_push(a, b.jid, ('none', None, True))
        await self.send_sub(a, b.jid, 'unsubscribed')
        await self.wait_push(a, b.jid, ('none', None, False))
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.history if is_sub_presence(e, a.jid)],
                         'the pre-approval or its cancellation reached the contact')
        await self.send_sub(b, a.jid, 'subscribe')
        await a.c.wait_for(lambda e: is_sub_presence(e, b.jid, 'subscribe'),
                           what='the request, no longer pre-approved')
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.history if is_sub_presence(e, a.jid, 'subscribed')],
                         'the request was auto-approved after the pre-approval was cancelled')
        self.assertRosterItem(await roster_get(a.c), b.jid, ('none', None, False), 'user')


# ---------------------------------------------------------------------------------------------
# §2.5.2: removing a roster item cancels the subscriptions


class RosterRemove(SubscriptionCase):

    async def mutual(self, a, b):
        av, bv = await self.run_script(a, b, 'both')
        return av, bv

    async def remove(self, p, jid):
        r = await p.c.iq('set', "<query xmlns='%s'><item jid=%s subscription='remove'/>"
                         "</query>" % (NS_ROSTER, attr(jid)))
        self.assertEqual(r.get('type'), 'result', to_str(r))
        el = await p.c.wait_for(lambda e: is_push(e, jid) and
                                push_items(e)[0].get('subscription') == 'remove',
                                what='the remove push')
        await answer(p.c, el)

    @async_test
    async def test_removing_a_mutual_contact_cancels_both_ways(self):
        """RFC 6121 §2.5.2 #3: removing a contact with a mutual subscription sends both
        "unsubscribe" and "unsubscribed"; the contact gets both (A.3.2, A.3.4 "Both"), its
        roster ends with 'none', each side gets the other's unavailable presence (§3.2.2,
        §3.3.3 #3), and no presence flows afterwards."""
        a, b = await self.pair()
        await self.run_script(a, b, 'both')
        await self.remove(a, b.jid)
        for t in ('unsubscribe', 'unsubscribed'):
            p = await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, t), what=t)
            self.assertEqual(p.get('from'), a.jid)
        await self.wait_push(b, a.jid, ('none', None, False))
        await b.c.wait_for(lambda e: is_availability(e, a.jid, 'unavailable'),
                           what="the user's unavailable presence")
        await a.c.wait_for(lambda e: is_availability(e, b.jid, 'unavailable'),
                           what="the contact's unavailable presence")
        self.assertNotIn(b.jid, await roster_get(a.c))
        self.assertRosterItem(await roster_get(b.c), a.jid, ('none', None, False), 'contact')
        await self.drain(a, b)
        await a.c.send('<presence><show>away</show></presence>')
        await b.c.send('<presence><show>xa</show></presence>')
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.pending if is_availability(e, a.jid)],
                         'presence still reaches the removed contact')
        self.assertFalse([e for e in a.c.pending if is_availability(e, b.jid)],
                         'presence still comes from the removed contact')

    @async_test
    async def test_removing_a_contact_subscribed_from_sends_unsubscribed(self):
        """RFC 6121 §2.5.2 #2: the contact has a subscription to the user ("From"): removing it
        sends "unsubscribed"; the contact ("To" -> "None", A.3.4) gets it and the user's
        unavailable presence (§3.2.2); an "unsubscribe" (if any) is not delivered (A.3.2 "To":
        S.N.)."""
        a, b = await self.pair()
        await self.run_script(a, b, 'from')
        await self.remove(a, b.jid)
        await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'unsubscribed'),
                           what='unsubscribed')
        await self.wait_push(b, a.jid, ('none', None, False))
        await b.c.wait_for(lambda e: is_availability(e, a.jid, 'unavailable'),
                           what="the user's unavailable presence")
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.history if is_sub_presence(e, a.jid, 'unsubscribe')])
        self.assertNotIn(b.jid, await roster_get(a.c))
        self.assertRosterItem(await roster_get(b.c), a.jid, ('none', None, False), 'contact')

    @async_test
    async def test_removing_a_contact_subscribed_to_sends_unsubscribe(self):
        """RFC 6121 §2.5.2 #1: the user has a subscription to the contact ("To"): removing it
        sends "unsubscribe"; the contact ("From" -> "None", A.3.2) gets it and the user gets the
        contact's unavailable presence (§3.3.3 #3); an "unsubscribed" (if any) is not delivered
        (A.3.4 "From": S.N.)."""
        a, b = await self.pair()
        await self.run_script(a, b, 'to')
        await self.remove(a, b.jid)
        await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'unsubscribe'),
                           what='unsubscribe')
        await self.wait_push(b, a.jid, ('none', None, False))
        await a.c.wait_for(lambda e: is_availability(e, b.jid, 'unavailable'),
                           what="the contact's unavailable presence")
        await self.quiet(a, b)
        self.assertFalse([e for e in b.c.history if is_sub_presence(e, a.jid, 'unsubscribed')])
        self.assertNotIn(b.jid, await roster_get(a.c))
        self.assertRosterItem(await roster_get(b.c), a.jid, ('none', None, False), 'contact')

    @async_test
    async def test_removing_an_unknown_item(self):
        """RFC 6121 §2.5.3: removing an item that is not in the roster is an
        <item-not-found/> error."""
        jid = self.new_account('u')
        c = await self.raw_login(jid, password=PW, resource='r')
        r = await c.iq('set', "<query xmlns='%s'><item jid='nobody-here@localhost' "
                       "subscription='remove'/></query>" % NS_ROSTER)
        self.assertEqual(r.get('type'), 'error', to_str(r))
        self.assertEqual(stanza_error(r)[1], 'item-not-found', to_str(r))


# ---------------------------------------------------------------------------------------------
# §3.1.5, §3.2.2, §3.3.3, §4: presence follows the subscriptions


class PresenceFollowsSubscriptions(SubscriptionCase):

    def avail(self, p, frm, ptype=None):
        return [e for e in p.c.pending if is_availability(e, frm, ptype)]

    @async_test(timeout=120)
    async def test_mutual_subscription_exchanges_presence(self):
        """RFC 6121 §4.2.2 (initial presence goes to contacts with 'from'/'both', and probes
        bring theirs), §4.4.2/§4.4.3 (later presence is broadcast to them and delivered to all
        their available resources), §4.5.2 (unavailable too)."""
        a, b = await self.pair()
        await self.run_script(a, b, 'both')
        a2 = await self.login(a.jid, 'second', name='user/second')
        p = await b.c.wait_for(lambda e: is_availability(e, a.jid, None)
                               and e.get('from') == a2.full, what='initial presence of a2')
        self.assertEqual(bare(p.get('to') or b.jid), b.jid)
        await a2.c.wait_for(lambda e: is_availability(e, b.jid, None) and
                            e.get('from') == b.full, what="the contact's presence (probe)")
        await self.drain(a, a2, b)
        await b.c.send('<presence><show>away</show><status>lunch</status></presence>')
        for p in (a, a2):
            got = await p.c.wait_for(lambda e: is_availability(e, b.jid, None) and
                                     e.find('{%s}show' % NS_CLIENT) is not None,
                                     what='the away presence on %s' % p.full)
            self.assertEqual(got.find('{%s}show' % NS_CLIENT).text, 'away')
            self.assertEqual(got.find('{%s}status' % NS_CLIENT).text, 'lunch')
        await a2.c.send("<presence type='unavailable'/>")
        await b.c.wait_for(lambda e: is_availability(e, a.jid, 'unavailable') and
                           e.get('from') == a2.full, what='unavailable from a2')

    @async_test
    async def test_ungraceful_disconnect_broadcasts_unavailable(self):
        """RFC 6121 §4.5.2: a resource that goes away without unavailable presence (TCP reset)
        is announced unavailable to the contacts with a subscription to the user."""
        a, b = await self.pair()
        await self.run_script(a, b, 'both')
        a2 = await self.login(a.jid, 'second', name='user/second')
        await b.c.wait_for(lambda e: is_availability(e, a.jid, None)
                           and e.get('from') == a2.full, what='initial presence of a2')
        a2.c.abort(rst=True)
        await b.c.wait_for(lambda e: is_availability(e, a.jid, 'unavailable')
                           and e.get('from') == a2.full, what='unavailable for the vanished a2')

    @async_test
    async def test_probe_returns_the_full_last_presence(self):
        """RFC 6121 §4.2.2 (probes on initial presence) and §4.3.2 #4: the answer to a probe is
        "the full XML of the last presence stanza with no 'to' attribute" of each available
        resource of the contact — show, status, priority and extended content included."""
        a, b = await self.pair()
        await self.run_script(a, b, 'to')
        await b.c.send("<presence><show>away</show><status>out for lunch</status>"
                       "<priority>3</priority><x xmlns='%s'><y z='probe'/></x></presence>"
                       % NS_EXT)
        await a.c.wait_for(lambda e: is_availability(e, b.jid, None) and
                           e.find('{%s}show' % NS_CLIENT) is not None, what='the away presence')
        a2 = await self.login(a.jid, 'second', name='user/second')
        p = await a2.c.wait_for(lambda e: is_availability(e, b.jid, None),
                                what="the contact's presence (probe)")
        self.assertEqual(p.get('from'), b.full)
        self.assertEqual(p.find('{%s}show' % NS_CLIENT).text, 'away', to_str(p))
        self.assertEqual(p.find('{%s}status' % NS_CLIENT).text, 'out for lunch', to_str(p))
        self.assertEqual(p.find('{%s}priority' % NS_CLIENT).text, '3', to_str(p))
        y = p.find('{%s}x/{%s}y' % (NS_EXT, NS_EXT))
        self.assertEqual(y is not None and y.get('z'), 'probe',
                         'the extended content is missing: ' + to_str(p))

    @async_test
    async def test_one_way_subscription(self):
        """RFC 6121 §4.2.2, §4.4.2: with the user subscribed to the contact ("To"), the
        user's new resource gets the contact's presence, while the contact never gets the
        user's (no 'from')."""
        a, b = await self.pair()
        await self.run_script(a, b, 'to')
        a2 = await self.login(a.jid, 'second', name='user/second')
        await a2.c.wait_for(lambda e: is_availability(e, b.jid, None),
                            what="the contact's presence")
        await a.c.send('<presence><show>dnd</show></presence>')
        await self.quiet(a, a2, b)
        self.assertFalse(self.avail(b, a.jid), 'presence leaked to a contact without '
                                               'a subscription')

    @async_test
    async def test_approval_sends_current_presence(self):
        """RFC 6121 §3.1.5: after approving, the contact's server MUST send the contact's
        current presence (here with <show/> and <status/>) to the user."""
        a = await self.login(self.new_account('u'), name='user')
        b = await self.login(self.new_account('c'), name='contact', show='dnd',
                             status='in a meeting')
        await self.send_sub(a, b.jid, 'subscribe')
        await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'subscribe'), what='subscribe')
        await self.send_sub(b, a.jid, 'subscribed')
        p = await a.c.wait_for(lambda e: is_availability(e, b.jid, None),
                               what="the contact's current presence")
        self.assertEqual(p.get('from'), b.full)
        self.assertEqual(p.find('{%s}show' % NS_CLIENT).text, 'dnd', to_str(p))
        self.assertEqual(p.find('{%s}status' % NS_CLIENT).text, 'in a meeting', to_str(p))

    @async_test
    async def test_cancelled_subscription_stops_presence(self):
        """RFC 6121 §3.2.2: when the user cancels the contact's subscription ("unsubscribed"
        from "Both"), the contact gets the user's unavailable presence before the
        "unsubscribed", and no later presence of the user; the user still gets the contact's
        (state "To")."""
        a, b = await self.pair()
        await self.run_script(a, b, 'both')
        await self.send_sub(a, b.jid, 'unsubscribed')
        un = await b.c.wait_for(lambda e: is_availability(e, a.jid, 'unavailable'),
                                what='unavailable')
        sub = await b.c.wait_for(lambda e: is_sub_presence(e, a.jid, 'unsubscribed'),
                                 what='unsubscribed')
        self.assertLess(index_in(b.c, un), index_in(b.c, sub))
        await self.wait_push(b, a.jid, ('from', None, False))
        await self.drain(a, b)
        await a.c.send('<presence><show>chat</show></presence>')
        await b.c.send('<presence><show>away</show></presence>')
        await a.c.wait_for(lambda e: is_availability(e, b.jid, None),
                           what="the contact's presence (still subscribed)")
        await self.quiet(a, b)
        self.assertFalse(self.avail(b, a.jid), 'presence still sent after "unsubscribed"')

    @async_test
    async def test_unsubscribe_stops_presence(self):
        """RFC 6121 §3.3.3 #3: after the user's "unsubscribe" the contact's server sends the
        contact's unavailable presence to the user, and no later presence of the contact."""
        a, b = await self.pair()
        await self.run_script(a, b, 'both')
        await self.send_sub(a, b.jid, 'unsubscribe')
        await a.c.wait_for(lambda e: is_availability(e, b.jid, 'unavailable'),
                           what='unavailable from the contact')
        await self.wait_push(a, b.jid, ('from', None, False))
        await self.drain(a, b)
        await b.c.send('<presence><show>away</show></presence>')
        await a.c.send('<presence><show>chat</show></presence>')
        await b.c.wait_for(lambda e: is_availability(e, a.jid, None),
                           what="the user's presence (contact still subscribed)")
        await self.quiet(a, b)
        self.assertFalse(self.avail(a, b.jid), 'presence still sent after "unsubscribe"')


# ---------------------------------------------------------------------------------------------
# A real client


class Slixmpp(SubscriptionCase):

    @async_test
    async def test_slixmpp_clients_reach_a_mutual_subscription(self):
        """RFC 6121 §3.1 flow with slixmpp's roster handling (it approves requests and asks back
        by default): one "subscribe" ends with subscription 'both' in both clients' rosters
        (kept up to date by roster pushes) and in the server's."""
        aj, bj = self.new_account('u'), self.new_account('c')
        clients = []
        for j in (aj, bj):
            c = self.track(Client(j + '/slix', PW))
            await c.login(self.server.starttls_port)
            await c.get_roster()
            c.send_presence()
            clients.append(c)
        a, b = clients
        a.send_presence(pto=bj, ptype='subscribe')

        def done():
            return (bj in a.client_roster and a.client_roster[bj]['subscription'] == 'both'
                    and aj in b.client_roster and b.client_roster[aj]['subscription'] == 'both')
        await a._wait(done, None, "'both' in both rosters")
        # the server's rosters (a fresh session: slixmpp's own roster get may be answered
        # with "no change" under roster versioning, §2.6.3)
        for me, other in ((aj, bj), (bj, aj)):
            p = await self.login(me, 'check', available=False)
            self.assertRosterItem(await roster_get(p.c), other, ('both', None, None), me)


if __name__ == '__main__':
    main()
