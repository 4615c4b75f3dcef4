/*
 * mod_ldr_badsql — loader test: a schema step the database refuses. Start-up stops with
 * "module ldr_badsql: migration failed: ..." before load() and before any port is bound.
 */
#include <stanzad/stanzad.h>

static const sd_migration badsql_migrations[] = {
    {1, "CREATE TABLE ldr_badsql_items (id integer PRIMARY KEY)"},
    {2, "ALTER TABLE ldr_badsql_missing ADD COLUMN x integer"},
    SD_MIGRATIONS_END,
};

SD_MODULE(.name = "ldr_badsql", .version = "test", .migrations = badsql_migrations);
