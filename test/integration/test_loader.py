#!/usr/bin/python3
"""The module loader: which modules it refuses and with which exact message, dependency order,
and module settings (defaults, global section, host overrides, and every kind of bad value).

Each negative case is checked twice: `stanzad --check-config` (exit status 1, the message on
stderr) and a real start (exit status non-zero, the message in the log, no port ever bound). The
modules are the test-only ones of test/modules/loader/ (mod_ldr_*.so in the build's modules
directory); a few cases build a module directory of their own in the test's folder.
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ServerTestCase, main, Raw, STANZAD_BIN, MODULE_DIR, SOURCE_DIR,  # noqa
                     sanitizer_env, sanitizer_report, port_accepts, port_is_free, line_of,
                     render_config, SLOW)


def abi_version():
    """(major, minor) of include/stanzad/version.h."""
    with open(os.path.join(SOURCE_DIR, 'include', 'stanzad', 'version.h')) as f:
        text = f.read()
    major = int(re.search(r'#define SD_ABI_MAJOR (\d+)', text).group(1))
    minor = int(re.search(r'#define SD_ABI_MINOR (\d+)', text).group(1))
    return major, minor


MAJOR, MINOR = abi_version()
ABI = '%d.%d' % (MAJOR, MINOR)
# sizeof the ABI 1.0 descriptor up to its last field: five fixed fields (16 bytes), then eight
# pointer-sized ones (name ... unload).
DESC_SIZE_1_0 = 16 + 8 * ctypes.sizeof(ctypes.c_void_p)


def mod_path(name, directory=MODULE_DIR):
    return os.path.join(directory, 'mod_%s.so' % name)


class Loader(ServerTestCase):
    start_server = False   # every test runs stanzad itself

    # -- running stanzad

    def write(self, overrides=None, text=None):
        return self.server.write_config(overrides, text)

    def run_check(self):
        r = self.server.check_config()
        return r.returncode, r.stdout + r.stderr

    def run_start(self):
        """A real start that must fail: never accepts a connection, exits non-zero, writes a
        sanitizer-clean log. Returns (status, output)."""
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
                self.fail('stanzad kept running with a module that must not load')
        with open(logpath, errors='replace') as f:
            out = f.read()
        self.assertIsNone(sanitizer_report(out), out)
        self.assertEqual(bound, [], 'a port was bound before the module error:\n' + out)
        for port in ports:
            self.assertTrue(port_is_free(port))
        return p.returncode, out

    def numbered(self):
        return '\n'.join('%3d %s' % (i, l)
                         for i, l in enumerate(self.server.config_text.splitlines(), 1))

    def assertRefused(self, *expected, check=True, start=True):
        """--check-config and a real start both fail, and each expected message is a whole line
        of --check-config's output and the end of a line of the start's log."""
        runs = []
        if check:
            runs.append(('--check-config', self.run_check))
        if start:
            runs.append(('start', self.run_start))
        for what, fn in runs:
            rc, out = fn()
            self.assertNotEqual(rc, 0, '%s accepted it:\n%s' % (what, out))
            lines = out.splitlines()
            for e in expected:
                if what == '--check-config':
                    ok = e in lines
                else:
                    ok = any(line.endswith(e) for line in lines)
                self.assertTrue(ok, '%s: no line %r in the output:\n%s\nconfig:\n%s'
                                % (what, e, out, self.numbered()))

    def where(self, text, pattern):
        """"<config path>:<line>" of the first line of text matching pattern."""
        return '%s:%d' % (self.server.config_path, line_of(text, pattern))

    def own_module_dir(self, mode=0o755):
        d = os.path.join(self.server.dir, 'mods-%d' % time.monotonic_ns())
        os.makedirs(d)
        os.chmod(d, mode)
        return d

    # -- what loads

    def test_good_modules_load_in_dependency_order_with_merged_settings(self):
        cfg = self.server.config({
            'modules': ['ldr_dep', 'ldr_settings'],   # the dependant first on purpose
            'module_settings': {'ldr_settings': {'count': 7, 'interval': '90s', 'mode': 'quiet',
                                                 'names': ['x', 'y', 'z']}},
        })
        cfg['hosts'][1]['module_settings'] = {
            'ldr_settings': {'flag': True, 'size': '1M', 'name': 'second host', 'names': []}}
        self.write(text=render_config(cfg))
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)
        self.assertIn('configuration is valid', out)

        self.server.start()
        try:
            log = self.server.log_text()
            settings_at = log.index('module ldr_settings test loaded from %s'
                                    % mod_path('ldr_settings'))
            dep_at = log.index('module ldr_dep test loaded from %s' % mod_path('ldr_dep'))
            self.assertLess(settings_at, dep_at, log)
            self.assertIn('[ldr_dep] loaded after its dependency', log)
            # Defaults, overlaid by the global section, overlaid by example.test's own section.
            self.assertIn('[ldr_settings] config (global): flag=0 count=7 size=65536 '
                          'interval=90000 name=hello mode=quiet names=x,y,z', log)
            self.assertIn('[ldr_settings] config localhost: flag=0 count=7 size=65536 '
                          'interval=90000 name=hello mode=quiet names=x,y,z', log)
            self.assertIn('[ldr_settings] config example.test: flag=1 count=7 size=1048576 '
                          'interval=90000 name=second host mode=quiet names=', log)
        finally:
            self.server.stop()

    def test_defaults(self):
        self.write({'modules': ['ldr_settings']})
        self.server.start()
        try:
            self.assertIn('[ldr_settings] config localhost: flag=0 count=5 size=65536 '
                          'interval=300000 name=hello mode=normal names=a,b',
                          self.server.log_text())
        finally:
            self.server.stop()

    def test_host_only_module(self):
        cfg = self.server.config()
        cfg['hosts'][1]['modules'] = ['ldr_settings']
        cfg['hosts'][1]['module_settings'] = {'ldr_settings': {'count': 9}}
        self.write(text=render_config(cfg))
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)

    def test_check_config_does_not_run_load(self):
        # --check-config validates files and settings but calls no load(): a module whose
        # load() fails passes the check and fails the start.
        self.write({'modules': ['ldr_loadfail']})
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)

    # -- refused files

    def test_wrong_magic(self):
        self.write({'modules': ['ldr_magic']})
        self.assertRefused('module ldr_magic (%s): not a stanzad module: bad magic 0x12345678 '
                           '(expected 0x5344414d)' % mod_path('ldr_magic'))

    def test_newer_abi_minor(self):
        self.write({'modules': ['ldr_newminor']})
        self.assertRefused('module ldr_newminor (%s): built for ABI %d.%d, this stanzad has ABI %s'
                           % (mod_path('ldr_newminor'), MAJOR, MINOR + 1, ABI))

    def test_newer_abi_minor_using_a_missing_function(self):
        # RTLD_NOW fails on the undefined symbol; the message still gives the ABI numbers.
        self.write({'modules': ['ldr_future']})
        self.assertRefused('module ldr_future (%s): built for ABI %d.%d, this stanzad has ABI %s'
                           % (mod_path('ldr_future'), MAJOR, MINOR + 1, ABI))

    def test_module_needing_a_newer_version_node(self):
        # Linked against a libstanzad of ABI 1.1: even a lazy dlopen fails on the missing
        # version node, and the loader reads the ABI from the dynamic linker's message.
        path = mod_path('ldr_versioned')
        self.write({'modules': ['ldr_versioned']})
        self.assertRefused("module ldr_versioned (%s): built for ABI %d.%d, this stanzad has ABI "
                           "%s (%s: version `STANZAD_%d.%d' not found (required by %s))"
                           % (path, MAJOR, MINOR + 1, ABI, self.libstanzad(), MAJOR, MINOR + 1,
                              path))

    def libstanzad(self):
        """The libstanzad.so.N the stanzad binary loads (as the dynamic linker names it)."""
        r = subprocess.run(['ldd', STANZAD_BIN], stdout=subprocess.PIPE, text=True)
        m = re.search(r'libstanzad\.so\.\d+ => (\S+)', r.stdout)
        self.assertIsNotNone(m, r.stdout)
        return m.group(1)

    def test_older_abi_major(self):
        self.write({'modules': ['ldr_oldmajor']})
        self.assertRefused('module ldr_oldmajor (%s): built for ABI %d.9, this stanzad has ABI %s'
                           % (mod_path('ldr_oldmajor'), MAJOR - 1, ABI))

    def test_descriptor_too_small(self):
        self.write({'modules': ['ldr_smalldesc']})
        self.assertRefused('module ldr_smalldesc (%s): descriptor of 16 bytes, ABI %s needs at '
                           'least %d' % (mod_path('ldr_smalldesc'), ABI, DESC_SIZE_1_0))

    def test_not_a_stanzad_module(self):
        self.write({'modules': ['ldr_noentry']})
        self.assertRefused('module ldr_noentry (%s): not a stanzad module: no sd_module_v1'
                           % mod_path('ldr_noentry'))

    def test_not_a_shared_object(self):
        d = self.own_module_dir()
        with open(mod_path('ldr_text', d), 'w') as f:
            f.write('This is a text file, not a shared object, though its name says so.\n' * 4)
        self.write({'server': {'module_dir': d}, 'modules': ['ldr_text']})
        self.assertRefused('module ldr_text (%s): cannot load: %s: invalid ELF header'
                           % (mod_path('ldr_text', d), mod_path('ldr_text', d)))

    def test_missing_file(self):
        self.write({'modules': ['ldr_nothere']})
        self.assertRefused('module ldr_nothere (%s): no such file (server.module_dir is %s)'
                           % (mod_path('ldr_nothere'), MODULE_DIR))

    def test_world_writable_file(self):
        d = self.own_module_dir()
        shutil.copy(mod_path('ldr_settings'), d)
        os.chmod(mod_path('ldr_settings', d), 0o666)
        self.write({'server': {'module_dir': d}, 'modules': ['ldr_settings']})
        self.assertRefused('module ldr_settings (%s): refusing a world-writable file (mode 0666)'
                           % mod_path('ldr_settings', d))

    def test_world_writable_directory(self):
        d = self.own_module_dir(0o777)
        shutil.copy(mod_path('ldr_settings'), d)
        text = self.write({'server': {'module_dir': d}, 'modules': ['ldr_settings']})
        self.assertRefused('%s: server.module_dir: refusing to load modules from %s: it is '
                           'world-writable' % (self.where(text, r'^\s*module_dir = '), d))

    def test_descriptor_names_another_module(self):
        self.write({'modules': ['ldr_wrongname']})
        self.assertRefused('module ldr_wrongname (%s): the descriptor names the module '
                           '"ldr_othername", but the file is mod_ldr_wrongname.so'
                           % mod_path('ldr_wrongname'))

    def test_invalid_module_name(self):
        text = self.write({'modules': ['../ldr_settings']})
        self.assertRefused('%s: modules.[0]: invalid module name "../ldr_settings": only a-z, '
                           '0-9 and _, at most 64 characters'
                           % self.where(text, r'^modules = '))

    def test_bad_default_in_module(self):
        self.write({'modules': ['ldr_badtable']})
        self.assertRefused('module ldr_badtable (%s): setting level: bad default "loud": must be '
                           'one of low, high, got "loud"' % mod_path('ldr_badtable'))

    # -- dependencies

    def test_missing_dependency(self):
        self.write({'modules': ['ldr_needs']})
        self.assertRefused('module ldr_needs requires module ldr_absent, which is not in the '
                           'modules list')

    def test_dependency_not_enabled_on_a_host(self):
        cfg = self.server.config({'modules': ['ldr_dep']})
        cfg['hosts'][0]['modules'] = ['ldr_settings']
        self.write(text=render_config(cfg))
        self.assertRefused('module ldr_dep requires module ldr_settings, which is not enabled '
                           'for host example.test (add it to the global modules list or to that '
                           "host's)")

    def test_dependency_cycle(self):
        self.write({'modules': ['ldr_cycle_a', 'ldr_cycle_b']})
        self.assertRefused('modules ldr_cycle_a -> ldr_cycle_b -> ldr_cycle_a form a dependency '
                           'cycle')

    # -- settings

    def settings_error(self, values, pattern, message, key):
        text = self.write({'modules': ['ldr_settings'],
                           'module_settings': {'ldr_settings': values}})
        self.assertRefused('%s: module_settings.ldr_settings.%s: %s'
                           % (self.where(text, pattern), key, message))

    def test_unknown_setting(self):
        self.settings_error({'intervall': '5m'}, r'^\s*intervall = ',
                            "unknown key (did you mean 'interval'?)", 'intervall')

    def test_out_of_range_setting(self):
        self.settings_error({'count': 1000}, r'^\s*count = ',
                            'must be between 1 and 100, got 1000', 'count')

    def test_out_of_range_size(self):
        self.settings_error({'size': '64M'}, r'^\s*size = ',
                            'must be between 1024 and 16777216, got "64M" (67108864)', 'size')

    def test_out_of_range_duration(self):
        self.settings_error({'interval': '2d'}, r'^\s*interval = ',
                            'must be between 1s and 1d, got "2d"', 'interval')

    def test_unparsable_duration(self):
        self.settings_error({'interval': '5 minutes'}, r'^\s*interval = ',
                            'expected a duration such as 30 (seconds), "30s", "5m", "2h", "1d" '
                            'or "250ms", got "5 minutes"', 'interval')

    def test_unparsable_size(self):
        self.settings_error({'size': '12X'}, r'^\s*size = ',
                            'expected a size such as 262144, "256K" or "16M", got "12X"', 'size')

    def test_bad_enum_choice(self):
        self.settings_error({'mode': 'loud'}, r'^\s*mode = ',
                            'must be one of quiet, normal, verbose, got "loud"', 'mode')

    def test_wrong_type(self):
        self.settings_error({'flag': 'yes'}, r'^\s*flag = ',
                            'expected a boolean, got a string', 'flag')

    def test_wrong_type_in_list(self):
        self.settings_error({'names': Raw('( "a", 3 )')}, r'^\s*names = ',
                            'expected a string, got an integer', 'names.[1]')

    def test_bad_host_override(self):
        cfg = self.server.config({'modules': ['ldr_settings']})
        cfg['hosts'][1]['module_settings'] = {'ldr_settings': {'count': 0}}
        text = self.write(text=render_config(cfg))
        self.assertRefused('%s: hosts.[1].module_settings.ldr_settings.count: must be between 1 '
                           'and 100, got 0' % self.where(text, r'^\s*count = '))

    def test_settings_of_a_module_not_listed(self):
        text = self.write({'modules': ['ldr_settings'],
                           'module_settings': {'ldr_setings': {'count': 3}}})
        self.assertRefused('%s: module_settings.ldr_setings: module "ldr_setings" is not in the '
                           "modules list (did you mean 'ldr_settings'?)"
                           % self.where(text, r'^\s*ldr_setings = '))

    def test_host_settings_of_a_module_not_on_that_host(self):
        cfg = self.server.config()
        cfg['hosts'][0]['modules'] = ['ldr_settings']
        cfg['hosts'][1]['module_settings'] = {'ldr_settings': {'count': 3}}
        text = self.write(text=render_config(cfg))
        self.assertRefused('%s: hosts.[1].module_settings.ldr_settings: module "ldr_settings" is '
                           'not enabled for host example.test'
                           % self.where(text, r'^\s*ldr_settings = '))

    def test_module_settings_must_be_groups(self):
        text = self.write({'modules': ['ldr_settings'], 'module_settings': {'ldr_settings': 5}})
        self.assertRefused('%s: module_settings.ldr_settings: expected a group of settings for '
                           'module "ldr_settings", got an integer'
                           % self.where(text, r'^\s*ldr_settings = '))

    def test_every_problem_at_once(self):
        text = self.write({'modules': ['ldr_magic', 'ldr_settings', 'ldr_needs'],
                           'module_settings': {'ldr_settings': {'count': 1000, 'mode': 'x'}}})
        self.assertRefused(
            'module ldr_magic (%s): not a stanzad module: bad magic 0x12345678 (expected '
            '0x5344414d)' % mod_path('ldr_magic'),
            'module ldr_needs requires module ldr_absent, which is not in the modules list',
            '%s: module_settings.ldr_settings.count: must be between 1 and 100, got 1000'
            % self.where(text, r'^\s*count = '),
            '%s: module_settings.ldr_settings.mode: must be one of quiet, normal, verbose, '
            'got "x"' % self.where(text, r'^\s*mode = '))

    def test_migrations_out_of_order(self):
        self.write({'modules': ['ldr_badorder']})
        self.assertRefused('module ldr_badorder (%s): migrations: version 1 after version 2 '
                           '(versions must increase from 1)' % mod_path('ldr_badorder'))

    # -- migrations and load()

    def test_failing_migration_stops_start_up(self):
        # Checked only at start (--check-config touches no database); the module's steps run in
        # one transaction, so its first step is not kept either.
        self.write({'modules': ['ldr_badsql']})
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)
        rc, out = self.run_start()
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r'(?m)module ldr_badsql: migration failed: .*ldr_badsql_missing')
        self.assertEqual(self.world.cluster.psql(
            "SELECT count(*) FROM schema_versions WHERE owner = 'ldr_badsql'",
            db=self.server.db).strip(), '0')
        self.assertEqual(self.world.cluster.psql(
            "SELECT to_regclass('ldr_badsql_items') IS NULL", db=self.server.db).strip(), 't')

    def test_load_failure_stops_start_up(self):
        # ldr_loadfail registers an iq handler, then fails: start-up stops before any port is
        # bound, with the module's own reason. (That its handler is gone is shown with a real
        # client by test_modules.py's test_failload module, which can load with fail = false.)
        self.write({'modules': ['ldr_settings', 'ldr_loadfail']})
        self.assertRefused('module ldr_loadfail: load failed: deliberate failure after '
                           'registering an iq handler', check=False)


if __name__ == '__main__':
    main()
