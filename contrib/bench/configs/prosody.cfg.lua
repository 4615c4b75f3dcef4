-- prosody.cfg.lua — Prosody's configuration for contrib/bench/compare (a template: compare
-- replaces the placeholders between @ signs and writes the result into its run folder).
--
-- What differs from Debian's /etc/prosody/prosody.cfg.lua, and why:
--   * one loopback c2s port of its own, no s2s, no HTTP, no component ports;
--   * plain c2s allowed (c2s_require_encryption = false); STARTTLS still offered for the TLS run;
--   * mod_limits is NOT loaded (Debian's config enables it), so no c2s/s2s read rate limits;
--     no mod_register_limits, no mod_watchregistrations, no mod_mam / mod_smacks / mod_carbons
--     (none of them would be exercised, and stanzad has none of them either);
--   * tcp_backlog raised from 128 to 4096 (the generator opens 50 connections at a time);
--   * authentication = "internal_hashed" (SCRAM-SHA-1 stored keys, never the password) with
--     default_iteration_count = 4096: Prosody 0.12's default is 10000, the benchmark wants the
--     same 4096 iterations on every server;
--   * storage "internal" (files in the run folder), the Debian default;
--   * logging at "warn" to a file, the run in the foreground (prosody -F).
-- The stanza size limit (c2s_stanza_size_limit, 256 KiB) and c2s_timeout are left at their
-- defaults: no benchmark stanza comes near them.

pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
admin_socket = "@DIR@/prosody.sock"

network_backend = "epoll"
network_settings = {
	tcp_backlog = 4096;
}

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }

modules_enabled = {
	"roster";        -- rosters are loaded at the initial presence, as on any real deployment
	"saslauth";
	"tls";
	"disco";
	"ping";
	"admin_shell";   -- used by compare to create the accounts in bulk
}
modules_disabled = {
	"s2s";
	"s2s_auth_certs";
	"offline";
}

authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"

c2s_require_encryption = false
allow_unencrypted_plain_auth = false
s2s_require_encryption = true

log = {
	warn = "@DIR@/prosody.log";
}

statistics = nil

VirtualHost "@DOMAIN@"
	ssl = {
		certificate = "@CERT@";
		key = "@KEY@";
	}
