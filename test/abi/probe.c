/*
 * probe.c — the module side of the ABI, for the ABI check (test/abi/check).
 *
 * libstanzad's own dump covers the functions it exports and every type they take or return. The
 * descriptor, the settings and migration rows, the enums and the callback types are a contract
 * too, but no core function takes them (a module hands them over through sd_module_v1), so this
 * small library exports one function per group that does. Its abidw dump is compared with
 * test/abi/probe.abi like the library's with test/abi/libstanzad.abi.
 *
 * abidiff does not see the values of anonymous enum constants and macros; they are pinned here
 * at compile time: a changed value fails the build of this file, and so the check.
 */
#include <stddef.h>

#include <stanzad/stanzad.h>

SD_API void sd_abi_probe_module(const sd_module_desc *desc, const sd_setting *setting,
                                const sd_migration *migration);
SD_API void sd_abi_probe_enums(sd_setting_type setting_type, sd_verdict verdict, sd_phase phase,
                               sd_event_type event_type, sd_stream_error stream_error, sd_kind kind,
                               sd_error error, sd_db_status db_status, sd_log_level log_level);
SD_API void sd_abi_probe_callbacks(sd_stanza_fn stanza_fn, sd_event_fn event_fn,
                                   sd_iq_result_fn iq_result_fn, sd_db_fn db_fn,
                                   sd_kv_get_fn kv_get_fn, sd_kv_done_fn kv_done_fn,
                                   sd_timer_fn timer_fn);

void sd_abi_probe_module(const sd_module_desc *desc, const sd_setting *setting,
                         const sd_migration *migration)
{
}

void sd_abi_probe_enums(sd_setting_type setting_type, sd_verdict verdict, sd_phase phase,
                        sd_event_type event_type, sd_stream_error stream_error, sd_kind kind,
                        sd_error error, sd_db_status db_status, sd_log_level log_level)
{
}

void sd_abi_probe_callbacks(sd_stanza_fn stanza_fn, sd_event_fn event_fn,
                            sd_iq_result_fn iq_result_fn, sd_db_fn db_fn, sd_kv_get_fn kv_get_fn,
                            sd_kv_done_fn kv_done_fn, sd_timer_fn timer_fn)
{
}

/* ABI 1.1 */
SD_API void sd_abi_probe_accounts(sd_account_status status, sd_account_fn fn);

void sd_abi_probe_accounts(sd_account_status status, sd_account_fn fn)
{
}

/* What the loader reads before anything else: never moves. */
_Static_assert(SD_MODULE_MAGIC == 0x5344414dU, "SD_MODULE_MAGIC");
_Static_assert(SD_ABI_MAJOR == 1, "SD_ABI_MAJOR changes only with a new entry point");
_Static_assert(offsetof(sd_module_desc, magic) == 0, "descriptor header");
_Static_assert(offsetof(sd_module_desc, abi_major) == 4, "descriptor header");
_Static_assert(offsetof(sd_module_desc, abi_minor) == 6, "descriptor header");
_Static_assert(offsetof(sd_module_desc, desc_size) == 8, "descriptor header");
_Static_assert(offsetof(sd_module_desc, setting_size) == 12, "descriptor header");

/* Flags and constants of anonymous enums (ABI 1.0). */
_Static_assert(SD_TO_HOST == 1 && SD_TO_BARE == 2 && SD_TO_FULL == 4 && SD_TO_SELF == 8,
               "destination types");
_Static_assert(SD_IQ_GET == 1 && SD_IQ_SET == 2, "iq types");
_Static_assert(SD_FILTER_IN == 1 && SD_FILTER_OUT == 2, "filters");
_Static_assert(SD_DISCO_SERVER == 1 && SD_DISCO_ACCOUNT == 2, "disco registry");

/* ABI 1.1 */
_Static_assert(SD_TO_PREAUTH == 16, "destination types");
_Static_assert(SD_KIND_MESSAGE == 1 && SD_KIND_PRESENCE == 2 && SD_KIND_IQ == 4, "stanza kinds");
