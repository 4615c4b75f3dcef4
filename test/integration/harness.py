"""
harness.py — the integration-test world for stanzad.

Each test/integration/test_*.py imports this module and is one CTest test. The harness owns
everything the server needs and tears it down at exit (normal, exception, SIGTERM/SIGINT/SIGHUP;
children also get a parent-death signal, so a SIGKILLed test leaves no server or postgres behind):

  world()                   one per process: a temp folder, a private PostgreSQL cluster
                            (Unix socket only, fsync off) and throw-away certificates for
                            "localhost" and "example.test"
  Server(world, name, overrides)
                            a config written from default_config() + overrides, a fresh
                            database, stanzad on free ports; start(), stop() (SIGTERM, exit
                            status 0 and a sanitizer-clean log are asserted), signal(), log_text(),
                            ctl()/add_user() for stanzactl
  Client                    a slixmpp ClientXMPP that accepts the self-signed certificates, lets a
                            test choose the SASL mechanism and the TLS version, and records what it
                            receives (messages, presences, stream errors) for wait_*() helpers
  RawClient                 an asyncio socket speaking XML by hand: open_stream(), starttls(),
                            auth_plain(), auth_scram(), bind(), login(), send(), wait_for(),
                            expect_stream_error() — for exact and hostile protocol checks
  ExporterClient            a blocking pyOpenSSL client for the one thing Python's ssl cannot do:
                            TLS 1.3 channel binding (tls-exporter) for SCRAM-…-PLUS
  ServerTestCase            unittest.TestCase with a server per class (class attribute `config`
                            holds overrides, `users` the accounts to create); tests are
                            `@async_test async def test_…(self)`; on failure the server log of
                            that test is printed
  main()                    unittest.main() that exits non-zero on any failure

Environment: STANZAD_BIN, STANZACTL_BIN, STANZAD_SOURCE_DIR, STANZAD_BUILD_DIR (set by CTest;
defaults derive from this file's location), STANZAD_TEST_KEEP=1 keeps the temp folder,
STANZAD_TEST_VERBOSE=1 prints server logs even for passing tests.
"""

import asyncio
import atexit
import base64
import collections
import ctypes
import functools
import hashlib
import hmac
import itertools
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as xml_escape, quoteattr

# ---------------------------------------------------------------------------------------------
# Paths and environment

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get('STANZAD_SOURCE_DIR')
                             or os.path.dirname(os.path.dirname(HERE)))
BUILD_DIR = os.path.abspath(os.environ.get('STANZAD_BUILD_DIR')
                            or os.path.join(SOURCE_DIR, 'build'))
STANZAD_BIN = os.path.abspath(os.environ.get('STANZAD_BIN')
                              or os.path.join(BUILD_DIR, 'stanzad'))
STANZACTL_BIN = os.path.abspath(os.environ.get('STANZACTL_BIN')
                                or os.path.join(BUILD_DIR, 'stanzactl'))
# Where the build puts mod_<name>.so (the real modules and the test-only ones).
MODULE_DIR = os.path.join(BUILD_DIR, 'modules')
KEEP = os.environ.get('STANZAD_TEST_KEEP') == '1'
VERBOSE = os.environ.get('STANZAD_TEST_VERBOSE') == '1'


def _sanitized_build():
    try:
        with open(os.path.join(BUILD_DIR, 'CMakeCache.txt')) as f:
            return re.search(r'^STANZAD_SANITIZE:BOOL=(ON|1|TRUE|YES)\s*$', f.read(),
                             re.M | re.I) is not None
    except OSError:
        return False


SANITIZED = _sanitized_build()
# Every wait has a timeout; a sanitizer build is slower, so waits are longer there.
SLOW = 3.0 if SANITIZED else 1.0
TIMEOUT = 10.0 * SLOW

NS_STREAM = 'http://etherx.jabber.org/streams'
NS_CLIENT = 'jabber:client'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session'
NS_STREAM_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams'
NS_STANZA_ERRORS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_PING = 'urn:xmpp:ping'

SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'runtime error:', 'ERROR: LeakSanitizer')


def sanitizer_env(env=None):
    """The environment for a child process: sanitizer options that make any report fatal."""
    env = dict(os.environ if env is None else env)
    env.setdefault('ASAN_OPTIONS', 'abort_on_error=0:halt_on_error=1:detect_leaks=1:'
                   'print_summary=1:detect_stack_use_after_return=1')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
    env.setdefault('LSAN_OPTIONS', 'print_suppressions=0')
    return env


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def sanitizer_excerpt(text, lines=60):
    """The lines of text from the first sanitizer report on."""
    m = sanitizer_report(text)
    if m is None:
        return ''
    start = text.rfind('\n', 0, text.index(m)) + 1
    return '\n'.join(text[start:].splitlines()[:lines])


# Enough descriptors for 1,000 client sockets in this process and in the server (inherited).
try:
    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
    if _soft == resource.RLIM_INFINITY or _soft < _want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
except (ValueError, OSError):
    pass

# ---------------------------------------------------------------------------------------------
# Clean-up: everything started registers a clean-up; they run at exit and on fatal signals.

_cleanups = []
_cleaning = False


def on_cleanup(fn):
    _cleanups.append(fn)
    return fn


def run_cleanups():
    global _cleaning
    if _cleaning:
        return
    _cleaning = True
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:  # keep going: the rest must still be stopped
            traceback.print_exc()
    _cleaning = False


atexit.register(run_cleanups)


def _fatal_signal(signum, frame):
    sys.stderr.write('harness: signal %d, cleaning up\n' % signum)
    run_cleanups()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _fatal_signal)

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup(deathsig):
    """preexec_fn: the child gets deathsig when this process dies (even by SIGKILL)."""
    def setup():
        _libc.prctl(_PR_SET_PDEATHSIG, deathsig, 0, 0, 0)
    return setup


