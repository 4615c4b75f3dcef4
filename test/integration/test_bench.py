#!/usr/bin/python3
"""The load generator (contrib/bench, stanzad-bench) against a real stanzad, briefly: a few
hundred chat messages without and with TLS, a short connect run with the server's RSS, a bounded
login run, the generator's echo peer, and a short presence run (a hub with 20 contacts, with
mod_roster). Not a timed test: it only keeps the generator and the server's message and presence
paths working together (no loss, no duplicates, order kept, a positive rate)."""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, main, BUILD_DIR, MODULE_DIR, SLOW, free_port,  # noqa
                     port_accepts, sanitizer_env, sanitizer_report, sanitizer_excerpt)

GEN = os.path.join(BUILD_DIR, 'contrib', 'bench', 'stanzad-bench')
PASSWORD = 'bench pw 1'
ACCOUNTS = 10


def parse_result(stdout):
    """The fields of the one 'RESULT key=value ...' line of a generator run."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith('RESULT ')]
    if len(lines) != 1:
        raise AssertionError('expected exactly one RESULT line, got %d:\n%s' % (len(lines), stdout))
    return dict(re.findall(r'(\w+)=(\S+)', lines[0])), lines[0]


class GenTestCase(ServerTestCase):
    """A stanzad and the generator; gen() runs it and returns the fields of its RESULT line."""
    prefix = 'bench'

    @classmethod
    def setUpClass(cls):
        if not os.access(GEN, os.X_OK):
            raise AssertionError('the generator is not built: %s' % GEN)
        super().setUpClass()

    def gen(self, *args, port=None, expect_rc=0):
        argv = [GEN, '--host', '127.0.0.1', '--port', str(port or self.server.starttls_port),
                '--domain', 'localhost', '--user-prefix', self.prefix, '--password', PASSWORD]
        argv += [str(a) for a in args]
        t0 = time.monotonic()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120 * SLOW,
                           env=sanitizer_env())
        took = time.monotonic() - t0
        if sanitizer_report(r.stderr):
            self.fail('sanitizer report from the generator:\n' + sanitizer_excerpt(r.stderr))
        fields, line = parse_result(r.stdout)
        sys.stderr.write('  %s (%.1f s)\n' % (line, took))
        self.assertEqual(r.returncode, expect_rc,
                         'stanzad-bench exited with %d\n%s\n%s' % (r.returncode, line, r.stderr))
        self.assertEqual(fields.get('status'), 'ok', '%s\n%s' % (line, r.stderr))
        return fields


class Bench(GenTestCase):
    # Plain c2s for the plain runs (the harness default requires STARTTLS); one worker, as in the
    # benchmark; info level, because debug logs every stanza.
    config = {'tls': {'require_c2s': False}, 'server': {'workers': 1}, 'log': {'level': 'info'}}
    users = {'bench%d@localhost' % i: PASSWORD for i in range(ACCOUNTS)}

    def check_chat(self, f, pairs, window, tls):
        self.assertEqual(f['workload'], 'chat')
        self.assertEqual(int(f['pairs']), pairs)
        self.assertEqual(int(f['window']), window)
        self.assertEqual(int(f['tls']), tls)
        for k in ('lost', 'dup', 'reordered', 'errors', 'login_failed', 'disconnects'):
            self.assertEqual(int(f[k]), 0, k)
        self.assertGreater(float(f['msgs_per_s']), 0)
        # a few hundred messages at the very least, even under the sanitizers
        self.assertGreaterEqual(int(f['msgs']), 200)
        self.assertEqual(int(f['sent']), int(f['received']))
        self.assertGreater(int(f['p50_us']), 0)
        self.assertGreaterEqual(int(f['p99_us']), int(f['p50_us']))

    def test_chat_plain(self):
        f = self.gen('--workload', 'chat', '--pairs', 5, '--window', 2, '--duration', 2,
                     '--warmup', 0.5, '--mech', 'SCRAM-SHA-1')
        self.check_chat(f, 5, 2, 0)
        self.assertEqual(f['mech'], 'SCRAM-SHA-1')

    def test_chat_tls(self):
        f = self.gen('--workload', 'chat', '--pairs', 3, '--window', 2, '--duration', 1,
                     '--warmup', 0.5, '--tls')
        self.check_chat(f, 3, 2, 1)

    def test_connect(self):
        f = self.gen('--workload', 'connect', '-n', ACCOUNTS, '--duration', 0.5,
                     '--concurrency', 5, '--pid', self.server.pid)
        self.assertEqual(int(f['ready']), ACCOUNTS)
        self.assertEqual(int(f['login_failed']), 0)
        self.assertEqual(int(f['disconnects']), 0)
        self.assertGreater(int(f['login_p50_us']), 0)
        self.assertEqual(int(f['pid']), self.server.pid)
        self.assertGreater(int(f['rss_before_kb']), 0)
        self.assertGreater(int(f['rss_after_kb']), 0)
        self.assertIn('rss_per_conn_bytes', f)

    def test_login(self):
        f = self.gen('--workload', 'login', '--concurrency', 5, '--count', 40,
                     '--users', ACCOUNTS, '--duration', 30, '--mech', 'SCRAM-SHA-1')
        self.assertEqual(int(f['logins']), 40)
        self.assertEqual(int(f['login_failed']), 0)
        self.assertGreater(float(f['logins_per_s']), 0)

    def test_echo_peer(self):
        """The echo peer that compare uses for the generator's own ceiling."""
        port = free_port()
        echo = subprocess.Popen([GEN, '--echo-server', '--host', '127.0.0.1', '--port', str(port),
                                 '--duration', str(int(60 * SLOW))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=sanitizer_env())
        try:
            deadline = time.monotonic() + 10 * SLOW
            while not port_accepts(port, timeout=0.2):
                if echo.poll() is not None:
                    self.fail('the echo peer exited (%d): %s' % (echo.returncode, echo.stderr.read()))
                self.assertLess(time.monotonic(), deadline, 'the echo peer did not listen')
                time.sleep(0.05)
            f = self.gen('--workload', 'chat', '--peer', 'self', '--pairs', 4, '--window', 2,
                         '--duration', 1, '--warmup', 0.2, '--mech', 'PLAIN', port=port)
            self.assertEqual(f['peer'], 'self')
            self.check_chat(f, 4, 2, 0)
        finally:
            echo.terminate()
            try:
                _, err = echo.communicate(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                echo.kill()
                _, err = echo.communicate()
        if sanitizer_report(err or ''):
            self.fail('sanitizer report from the echo peer:\n' + sanitizer_excerpt(err))


CONTACTS = 20


class BenchPresence(GenTestCase):
    """The presence workload: a hub (pres0) and 20 contacts (pres1..pres20) on a stanzad with
    mod_roster and two workers (the hub and its contacts spread over both)."""
    config = {'tls': {'require_c2s': False}, 'server': {'workers': 2}, 'log': {'level': 'info'},
              'modules': ['roster']}
    users = {'pres%d@localhost' % i: PASSWORD for i in range(CONTACTS + 1)}
    prefix = 'pres'

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(MODULE_DIR, 'mod_roster.so')):
            raise unittest.SkipTest('mod_roster is not built (%s): the presence workload needs '
                                    'a roster module' % MODULE_DIR)
        super().setUpClass()

    def check_presence(self, f, window, count):
        self.assertEqual(f['workload'], 'presence')
        self.assertEqual(int(f['contacts']), CONTACTS)
        self.assertEqual(int(f['window']), window)
        for k in ('lost', 'dup', 'reordered', 'errors', 'login_failed', 'disconnects'):
            self.assertEqual(int(f[k]), 0, k)
        # every update reached every contact, each counted once
        self.assertEqual(int(f['sent']), count)
        self.assertEqual(int(f['updates']), count)
        self.assertEqual(int(f['deliveries']), count * CONTACTS)
        self.assertEqual(int(f['received']), count * CONTACTS)
        self.assertGreater(float(f['deliveries_per_s']), 0)
        self.assertGreater(int(f['p50_us']), 0)
        self.assertGreaterEqual(int(f['p99_us']), int(f['p50_us']))
        # the hub's initial presence: probes answered and broadcast, both complete
        self.assertGreater(int(f['init_us']), 0)
        self.assertGreater(int(f['init_probes_us']), 0)
        self.assertGreater(int(f['init_bcast_us']), 0)
        self.assertEqual(int(f['init_us']), max(int(f['init_probes_us']),
                                                int(f['init_bcast_us'])))

    def test_presence(self):
        """Subscriptions made by the first run (RFC 6121 handshake both ways), found in the
        roster by the second; every update delivered once, in order, to all 20 contacts."""
        f = self.gen('--workload', 'presence', '--contacts', CONTACTS, '--window', 5,
                     '--count', 300, '--mech', 'SCRAM-SHA-1')
        self.check_presence(f, 5, 300)
        self.assertEqual(int(f['setup_pairs']), CONTACTS)
        # no subscription request lost on the way (the generator would send it again)
        self.assertEqual(int(f['setup_resent']), 0)
        f = self.gen('--workload', 'presence', '--contacts', CONTACTS, '--window', 1,
                     '--count', 100, '--mech', 'SCRAM-SHA-1')
        self.check_presence(f, 1, 100)
        self.assertEqual(int(f['setup_pairs']), 0)


if __name__ == '__main__':
    main()
