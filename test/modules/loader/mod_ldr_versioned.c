/*
 * mod_ldr_versioned — loader test: a module linked against a libstanzad of the next ABI minor
 * (the stub of future_stub.c), so it needs a symbol version this core lacks. Even a lazy dlopen fails on a
 * missing version, so the descriptor cannot be read: the loader takes the ABI from the error.
 */
#include <stanzad/stanzad.h>

int sd_future_function(sd_module *m);

static int versioned_load(sd_module *m, const char **error_r)
{
    return sd_future_function(m);
}

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = SD_MODULE_MAGIC,
        .abi_major = SD_ABI_MAJOR,
        .abi_minor = SD_ABI_MINOR + 1,
        .desc_size = sizeof(sd_module_desc),
        .setting_size = sizeof(sd_setting),
        .name = "ldr_versioned",
        .load = versioned_load,
    };
    return &d;
}