def log(msg):
    sys.stderr.write('[harness %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Ports

_used_ports = set()


def port_is_free(port, addr='127.0.0.1'):
    """No socket listens on the port (TIME_WAIT leftovers do not count, as for a server that
    sets SO_REUSEADDR)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_accepts(port, addr='127.0.0.1', timeout=0.5):
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port():
    """A port free on 127.0.0.1, chosen below the kernel's ephemeral range so the many client
    sockets of a parallel test never take it between now and the server's bind."""
    lo, hi = 20000, 32000
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            eph_lo = int(f.read().split()[0])
        hi = min(hi, eph_lo - 1)
        lo = min(lo, hi - 2000)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        p = random.randint(lo, hi)
        if p in _used_ports:
            continue
        if port_is_free(p):
            _used_ports.add(p)
            return p
    raise RuntimeError('no free port found')


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def pg_bindir():
    base = '/usr/lib/postgresql'
    cands = []
    if os.path.isdir(base):
        for v in os.listdir(base):
            b = os.path.join(base, v, 'bin')
            if os.path.exists(os.path.join(b, 'initdb')):
                try:
                    cands.append((float(v), b))
                except ValueError:
                    pass
    if cands:
        return max(cands)[1]
    initdb = shutil.which('initdb')
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError('no PostgreSQL server binaries (install the postgresql package)')


class PgCluster:
    """A throw-away cluster in <base>/pg: Unix socket only, trust auth for superuser postgres.
    Run as the 'postgres' system user when this process is root."""

    def __init__(self, base):
        self.dir = os.path.join(base, 'pg')
        self.data = os.path.join(self.dir, 'data')
        self.socket_dir = os.path.join(self.dir, 'socket')
        self.logfile = os.path.join(self.dir, 'postgresql.log')
        self.bindir = pg_bindir()
        self.proc = None
        self._dbs = itertools.count(1)
        self.user_kw = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam('postgres')
            self.user_kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            self._owner = (pw.pw_uid, pw.pw_gid)
        else:
            self._owner = None

    def _run(self, argv, **kw):
        return subprocess.run(argv, cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120, **self.user_kw, **kw)

    def start(self):
        os.makedirs(self.socket_dir)
        if self._owner:
            for d in (self.dir, self.socket_dir):
                os.chown(d, *self._owner)
        r = self._run([os.path.join(self.bindir, 'initdb'), '-D', self.data, '-U', 'postgres',
                       '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'])
        if r.returncode != 0:
            raise RuntimeError('initdb failed:\n' + r.stdout)
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write("\n# stanzad integration tests\n"
                    "listen_addresses = ''\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 100\nshared_buffers = 32MB\n"
                    "log_min_messages = warning\n" % self.socket_dir)
        logf = open(self.logfile, 'ab')
        self.proc = subprocess.Popen([os.path.join(self.bindir, 'postgres'), '-D', self.data],
                                     cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup(signal.SIGINT), **self.user_kw)
        logf.close()
        on_cleanup(self.stop)
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([os.path.join(self.bindir, 'pg_isready'), '-q', '-h',
                                self.socket_dir, '-U', 'postgres', '-d', 'postgres'])
            if r.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('postgres did not start:\n' + self.log_text())
            time.sleep(0.1)

    def log_text(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def psql(self, sql, db='postgres'):
        r = subprocess.run([os.path.join(self.bindir, 'psql'), '-X', '-q', '-A', '-t',
                            '-v', 'ON_ERROR_STOP=1', '-h', self.socket_dir, '-U', 'postgres',
                            '-d', db, '-c', sql], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('psql %r failed: %s' % (sql, r.stderr))
        return r.stdout

    def create_database(self, name=None):
        name = name or 'stanzad_%d' % next(self._dbs)
        self.psql('CREATE DATABASE "%s"' % name)
        return name

    def dump(self, db):
        """Everything in the database as SQL text (for "no password stored" checks)."""
        r = subprocess.run([os.path.join(self.bindir, 'pg_dump'), '-h', self.socket_dir,
                            '-U', 'postgres', '--inserts', db], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('pg_dump failed: ' + r.stderr)
        return r.stdout

    def conninfo(self, db):
        return 'host=%s dbname=%s user=postgres' % (self.socket_dir, db)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------------------------------------
# Certificates

_serials = itertools.count(int(time.time()) % 1000000 * 1000)


def make_cert(directory, name, *, serial=None, basename=None):
    """A self-signed EC certificate for name (CN and SAN). Returns (cert_path, key_path)."""
    basename = basename or name
    cert = os.path.join(directory, basename + '.crt')
    key = os.path.join(directory, basename + '.key')
    serial = serial if serial is not None else next(_serials)
    tmpc, tmpk = cert + '.tmp', key + '.tmp'
    r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                        'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', tmpk, '-out', tmpc,
                        '-days', '30', '-subj', '/CN=' + name,
                        '-addext', 'subjectAltName=DNS:' + name, '-set_serial', str(serial)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError('openssl failed: ' + r.stdout)
    os.chmod(tmpk, 0o600)
    os.replace(tmpk, key)   # atomic, so a reloading server never sees half a file
    os.replace(tmpc, cert)
    return cert, key


def cert_fingerprint(cert_path):
    """SHA-256 of the DER of a PEM certificate file."""
    with open(cert_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def der_fingerprint(der):
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------------------------
# Config rendering (libconfig syntax)


class _Delete:
    def __repr__(self):
        return 'DELETE'


DELETE = _Delete()   # in overrides: remove this key


class Raw(str):
    """A value written verbatim into the config (for deliberately wrong syntax or types)."""


def deep_merge(base, overrides):
    out = dict(base)
    for k, v in (overrides or {}).items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _render_scalar(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'
    raise TypeError('cannot render %r' % (v,))


def _render_value(v, indent):
    pad = '  ' * indent
    if isinstance(v, dict):
        lines = ['{']
        for k, x in v.items():
            lines.append('%s  %s = %s;' % (pad, k, _render_value(x, indent + 1)))
        lines.append(pad + '}')
        return '\n'.join(lines)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, (dict, list, tuple)) for x in v):
            if not v:
                return '( )'
            items = [pad + '  ' + _render_value(x, indent + 1) for x in v]
            return '(\n' + ',\n'.join(items) + '\n' + pad + ')'
        return '[ ' + ', '.join(_render_scalar(x) for x in v) + ' ]'
    return _render_scalar(v)


def render_config(cfg):
    """libconfig text for a dict: dicts are groups, lists holding groups are lists, other lists
    are arrays. One setting per line, so a test can find the line of a key."""
    out = ['# written by test/integration/harness.py']
    for k, v in cfg.items():
        out.append('%s = %s;' % (k, _render_value(v, 0)))
    return '\n'.join(out) + '\n'


def line_of(text, pattern):
    """1-based number of the first line of text matching the regex pattern."""
    for i, line in enumerate(text.splitlines(), 1):
        if re.search(pattern, line):
            return i
    raise AssertionError('no line matches %r' % pattern)


# ---------------------------------------------------------------------------------------------
# The world: one per test process


class World:
    HOSTS = ('localhost', 'example.test')

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix='stanzad-it-')
        os.chmod(self.base, 0o711)   # the postgres user must reach its cluster below
        self.failed = False
        on_cleanup(self._remove)
        self.certs = {}
        cdir = os.path.join(self.base, 'certs')
        os.makedirs(cdir)
        for h in self.HOSTS:
            self.certs[h] = make_cert(cdir, h)
        self.cluster = PgCluster(self.base)
        self.cluster.start()
        self._names = itertools.count(1)

    def unique(self, prefix):
        return '%s-%d' % (re.sub(r'[^A-Za-z0-9_]+', '_', prefix), next(self._names))

    def _remove(self):
        if KEEP or self.failed:
            log('keeping %s' % self.base)
            return
        shutil.rmtree(self.base, ignore_errors=True)


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def default_config(w, data_dir, db, starttls_port, direct_port):
    return {
        'server': {'workers': 2, 'data_dir': data_dir, 'module_dir': MODULE_DIR},
        'log': {'level': 'debug', 'target': 'stderr'},
        'storage': {'conninfo': w.cluster.conninfo(db), 'connections': 2, 'timeout': 10},
        'tls': {'priority': 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2', 'require_c2s': True},
        'limits': {'max_stanza_size': 65536, 'connect_timeout': 60, 'idle_timeout': 0,
                   'max_connections_per_ip': 0, 'max_output_buffer': 1048576,
                   'auth_failure_delay': 200, 'max_auth_failures': 0},
        'sessions': {'conflict': 'replace', 'max_sessions_per_account': 0},
        'listen': [
            {'type': 'c2s', 'address': '127.0.0.1', 'port': starttls_port, 'tls': 'starttls'},
            {'type': 'c2s', 'address': '127.0.0.1', 'port': direct_port, 'tls': 'direct'},
        ],
        'hosts': [{'name': h, 'certificate': w.certs[h][0], 'key': w.certs[h][1]}
                  for h in w.HOSTS],
    }


# ---------------------------------------------------------------------------------------------
# The server


class ServerError(AssertionError):
    pass


all_servers = []


class Server:
    """One stanzad process with its own config, database, ports and log file."""

    def __init__(self, w=None, name='stanzad', overrides=None, *, db=None):
        self.world = w or world()
        self.name = self.world.unique(name)
        self.dir = os.path.join(self.world.base, self.name)
        os.makedirs(os.path.join(self.dir, 'data'))
        self.db = db or self.world.cluster.create_database(self.name.lower().replace('-', '_'))
        self.starttls_port = free_port()
        self.direct_port = free_port()
        self.config_path = os.path.join(self.dir, 'stanzad.conf')
        self.logfile = os.path.join(self.dir, 'stanzad.log')
        self.overrides = overrides or {}
        self.proc = None
        self.returncode = None
        self.write_config()
        on_cleanup(self.kill)
        all_servers.append(self)

    @property
    def port(self):
        return self.starttls_port

    def base_config(self):
        return default_config(self.world, os.path.join(self.dir, 'data'), self.db,
                              self.starttls_port, self.direct_port)

    def config(self, extra=None):
        return deep_merge(deep_merge(self.base_config(), self.overrides), extra or {})

    def write_config(self, extra=None, text=None):
        """(Re)writes the config file: base + class overrides + extra, or exactly text."""
        if text is None:
            text = render_config(self.config(extra))
        tmp = self.config_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        self.config_text = text
        return text

    # -- process

    def start(self, wait=True, timeout=20 * SLOW):
        assert self.proc is None or self.proc.poll() is not None
        logf = open(self.logfile, 'ab')
        self.returncode = None
        self.proc = subprocess.Popen([STANZAD_BIN, '-c', self.config_path], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=sanitizer_env(),
                                     preexec_fn=_child_setup(signal.SIGKILL))
        logf.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20 * SLOW):
        deadline = time.monotonic() + timeout
        pending = [self.starttls_port, self.direct_port]
        while pending:
            if self.proc.poll() is not None:
                raise ServerError('stanzad exited with status %s before accepting connections\n%s'
                                  % (self.proc.returncode, self.log_block()))
            if port_accepts(pending[0], timeout=0.2):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ServerError('stanzad did not accept connections on port %d within %.0f s\n%s'
                                  % (pending[0], timeout, self.log_block()))
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            rc = self.proc and self.proc.returncode
            if getattr(self, '_death_reported', False):
                raise ServerError('%s is not running (exit status %s); its log is above'
                                  % (self.name, rc))
            self._death_reported = True
            raise ServerError('%s is not running (exit status %s)\n%s'
                              % (self.name, rc, self.log_block()))

    def signal(self, sig):
        self.assert_alive()
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=15 * SLOW):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise ServerError('stanzad did not exit within %.0f s\n%s'
                              % (timeout, self.log_block()))
        return self.returncode

    def stop(self, check=True, timeout=15 * SLOW):
        """SIGTERM, wait for the exit; with check, assert status 0 and a clean log."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if check:
            self.check_log()
            if rc != 0:
                raise ServerError('stanzad exited with status %s after SIGTERM (expected 0)\n%s'
                                  % (rc, self.log_block(limit=8000)))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # -- logs

    def log_text(self, start=0):
        try:
            with open(self.logfile, 'rb') as f:
                f.seek(start)
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_offset(self):
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def log_block(self, start=0, limit=60000):
        text = self.log_text(start)
        if len(text) > limit:
            text = '[... %d bytes cut ...]\n' % (len(text) - limit) + text[-limit:]
        return ('----- %s log (%s) -----\n%s\n----- end of %s log -----'
                % (self.name, self.logfile, text, self.name))

    def check_log(self, start=0):
        text = self.log_text(start)
        m = sanitizer_report(text)
        if m:
            raise ServerError('sanitizer report (%r) in the log of %s (%s):\n%s'
                              % (m, self.name, self.logfile, sanitizer_excerpt(text)))

    # -- stanzactl

    def ctl(self, *args, input=None, timeout=60 * SLOW, config=None):
        """Runs stanzactl -c <config> args…; input is written to stdin. A sanitizer report on
        its stderr fails the test."""
        r = subprocess.run([STANZACTL_BIN, '-c', config or self.config_path] + list(args),
                           input=input if input is not None else '', stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout,
                           env=sanitizer_env())
        m = sanitizer_report(r.stderr)
        if m:
            raise ServerError('sanitizer report (%r) from stanzactl %s:\n%s'
                              % (m, ' '.join(args), r.stderr))
        return r

    def add_user(self, jid, password):
        r = self.ctl('adduser', jid, input=password + '\n')
        if r.returncode != 0:
            raise ServerError('stanzactl adduser %s failed (%d): %s%s'
                              % (jid, r.returncode, r.stdout, r.stderr))

    def check_config(self, path=None):
        r = subprocess.run([STANZAD_BIN, '-c', path or self.config_path, '--check-config'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60 * SLOW, env=sanitizer_env())
        m = sanitizer_report(r.stderr)
        if m:
            raise ServerError('sanitizer report from --check-config:\n' + r.stderr)
        return r


# ---------------------------------------------------------------------------------------------
# TLS for clients


_ctx_cache = {}


def client_ssl_context(tls_max=None, tls_min=None):
    """Accepts the self-signed test certificates (no verification, no hostname check)."""
    key = (tls_max, tls_min)
    if key not in _ctx_cache:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if tls_max is not None:
            ctx.maximum_version = tls_max
        if tls_min is not None:
            ctx.minimum_version = tls_min
        _ctx_cache[key] = ctx
    return _ctx_cache[key]


TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

# ---------------------------------------------------------------------------------------------
# XML helpers


def local(tag):
    return tag.rsplit('}', 1)[-1]


def ns_of(tag):
    return tag[1:].split('}', 1)[0] if tag.startswith('{') else ''


def tag_is(el, name, ns=NS_CLIENT):
    return el is not None and el.tag == '{%s}%s' % (ns, name)


def stanza_error(el):
    """(type, condition) of an error stanza, or None."""
    if el is None or el.get('type') != 'error':
        return None
    err = el.find('{%s}error' % NS_CLIENT)
    if err is None:
        return (None, None)
    for c in err:
        if ns_of(c.tag) == NS_STANZA_ERRORS and local(c.tag) != 'text':
            return (err.get('type'), local(c.tag))
    return (err.get('type'), None)


def body_of(el):
    b = el.find('{%s}body' % NS_CLIENT)
    return b.text if b is not None else None


def to_str(el):
    return ET.tostring(el, encoding='unicode')


def bare(jid):
    return jid.split('/', 1)[0]


def x(s):
    """Escapes text for XML content."""
    return xml_escape(s)


def attr(s):
    return quoteattr(s)


_ids = itertools.count(1)


def new_id(prefix='id'):
    return '%s%d' % (prefix, next(_ids))


# ---------------------------------------------------------------------------------------------
# SCRAM (RFC 5802 / 7677) for RawClient


_salted_cache = {}


class Scram:
    def __init__(self, mech, user, password, *, cb_type=None, cb_data=b'', cb_flag=None,
                 authzid=''):
        self.mech = mech
        self.plus = mech.endswith('-PLUS')
        name = mech[len('SCRAM-'):]
        if self.plus:
            name = name[:-len('-PLUS')]
        self.hash = {'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-512': 'sha512'}[name]
        self.user = user
        self.password = password
        self.cb_data = cb_data or b''
        if self.plus:
            self.gs2 = 'p=%s,' % (cb_type or 'tls-unique')
        else:
            self.gs2 = (cb_flag or 'n') + ','
        self.gs2 += ('a=' + self._saslname(authzid)) if authzid else ''
        self.gs2 += ','
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.server_signature = None

    @staticmethod
    def _saslname(s):
        return s.replace('=', '=3D').replace(',', '=2C')

    def first(self):
        self.first_bare = 'n=%s,r=%s' % (self._saslname(self.user), self.nonce)
        return (self.gs2 + self.first_bare).encode()

    def final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split('=', 1) for kv in sf.split(','))
        if not attrs['r'].startswith(self.nonce):
            raise AssertionError('server nonce does not extend ours: %r' % sf)
        salt = base64.b64decode(attrs['s'])
        iters = int(attrs['i'])
        self.iterations = iters
        key = (self.hash, self.password, salt, iters)
        salted = _salted_cache.get(key)
        if salted is None:
            salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iters)
            _salted_cache[key] = salted
        cbind = base64.b64encode(self.gs2.encode() + (self.cb_data if self.plus else b''))
        without_proof = 'c=%s,r=%s' % (cbind.decode(), attrs['r'])
        auth_message = ','.join((self.first_bare, sf, without_proof)).encode()
        client_key = hmac.new(salted, b'Client Key', self.hash).digest()
        stored_key = hashlib.new(self.hash, client_key).digest()
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b'Server Key', self.hash).digest()
        self.server_signature = hmac.new(server_key, auth_message, self.hash).digest()
        return (without_proof + ',p=' + base64.b64encode(proof).decode()).encode()

    def verify(self, server_final):
        try:
            attrs = dict(kv.split('=', 1) for kv in server_final.decode().split(','))
        except (UnicodeDecodeError, ValueError):
            raise AssertionError('the server-final message is not SCRAM: %r'
                                 % server_final) from None
        if 'v' not in attrs:
            return False
        return hmac.compare_digest(base64.b64decode(attrs['v']), self.server_signature)


# ---------------------------------------------------------------------------------------------
# RawClient: XML by hand over asyncio


class StreamClosed(AssertionError):
    def __init__(self, msg, condition=None):
        super().__init__(msg)
        self.condition = condition


class RawClient:
    """A hand-driven XMPP client. Received top-level elements go to `pending` until a wait takes
    them; `history` keeps every one, `raw_in` every byte (after TLS)."""

    HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' to=%s version='1.0' "
              "xml:lang='en'>")

    def __init__(self, port, *, host='localhost', addr='127.0.0.1', source=None, timeout=None,
                 name=None, read_limit=1 << 20):
        self.port = port
        self.read_limit = read_limit
        self.host = host
        self.addr = addr
        self.source = source
        self.timeout = timeout or TIMEOUT
        self.name = name or 'raw'
        self.reader = self.writer = None
        self.tls = False
        self.jid = None
        self.pending = collections.deque()
        self.history = []
        self.raw_in = bytearray()
        self.header = None
        self.features = None
        self.ended = False      # </stream:stream> received
        self.eof = False        # TCP closed
        self.stream_error = None
        self.parser = None

    def __repr__(self):
        return '<RawClient %s %s>' % (self.name, self.jid or '')

    # -- transport

    async def connect(self, *, direct_tls=False, sni=None, tls_max=None, tls_min=None):
        kw = {}
        if self.source:
            kw['local_addr'] = (self.source, 0)
        if direct_tls:
            kw['ssl'] = client_ssl_context(tls_max, tls_min)
            kw['server_hostname'] = sni or self.host
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.addr, self.port, limit=self.read_limit, **kw),
            self.timeout)
        self.tls = direct_tls
        self._new_parser()
        return self

    def _new_parser(self):
        self.parser = ET.XMLPullParser(events=('start', 'end'))
        self.depth = 0
        self.header = None
        self.ended = False

    @property
    def ssl_object(self):
        return self.writer.get_extra_info('ssl_object') if self.writer else None

    def peer_cert_fingerprint(self):
        return der_fingerprint(self.ssl_object.getpeercert(binary_form=True))

    def tls_version(self):
        return self.ssl_object.version() if self.ssl_object else None

    async def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    def _feed(self, data):
        self.raw_in += data
        try:
            self.parser.feed(data)
            events = list(self.parser.read_events())
        except ET.ParseError as e:
            raise AssertionError('%s: the server sent XML that does not parse (%s); last bytes: %r'
                                 % (self.name, e, bytes(self.raw_in[-500:]))) from None
        for ev, el in events:
            if ev == 'start':
                if self.depth == 0:
                    self.header = el
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    self.ended = True
                elif self.depth == 1:
                    if el.tag == '{%s}error' % NS_STREAM and self.stream_error is None:
                        for c in el:
                            if ns_of(c.tag) == NS_STREAM_ERRORS and local(c.tag) != 'text':
                                self.stream_error = local(c.tag)
                    self.history.append(el)
                    self.pending.append(el)
                    if self.header is not None:
                        del self.header[:]   # children only; keep the attributes

    async def _read_more(self, deadline, what):
        if self.ended or self.eof:
            raise StreamClosed('%s: stream closed while waiting for %s (stream error: %s)'
                               % (self.name, what, self.stream_error), self.stream_error)
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError()
        try:
            data = await asyncio.wait_for(self.reader.read(65536), left)
        except asyncio.TimeoutError:
            raise
        except (ConnectionError, ssl.SSLError, OSError):
            data = b''
        if not data:
            self.eof = True
            return
        self._feed(data)

    async def wait_for(self, pred, timeout=None, what='a matching element'):
        """The first pending element with pred(el) true (removed from pending); waits for more
        input until timeout. Non-matching elements stay pending."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            for el in list(self.pending):
                if pred(el):
                    self.pending.remove(el)
                    return el
            try:
                await self._read_more(deadline, what)
            except asyncio.TimeoutError:
                raise AssertionError('%s: no %s within %.1f s; pending: %s'
                                     % (self.name, what, timeout or self.timeout,
                                        [to_str(e)[:300] for e in self.pending])) from None

    async def next_element(self, timeout=None, what='an element'):
        return await self.wait_for(lambda el: True, timeout, what)

    async def collect(self, duration):
        """Reads for duration seconds; returns the elements that arrived (left pending)."""
        deadline = time.monotonic() + duration
        n = len(self.history)
        while True:
            try:
                await self._read_more(deadline, 'anything')
            except (asyncio.TimeoutError, StreamClosed):
                break
        return self.history[n:]

    async def wait_closed(self, timeout=None):
        """Waits for the end of the stream or TCP close. Returns True if it happened."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not (self.ended or self.eof):
            try:
                await self._read_more(deadline, 'the end of the stream')
            except asyncio.TimeoutError:
                return False
        return True

    # -- stream

    async def open_stream(self, to=None, *, header=None, timeout=None):
        """Sends a stream header (the default one, or exactly `header`) and returns the
        <stream:features/> element."""
        self._new_parser()
        await self.send(header if header is not None else self.HEADER % attr(to or self.host))
        self.features = await self.wait_for(lambda el: tag_is(el, 'features', NS_STREAM),
                                            timeout, 'stream features')
        return self.features

    def mechanisms(self, features=None):
        f = features if features is not None else self.features
        m = f.find('{%s}mechanisms' % NS_SASL)
        if m is None:
            return []
        return [e.text for e in m.findall('{%s}mechanism' % NS_SASL)]

    def starttls_offer(self, features=None):
        """None if not offered, else 'required' or 'optional'."""
        f = features if features is not None else self.features
        st = f.find('{%s}starttls' % NS_TLS)
        if st is None:
            return None
        return 'required' if st.find('{%s}required' % NS_TLS) is not None else 'optional'

    async def starttls(self, *, sni=None, tls_max=None, tls_min=None):
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        el = await self.next_element(what='<proceed/>')
        if not tag_is(el, 'proceed', NS_TLS):
            raise AssertionError('%s: STARTTLS answered with %s' % (self.name, to_str(el)))
        await asyncio.wait_for(self.writer.start_tls(client_ssl_context(tls_max, tls_min),
                                                     server_hostname=sni or self.host),
                               self.timeout)
        self.tls = True
        self._new_parser()   # whatever comes now belongs to a new stream

    async def expect_stream_error(self, condition, timeout=None):
        """Reads until a <stream:error/>; asserts its condition and that the stream (or the
        connection) is closed after it. Returns the error element."""
        try:
            err = await self.wait_for(lambda el: tag_is(el, 'error', NS_STREAM), timeout,
                                      '<stream:error><%s/>' % condition)
        except StreamClosed as e:
            raise AssertionError('%s: connection closed without a <stream:error/> (expected <%s/>);'
                                 ' received: %r' % (self.name, condition,
                                                    bytes(self.raw_in[-2000:]))) from e
        if self.stream_error != condition:
            raise AssertionError('%s: stream error <%s/>, expected <%s/>: %s'
                                 % (self.name, self.stream_error, condition, to_str(err)))
        if not await self.wait_closed(timeout):
            raise AssertionError('%s: stream not closed after <stream:error/>' % self.name)
        return err

    async def close(self, timeout=2.0):
        """Clean close: </stream:stream>, wait for the server's, close TCP."""
        if self.writer is None:
            return
        try:
            if not (self.ended or self.eof):
                await self.send('</stream:stream>')
                await self.wait_closed(timeout)
        except Exception:
            pass
        self.abort(rst=False)

    def abort(self, rst=True):
        """Drops the connection without closing the stream; rst sends a TCP reset."""
        if self.writer is None:
            return
        try:
            if rst:
                sock = self.writer.get_extra_info('socket')
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            self.writer.transport.abort()
        except (OSError, RuntimeError):
            pass
        self.writer = None
        self.eof = True

    # -- SASL

    async def _sasl(self, mech, initial, step):
        """Runs one SASL exchange; step(server_bytes) returns the next client bytes. Returns
        the final <success/> or <failure/> element."""
        data = base64.b64encode(initial).decode() if initial else '='
        await self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism=%s>%s</auth>"
                        % (attr(mech), data))
        while True:
            el = await self.wait_for(lambda e: ns_of(e.tag) == NS_SASL, what='a SASL reply')
            if local(el.tag) in ('success', 'failure'):
                return el
            if local(el.tag) != 'challenge':
                raise AssertionError('unexpected SASL element ' + to_str(el))
            challenge = base64.b64decode(el.text or '')
            resp = step(challenge)
            await self.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>"
                            % (base64.b64encode(resp).decode() if resp else ''))

    @staticmethod
    def sasl_condition(el):
        """'success', or the failure condition name."""
        if tag_is(el, 'success', NS_SASL):
            return 'success'
        for c in el:
            if local(c.tag) != 'text':
                return local(c.tag)
        return None

    async def auth_plain(self, user, password, authzid=''):
        blob = ('%s\0%s\0%s' % (authzid, user, password)).encode()
        return await self._sasl('PLAIN', blob, lambda c: b'')

    async def auth_scram(self, user, password, mech='SCRAM-SHA-1', *, cb_type=None,
                         cb_data=None, cb_flag=None):
        if mech.endswith('-PLUS') and cb_data is None:
            cb_type = cb_type or 'tls-unique'
            cb_data = self.ssl_object.get_channel_binding(cb_type)
        s = Scram(mech, user, password, cb_type=cb_type, cb_data=cb_data, cb_flag=cb_flag)
        self.scram = s
        state = {'n': 0}

        def step(challenge):
            state['n'] += 1
            if state['n'] == 1:
                self.scram_server_first = challenge
                return s.final(challenge)
            if not s.verify(challenge):
                raise AssertionError('bad server signature in %r' % challenge)
            return b''
        el = await self._sasl(mech, s.first(), step)
        if tag_is(el, 'success', NS_SASL) and el.text and el.text.strip() not in ('', '='):
            if not s.verify(base64.b64decode(el.text)):
                raise AssertionError('bad server signature in <success/>')
        return el

    async def authenticate(self, user, password, mech='PLAIN', **kw):
        if mech == 'PLAIN':
            return await self.auth_plain(user, password)
        return await self.auth_scram(user, password, mech, **kw)

    # -- binding and stanzas

    async def bind_iq(self, resource=None):
        """Sends the bind iq; returns the reply iq element (result or error)."""
        iid = new_id('bind')
        res = '<resource>%s</resource>' % x(resource) if resource is not None else ''
        await self.send("<iq type='set' id='%s'><bind xmlns='%s'>%s</bind></iq>"
                        % (iid, NS_BIND, res))
        return await self.wait_for(lambda e: tag_is(e, 'iq') and e.get('id') == iid,
                                   what='the bind reply')

    async def bind(self, resource=None):
        reply = await self.bind_iq(resource)
        if reply.get('type') != 'result':
            raise AssertionError('bind failed: ' + to_str(reply))
        j = reply.find('{%s}bind/{%s}jid' % (NS_BIND, NS_BIND))
        self.jid = j.text.strip()
        return self.jid

    async def login(self, user, password, resource=None, *, mech='PLAIN', tls='starttls',
                    to=None, tls_max=None, presence=False, priority=None, session=False):
        """connect, (STARTTLS|direct TLS|none), SASL, bind. user is the localpart. Returns the
        bound full JID."""
        await self.connect(direct_tls=(tls == 'direct'), tls_max=tls_max)
        await self.open_stream(to)
        if tls == 'starttls':
            await self.starttls(tls_max=tls_max)
            await self.open_stream(to)
        el = await self.authenticate(user, password, mech)
        if not tag_is(el, 'success', NS_SASL):
            raise AssertionError('%s: %s login as %s failed: %s'
                                 % (self.name, mech, user, to_str(el)))
        await self.open_stream(to)
        await self.bind(resource)
        if session:
            await self.session()
        if presence or priority is not None:
            await self.send_presence(priority=priority)
        return self.jid

    async def session(self):
        r = await self.iq('set', "<session xmlns='%s'/>" % NS_SESSION)
        if r.get('type') != 'result':
            raise AssertionError('session iq failed: ' + to_str(r))
        return r

    async def iq(self, type, payload, to=None, iid=None, timeout=None):
        """Sends an iq and returns the reply (result or error) with the same id."""
        iid = iid or new_id('iq')
        to_a = ' to=%s' % attr(to) if to else ''
        await self.send("<iq type='%s' id=%s%s>%s</iq>" % (type, attr(iid), to_a, payload))
        return await self.wait_for(
            lambda e: tag_is(e, 'iq') and e.get('id') == iid
            and e.get('type') in ('result', 'error'), timeout, 'the reply to iq %s' % iid)

    async def send_message(self, to, body, *, type='chat', iid=None, frm=None, extra=''):
        a = ' to=%s' % attr(to) if to is not None else ''
        if type:
            a += ' type=%s' % attr(type)
        if iid:
            a += ' id=%s' % attr(iid)
        if frm:
            a += ' from=%s' % attr(frm)
        await self.send('<message%s><body>%s</body>%s</message>' % (a, x(body), extra))

    async def send_presence(self, to=None, *, type=None, priority=None, extra=''):
        a = ''
        if to:
            a += ' to=%s' % attr(to)
        if type:
            a += ' type=%s' % attr(type)
        inner = '<priority>%d</priority>' % priority if priority is not None else ''
        await self.send('<presence%s>%s%s</presence>' % (a, inner, extra))

    async def wait_message(self, body=None, frm=None, timeout=None, type=None):
        def pred(el):
            if not tag_is(el, 'message'):
                return False
            if body is not None and body_of(el) != body:
                return False
            if frm is not None and el.get('from') != frm:
                return False
            if type is not None and el.get('type', 'normal') != type:
                return False
            return True
        return await self.wait_for(pred, timeout, 'a message with body %r' % body)

    async def wait_presence(self, frm=None, type=None, timeout=None):
        def pred(el):
            return (tag_is(el, 'presence') and (frm is None or el.get('from') == frm)
                    and (type is None or el.get('type') == type))
        return await self.wait_for(pred, timeout, 'presence from %s type %s' % (frm, type))

    def messages(self, body=None):
        """Messages received so far (history), optionally with a given body."""
        return [e for e in self.history
                if tag_is(e, 'message') and (body is None or body_of(e) == body)]

    async def answer_iqs(self):
        """Answers get/set iqs already pending with an empty result (for round-trip tests)."""
        for el in list(self.pending):
            if tag_is(el, 'iq') and el.get('type') in ('get', 'set'):
                self.pending.remove(el)
                await self.send("<iq type='result' id=%s to=%s/>"
                                % (attr(el.get('id', '')), attr(el.get('from', ''))))


