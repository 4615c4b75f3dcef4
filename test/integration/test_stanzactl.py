#!/usr/bin/python3
"""stanzactl: adduser, list, passwd, check-password, deluser against the server's database;
passwords only ever travel through stdin and are stored as SCRAM verifiers."""

import base64
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, async_test, main, Client, LoginFailed, STANZACTL_BIN,  # noqa
                     render_config, sanitizer_env, SLOW)


class Stanzactl(ServerTestCase):

    def ctl(self, *args, password=None):
        return self.server.ctl(*args, input=(password + '\n') if password is not None else '')

    def listed(self, *host):
        r = self.ctl('list', *host)
        self.assertEqual(r.returncode, 0, r.stderr)
        return set(r.stdout.split())

    async def can_login(self, jid, password, mech='SCRAM-SHA-256'):
        c = self.track(Client(jid, password, mech=mech))
        try:
            await c.login(self.server.starttls_port)
        except LoginFailed as e:
            self.assertEqual(e.condition, 'not-authorized')
            return False
        await c.logout()
        return True

    @async_test(timeout=120)
    async def test_account_lifecycle(self):
        jid, pw1, pw2 = 'alice@localhost', 'first password', 'second pässword'
        r = self.ctl('adduser', jid, password=pw1)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(jid, self.listed())
        self.assertIn(jid, self.listed('localhost'))
        self.assertNotIn(jid, self.listed('example.test'))
        self.assertEqual(self.ctl('check-password', jid, password=pw1).returncode, 0)
        self.assertEqual(self.ctl('check-password', jid, password=pw2).returncode, 1)
        self.assertTrue(await self.can_login(jid, pw1))
        self.assertTrue(await self.can_login(jid, pw1, 'SCRAM-SHA-1'))
        self.assertTrue(await self.can_login(jid, pw1, 'PLAIN'))

        # passwd: the new password works, the old one does not
        r = self.ctl('passwd', jid, password=pw2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(await self.can_login(jid, pw2))
        self.assertTrue(await self.can_login(jid, pw2, 'SCRAM-SHA-1'))
        self.assertFalse(await self.can_login(jid, pw1))
        self.assertFalse(await self.can_login(jid, pw1, 'PLAIN'))
        self.assertEqual(self.ctl('check-password', jid, password=pw2).returncode, 0)
        self.assertEqual(self.ctl('check-password', jid, password=pw1).returncode, 1)

        # deluser: gone
        r = self.ctl('deluser', jid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(jid, self.listed())
        self.assertFalse(await self.can_login(jid, pw2))
        self.assertEqual(self.ctl('deluser', jid).returncode, 1)
        self.assertNotEqual(self.ctl('check-password', jid, password=pw2).returncode, 0)
        # and the name can be taken again
        self.assertEqual(self.ctl('adduser', jid, password='third').returncode, 0)
        self.assertTrue(await self.can_login(jid, 'third'))

    @async_test
    async def test_duplicate_adduser_fails(self):
        jid = 'dup@localhost'
        self.assertEqual(self.ctl('adduser', jid, password='original').returncode, 0)
        r = self.ctl('adduser', jid, password='replacement')
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stderr.strip(), 'no message for a duplicate account')
        self.assertTrue(await self.can_login(jid, 'original'))
        self.assertFalse(await self.can_login(jid, 'replacement'))

    def test_hosts_are_separate(self):
        self.assertEqual(self.ctl('adduser', 'same@localhost', password='a').returncode, 0)
        self.assertEqual(self.ctl('adduser', 'same@example.test', password='b').returncode, 0)
        self.assertIn('same@example.test', self.listed('example.test'))
        self.assertNotIn('same@example.test', self.listed('localhost'))
        self.assertEqual(self.ctl('check-password', 'same@localhost', password='a').returncode, 0)
        self.assertEqual(self.ctl('check-password', 'same@example.test',
                                  password='a').returncode, 1)

    def test_jid_is_normalised(self):
        self.assertEqual(self.ctl('adduser', 'MiXeD@LocalHost', password='pw').returncode, 0)
        self.assertIn('mixed@localhost', self.listed('localhost'))
        self.assertEqual(self.ctl('check-password', 'mixed@localhost',
                                  password='pw').returncode, 0)

    def test_user_errors_exit_1(self):
        for args in (('adduser', 'someone@unknown.test'), ('adduser', '@localhost'),
                     ('adduser', 'no-domain'), ('passwd', 'ghost@localhost'),
                     ('deluser', 'ghost@localhost')):
            with self.subTest(args=args):
                r = self.ctl(*args, password='pw')
                self.assertEqual(r.returncode, 1, '%s: %s%s' % (args, r.stdout, r.stderr))
                self.assertTrue(r.stderr.strip())

    def test_config_and_database_errors_exit_2(self):
        r = self.server.ctl('list', config=os.path.join(self.server.dir, 'absent.conf'))
        self.assertEqual(r.returncode, 2, r.stderr)
        # a database that cannot be reached
        cfg = self.server.config({'storage': {
            'conninfo': 'host=%s dbname=x user=postgres' % os.path.join(self.server.dir, 'nope'),
            'timeout': 1}})
        bad = os.path.join(self.server.dir, 'nodb.conf')
        with open(bad, 'w') as f:
            f.write(render_config(cfg))
        t0 = time.monotonic()
        r = self.server.ctl('list', config=bad)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertTrue(r.stderr.strip())
        self.assertLess(time.monotonic() - t0, 30 * SLOW)

    @async_test(timeout=120)
    async def test_password_never_visible(self):
        jid, pw = 'secret@localhost', 'S3cret-Horse-Battery'
        # argv: stanzactl waits for the password on stdin; its command line never holds it
        p = subprocess.Popen([STANZACTL_BIN, '-c', self.server.config_path, 'adduser', jid],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=sanitizer_env())
        time.sleep(0.3 * SLOW)
        try:
            with open('/proc/%d/cmdline' % p.pid, 'rb') as f:
                self.assertNotIn(pw.encode(), f.read())
        except FileNotFoundError:
            pass
        out, err = p.communicate(pw + '\n', timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn(pw, out + err)
        r = self.ctl('passwd', jid, password=pw + '2')
        self.assertNotIn(pw, r.stdout + r.stderr)
        r = self.ctl('passwd', jid, password=pw)
        self.assertEqual(r.returncode, 0)

        # logins at debug level, PLAIN included, leave no trace of it in the log
        start = self.server.log_offset()
        self.assertTrue(await self.can_login(jid, pw, 'PLAIN'))
        self.assertTrue(await self.can_login(jid, pw, 'SCRAM-SHA-256'))
        self.assertFalse(await self.can_login(jid, pw + 'x', 'PLAIN'))
        logtext = self.server.log_text(start)
        self.assertTrue(logtext, 'the server logged nothing at debug level')
        plain_blob = base64.b64encode(('\0secret\0' + pw).encode()).decode()
        for needle in (pw, plain_blob, plain_blob.rstrip('=')):
            self.assertNotIn(needle, logtext)

        # the database holds verifiers, not the password
        dump = self.world.cluster.dump(self.server.db)
        self.assertIn('secret', dump)   # the account is there…
        for needle in (pw, base64.b64encode(pw.encode()).decode(), pw.encode().hex()):
            self.assertNotIn(needle, dump)   # …its password is not


if __name__ == '__main__':
    main()
