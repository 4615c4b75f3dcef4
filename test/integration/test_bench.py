#!/usr/bin/python3
"""The load generator (contrib/bench, stanzad-bench) against a real stanzad, briefly: a few
hundred chat messages without and with TLS, a short connect run with the server's RSS, a bounded
login run, and the generator's echo peer. Not a timed test: it only keeps the generator and the
server's message path working together (no loss, no duplicates, order kept, a positive rate)."""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, main, BUILD_DIR, SLOW, free_port, port_accepts,  # noqa
                     sanitizer_env, sanitizer_report, sanitizer_excerpt)

GEN = os.path.join(BUILD_DIR, 'contrib', 'bench', 'stanzad-bench')
PASSWORD = 'bench pw 1'
ACCOUNTS = 10


def parse_result(stdout):
    """The fields of the one 'RESULT key=value ...' line of a generator run."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith('RESULT ')]
    if len(lines) != 1:
        raise AssertionError('expected exactly one RESULT line, got %d:\n%s' % (len(lines), stdout))
    return dict(re.findall(r'(\w+)=(\S+)', lines[0])), lines[0]


class Bench(ServerTestCase):
    # Plain c2s for the plain runs (the harness default requires STARTTLS); one worker, as in the
    # benchmark; info level, because debug logs every stanza.
    config = {'tls': {'require_c2s': False}, 'server': {'workers': 1}, 'log': {'level': 'info'}}
    users = {'bench%d@localhost' % i: PASSWORD for i in range(ACCOUNTS)}

    @classmethod
    def setUpClass(cls):
        if not os.access(GEN, os.X_OK):
            raise AssertionError('the generator is not built: %s' % GEN)
        super().setUpClass()

    def gen(self, *args, port=None, expect_rc=0):
        argv = [GEN, '--host', '127.0.0.1', '--port', str(port or self.server.starttls_port),
                '--domain', 'localhost', '--user-prefix', 'bench', '--password', PASSWORD]
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


if __name__ == '__main__':
    main()