# ---------------------------------------------------------------------------------------------
# TLS 1.3 channel binding (tls-exporter, RFC 9266): Python's ssl module cannot export keying
# material, pyOpenSSL (Debian python3-openssl) can. A small blocking client for that one check.

try:
    from OpenSSL import SSL as _OSSL
except ImportError:   # the test that needs it is skipped
    _OSSL = None


class ExporterClient:
    """STARTTLS with TLS 1.3 through pyOpenSSL, then SASL; blocking, every read bounded by a
    deadline."""

    available = _OSSL is not None

    def __init__(self, port, host='localhost', timeout=None):
        self.host = host
        self.deadline = time.monotonic() + (timeout or TIMEOUT)
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout or TIMEOUT)
        self.sock.setblocking(False)
        self.conn = None
        self.pending = collections.deque()
        self._new_parser()

    def _new_parser(self):
        self.parser = ET.XMLPullParser(events=('start', 'end'))
        self.depth = 0

    def _io(self, fn, *args):
        import select
        while True:
            try:
                return fn(*args)
            except (BlockingIOError, InterruptedError) if self.conn is None else \
                    (_OSSL.WantReadError, _OSSL.WantWriteError):
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('ExporterClient: timed out')
                select.select([self.sock], [self.sock], [], min(left, 0.2))

    def send(self, data):
        data = data.encode() if isinstance(data, str) else data
        while data:
            n = self._io((self.conn or self.sock).send, data)
            data = data[n:]

    def next_element(self):
        while not self.pending:
            try:
                data = self._io((self.conn or self.sock).recv, 65536)
            except _OSSL.ZeroReturnError:
                data = b''
            if not data:
                raise StreamClosed('ExporterClient: connection closed')
            self.parser.feed(data)
            for ev, el in self.parser.read_events():
                if ev == 'start':
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.pending.append(el)
        return self.pending.popleft()

    def open_stream(self):
        self._new_parser()
        self.send(RawClient.HEADER % attr(self.host))
        while True:
            el = self.next_element()
            if tag_is(el, 'features', NS_STREAM):
                return el

    def starttls13(self):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        el = self.next_element()
        assert tag_is(el, 'proceed', NS_TLS), to_str(el)
        ctx = _OSSL.Context(_OSSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(_OSSL.TLS1_3_VERSION)
        ctx.set_verify(_OSSL.VERIFY_NONE, lambda *a: True)
        self.conn = _OSSL.Connection(ctx, self.sock)
        self.conn.set_tlsext_host_name(self.host.encode())
        self.conn.set_connect_state()
        self._io(self.conn.do_handshake)
        self._new_parser()
        return self.conn.get_protocol_version_name()

    def exporter(self):
        return self.conn.export_keying_material(b'EXPORTER-Channel-Binding', 32)

    def auth_scram(self, user, password, mech, cb_type, cb_data):
        sc = Scram(mech, user, password, cb_type=cb_type, cb_data=cb_data)
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                  % (NS_SASL, mech, base64.b64encode(sc.first()).decode()))
        el = self.next_element()
        if not tag_is(el, 'challenge', NS_SASL):
            return el
        final = sc.final(base64.b64decode(el.text or ''))
        self.send("<response xmlns='%s'>%s</response>" % (NS_SASL, base64.b64encode(final).decode()))
        el = self.next_element()
        if tag_is(el, 'challenge', NS_SASL):
            if not sc.verify(base64.b64decode(el.text or '')):
                raise AssertionError('bad server signature')
            self.send("<response xmlns='%s'/>" % NS_SASL)
            el = self.next_element()
        elif tag_is(el, 'success', NS_SASL) and el.text and el.text.strip() not in ('', '='):
            if not sc.verify(base64.b64decode(el.text)):
                raise AssertionError('bad server signature in <success/>')
        return el

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# slixmpp client

