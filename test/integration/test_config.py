#!/usr/bin/python3
"""Configuration errors: --check-config, and a real start with a bad config, both name
"file:line: key:" and bind no port."""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, main, Raw, STANZAD_BIN, sanitizer_env,  # noqa
                     sanitizer_report, port_accepts, port_is_free, line_of, render_config, SLOW,
                     SOURCE_DIR)


class Config(ServerTestCase):
    start_server = False   # these tests run stanzad themselves

    def write(self, overrides=None, text=None):
        """Writes the server's config with extra overrides (or exact text); returns the text."""
        return self.server.write_config(overrides, text)

    def run_check(self):
        r = self.server.check_config()
        return r.returncode, r.stdout + r.stderr

    def run_start(self):
        """Starts stanzad for real with the current config; asserts it never accepts a
        connection on its ports and exits non-zero. Returns (status, output)."""
        ports = (self.server.starttls_port, self.server.direct_port)
        logpath = os.path.join(self.server.dir, 'bad-start.log')
        with open(logpath, 'wb') as logf:
            p = subprocess.Popen([STANZAD_BIN, '-c', self.server.config_path],
                                 stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 env=sanitizer_env())
        deadline = time.monotonic() + 20 * SLOW
        bound = []
        try:
            while p.poll() is None and time.monotonic() < deadline:
                bound += [port for port in ports if port_accepts(port, timeout=0.05)]
                time.sleep(0.005)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
                self.fail('stanzad kept running with a bad config')
        with open(logpath, errors='replace') as f:
            out = f.read()
        self.assertIsNone(sanitizer_report(out), out)
        self.assertEqual(bound, [], 'a port was bound before the config error:\n' + out)
        for port in ports:
            self.assertTrue(port_is_free(port))
        return p.returncode, out

    def assertConfigError(self, line, key, *, real_start=True):
        """Both --check-config and a real start fail with "<file>:<line>: <key…>: message"."""
        path = self.server.config_path
        runs = [('--check-config', self.run_check)]
        if real_start:
            runs.append(('start', self.run_start))
        for what, fn in runs:
            rc, out = fn()
            self.assertNotEqual(rc, 0, '%s accepted a bad config:\n%s\n%s'
                                % (what, out, self.server.config_text))
            pat = r'%s:%d: ([^:\s]*%s[^:\s]*): \S' % (re.escape(path), line, re.escape(key))
            self.assertRegex(out, pat, '%s: no "file:%d: %s: message" in the output:\n%s\n'
                             'config:\n%s' % (what, line, key, out, self.numbered()))

    def numbered(self):
        return '\n'.join('%3d %s' % (i, l)
                         for i, l in enumerate(self.server.config_text.splitlines(), 1))

    # -- the good one

    def test_good_config_checks(self):
        self.write()
        t0 = time.monotonic()
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)
        self.assertLess(time.monotonic() - t0, 15 * SLOW)
        self.assertTrue(port_is_free(self.server.starttls_port))
        self.assertTrue(port_is_free(self.server.direct_port))

    def test_sample_config_in_etc_has_valid_syntax(self):
        # etc/stanzad.conf is documentation; it must at least parse: any error must be about a
        # missing file (certificates, data folder), never an unknown key or a wrong type.
        sample = os.path.join(SOURCE_DIR, 'etc', 'stanzad.conf')
        if not os.path.exists(sample):
            self.skipTest('no etc/stanzad.conf yet')
        r = self.server.check_config(sample)
        if r.returncode != 0:
            self.assertNotRegex(r.stderr, r'(?i)unknown|expected an? |syntax', r.stderr)

    # -- bad ones

    def test_unknown_key(self):
        text = self.write({'limits': {'max_stanza_sise': 1000}})
        self.assertConfigError(line_of(text, r'^\s*max_stanza_sise = '), 'max_stanza_sise')

    def test_unknown_top_level_key(self):
        text = self.write({'frobnicate': 1})
        self.assertConfigError(line_of(text, r'^frobnicate = '), 'frobnicate')

    def test_unknown_key_in_listener(self):
        cfg = self.server.config()
        cfg['listen'][1]['colour'] = 'blue'
        text = self.write(text=render_config(cfg))
        self.assertConfigError(line_of(text, r'^\s*colour = '), 'colour')

    def test_wrong_type(self):
        text = self.write({'limits': {'max_stanza_size': 'large'}})
        self.assertConfigError(line_of(text, r'^\s*max_stanza_size = '), 'max_stanza_size')

    def test_wrong_type_bool(self):
        text = self.write({'tls': {'require_c2s': 'yes'}})
        self.assertConfigError(line_of(text, r'^\s*require_c2s = '), 'require_c2s')

    def test_wrong_type_in_listener(self):
        cfg = self.server.config()
        cfg['listen'][0]['port'] = str(cfg['listen'][0]['port'])
        text = self.write(text=render_config(cfg))
        self.assertConfigError(line_of(text, r'^\s*port = "'), 'port')

    def test_bad_enum_value(self):
        text = self.write({'sessions': {'conflict': 'sometimes'}})
        self.assertConfigError(line_of(text, r'^\s*conflict = '), 'conflict')

    def test_out_of_range(self):
        text = self.write({'limits': {'max_stanza_size': -5}})
        self.assertConfigError(line_of(text, r'^\s*max_stanza_size = '), 'max_stanza_size')

    def test_missing_certificate_file(self):
        cfg = self.server.config()
        cfg['hosts'][1]['certificate'] = os.path.join(self.server.dir, 'no-such-cert.pem')
        text = self.write(text=render_config(cfg))
        self.assertConfigError(line_of(text, r'no-such-cert\.pem'), 'certificate')

    def test_missing_key_file(self):
        cfg = self.server.config()
        cfg['hosts'][0]['key'] = os.path.join(self.server.dir, 'no-such-key.pem')
        text = self.write(text=render_config(cfg))
        self.assertConfigError(line_of(text, r'no-such-key\.pem'), 'key')

    def test_unreadable_certificate(self):
        junk = os.path.join(self.server.dir, 'junk.pem')
        with open(junk, 'w') as f:
            f.write('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n'
                    '-----END CERTIFICATE-----\n')
        cfg = self.server.config()
        cfg['hosts'][0]['certificate'] = junk
        text = self.write(text=render_config(cfg))
        self.assertConfigError(line_of(text, r'junk\.pem'), 'certificate')

    def test_syntax_error(self):
        text = self.write({'limits': {'max_stanza_size': Raw('= 5 ;;')}})
        line = line_of(text, r'max_stanza_size = = 5')
        for what, fn in (('--check-config', self.run_check), ('start', self.run_start)):
            rc, out = fn()
            self.assertNotEqual(rc, 0, out)
            self.assertRegex(out, r'%s:%d: ' % (re.escape(self.server.config_path), line),
                             '%s:\n%s' % (what, out))

    def test_missing_config_file(self):
        r = subprocess.run([STANZAD_BIN, '-c', os.path.join(self.server.dir, 'absent.conf'),
                            '--check-config'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30, env=sanitizer_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('absent.conf', r.stderr)


if __name__ == '__main__':
    main()