import logging                                     # noqa: E402
import slixmpp                                     # noqa: E402
from slixmpp.xmlstream.handler import Callback     # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath   # noqa: E402

logging.getLogger('slixmpp').setLevel(logging.CRITICAL)
logging.getLogger('asyncio').setLevel(logging.CRITICAL)   # "Fatal error on SSL protocol" noise
if os.environ.get('STANZAD_TEST_SLIXMPP_DEBUG') == '1':
    logging.basicConfig(level=logging.DEBUG)
    logging.getLogger('slixmpp').setLevel(logging.DEBUG)


class LoginFailed(AssertionError):
    def __init__(self, msg, condition=None):
        super().__init__(msg)
        self.condition = condition


class Client(slixmpp.ClientXMPP):
    """slixmpp with: self-signed certificates accepted, a chosen SASL mechanism (mech) and TLS
    version range, SNI = the JID's domain, connection to 127.0.0.1 without DNS, and a record of
    every message, presence and stream error it receives."""

    def __init__(self, jid, password, *, mech=None, tls_max=None, tls_min=None, name=None):
        super().__init__(jid, password)
        self.name = name or jid
        self.mech = mech
        ctx = self.ssl_context
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if tls_max is not None:
            ctx.maximum_version = tls_max
        if tls_min is not None:
            ctx.minimum_version = tls_min
        fm = self['feature_mechanisms']
        if mech:
            fm.use_mech = mech
        # Channel binding only for a -PLUS mechanism. slixmpp would otherwise send the gs2 flag
        # "y" (client supports binding, thinks the server does not), which a server offering
        # -PLUS must reject (RFC 5802 §6): a real client picking plain SCRAM sends "n".
        default_cb = fm.sasl_callback

        def creds(required, optional):
            r = default_cb(required, optional)
            if 'channel_binding' in r and not (mech or '').endswith('-PLUS'):
                r['channel_binding'] = None
            return r
        fm.sasl_callback = creds
        self.whitespace_keepalive = False
        self.stanzas = []           # every message / presence / iq received
        self.stream_errors = []     # conditions
        self.auth_failures = []     # conditions
        self._changed = asyncio.Event()
        self.register_handler(Callback('itest message', MatchXPath('{%s}message' % NS_CLIENT),
                                       self._record))
        self.register_handler(Callback('itest presence', MatchXPath('{%s}presence' % NS_CLIENT),
                                       self._record))
        self.sasl_success_seen = False
        self.register_handler(Callback('itest sasl success',
                                       MatchXPath('{%s}success' % NS_SASL),
                                       self._on_sasl_success))
        self.add_event_handler('stream_error', self._on_stream_error)
        self.add_event_handler('failed_auth', self._on_failed_auth)
        self.add_event_handler('disconnected', lambda e: self._changed.set())
        self.add_event_handler('session_start', lambda e: self._changed.set())

    # slixmpp resolves the domain through DNS; the tests always reach 127.0.0.1:<port>.
    async def get_dns_records(self, domain, port=None):
        return [(self.boundjid.domain, '127.0.0.1', self._itest_port)]

    def _record(self, stanza):
        self.stanzas.append(stanza)
        self._changed.set()

    def _on_sasl_success(self, stanza):
        self.sasl_success_seen = True

    def _on_stream_error(self, err):
        self.stream_errors.append(err['condition'])
        self._changed.set()

    def _on_failed_auth(self, failure):
        self.auth_failures.append(failure['condition'])
        self._changed.set()

    async def _wait(self, check, timeout, what):
        deadline = time.monotonic() + (timeout if timeout is not None else TIMEOUT)
        while True:
            r = check()
            if r:
                return r
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('%s: %s did not happen within %.1f s'
                                     % (self.name, what, timeout or TIMEOUT))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def login(self, port, *, direct=False, timeout=None):
        """Connects to 127.0.0.1:port (STARTTLS, or direct TLS) and waits for session_start.
        Raises LoginFailed(condition) on an authentication failure or disconnect."""
        self._itest_port = port
        self.default_domain = self.boundjid.domain   # SNI
        self.connect(('127.0.0.1', port), use_ssl=direct, force_starttls=not direct)
        done = {}
        self.add_event_handler('session_start', lambda e: done.setdefault('ok', True),
                               disposable=True)
        self.add_event_handler('failed_all_auth', lambda e: done.setdefault('fail', 'auth'),
                               disposable=True)
        self.add_event_handler('disconnected', lambda e: done.setdefault('fail', 'disconnect'),
                               disposable=True)
        self.add_event_handler('connection_failed', lambda e: done.setdefault('fail', 'connect'),
                               disposable=True)
        self.add_event_handler('failed_all_auth', lambda e: self._changed.set())
        try:
            await self._wait(lambda: done, timeout, 'login')
        except AssertionError:
            self.abort_now()
            raise
        if 'ok' not in done:
            cond = self.auth_failures[-1] if self.auth_failures else None
            self.abort_now()
            why = done.get('fail')
            if why == 'disconnect' and self.sasl_success_seen and not self.authenticated:
                why = ('disconnected by slixmpp after <success/>: the server signature in the '
                       'SASL success data did not verify')
            raise LoginFailed('%s: login failed (%s; SASL condition %s, stream errors %s)'
                              % (self.name, why, cond, self.stream_errors), cond)
        return self

    def abort_now(self):
        self.cancel_connection_attempt()
        try:
            self.abort()
        except (AttributeError, RuntimeError, OSError):
            pass   # the transport is already half torn down

    def tls_version(self):
        so = self.transport.get_extra_info('ssl_object') if self.transport else None
        return so.version() if so else None

    def chosen_mech(self):
        m = self['feature_mechanisms'].mech
        return m.name if m else None

    async def logout(self, timeout=3.0):
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=timeout), timeout + 1)
        except (asyncio.TimeoutError, Exception):
            pass
        self.abort_now()

    def send_chat(self, to, body, mtype='chat'):
        self.send_message(mto=to, mbody=body, mtype=mtype)

    async def wait_message(self, body=None, frm=None, timeout=None):
        def check():
            for s in self.stanzas:
                if s.name == 'message' and (body is None or s['body'] == body) \
                        and (frm is None or str(s['from']) == frm):
                    return s
            return None
        return await self._wait(check, timeout, 'message %r' % body)

    async def wait_presence(self, frm=None, ptype=None, timeout=None):
        def check():
            for s in self.stanzas:
                if s.name == 'presence' and (frm is None or str(s['from']) == frm) \
                        and (ptype is None or s['type'] == ptype):
                    return s
            return None
        return await self._wait(check, timeout, 'presence from %s (%s)' % (frm, ptype))

    async def wait_stream_error(self, condition=None, timeout=None):
        c = await self._wait(lambda: self.stream_errors[:1], timeout, 'a stream error')
        if condition is not None and c[0] != condition:
            raise AssertionError('%s: stream error <%s/>, expected <%s/>'
                                 % (self.name, c[0], condition))
        return c[0]

    async def wait_disconnected(self, timeout=None):
        await self._wait(lambda: self.transport is None, timeout, 'disconnect')


# ---------------------------------------------------------------------------------------------
# unittest glue


def async_test(fn=None, *, timeout=None):
    """Runs an `async def test_…(self)` in a fresh event loop with an overall timeout; clients
    made through self.client()/self.raw() are closed afterwards."""
    def deco(f):
        @functools.wraps(f)
        def wrapper(self):
            async def main():
                self._clients = []
                try:
                    await asyncio.wait_for(f(self), (timeout or 60) * SLOW)
                finally:
                    await self.close_clients()
            asyncio.run(main())
        return wrapper
    return deco(fn) if fn is not None else deco


class ServerTestCase(unittest.TestCase):
    """A stanzad per class. Subclasses set `config` (overrides for default_config) and `users`
    ({'alice@localhost': 'password'}) created with stanzactl after start."""

    config = {}
    users = {}
    start_server = True

    @classmethod
    def setUpClass(cls):
        cls.world = world()
        cls.server = Server(cls.world, cls.__name__, cls.config)
        if not cls.start_server:
            return
        try:
            cls.server.start()
            for jid, pw in cls.users.items():
                cls.server.add_user(jid, pw)
        except BaseException:
            cls.world.failed = True
            cls.server.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop(check=True)
        except BaseException:
            cls.world.failed = True
            raise

    def run(self, result=None):
        starts = {id(s): s.log_offset() for s in all_servers}
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        failed = result is not None and len(result.failures) + len(result.errors) > before
        if failed or VERBOSE:
            if failed:
                world().failed = True
            for s in all_servers:
                start = starts.get(id(s), 0)
                if s.log_offset() > start:
                    sys.stderr.write('\n%s: server log during this test:\n%s\n'
                                     % (self.id(), s.log_block(start)))
        return out

    def setUp(self):
        self._log_start = self.server.log_offset()
        if self.start_server:
            self.server.assert_alive()

    def tearDown(self):
        if self.start_server and self.server.proc is not None:
            self.server.check_log(self._log_start)

    # -- clients

    async def close_clients(self):
        clients, self._clients = getattr(self, '_clients', []), []
        aws = []
        for c in clients:
            if isinstance(c, RawClient):
                aws.append(c.close(timeout=1.0))
            else:
                aws.append(c.logout(timeout=1.0))
        if aws:
            await asyncio.gather(*aws, return_exceptions=True)

    def track(self, c):
        self._clients.append(c)
        return c

    def raw(self, port=None, **kw):
        """A RawClient (not connected) closed at the end of the test."""
        return self.track(RawClient(port or self.server.starttls_port, **kw))

    async def raw_login(self, jid, password=None, resource=None, **kw):
        """A RawClient logged in as jid (user@host), PLAIN over STARTTLS unless told."""
        user, host = jid.split('@', 1)
        password = password if password is not None else self.users[jid]
        port = self.server.direct_port if kw.get('tls') == 'direct' else self.server.starttls_port
        ckw = {k: kw.pop(k) for k in ('source', 'timeout', 'read_limit') if k in kw}
        c = self.raw(port, host=host, name=kw.pop('name', None) or '%s/%s' % (jid, resource),
                     **ckw)
        await c.login(user, password, resource, **kw)
        return c

    async def client(self, jid, password=None, resource=None, *, direct=False, **kw):
        """A slixmpp Client logged in (session started) as jid[/resource]."""
        password = password if password is not None else self.users[bare(jid)]
        full = jid + ('/' + resource if resource else '')
        c = self.track(Client(full, password, **kw))
        port = self.server.direct_port if direct else self.server.starttls_port
        await c.login(port, direct=direct)
        return c


def main():
    """unittest.main() that exits non-zero on any failure, error or unexpected success."""
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    ok = res.wasSuccessful() and res.testsRun > 0
    sys.stdout.flush()
    sys.stderr.flush()
    run_cleanups()
    sys.exit(0 if ok else 1)
