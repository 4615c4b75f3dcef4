/*
 * mod_ldr_oldmajor — loader test: a module that claims ABI 0.9, an older major than the core's.
 */
#include <stanzad/stanzad.h>

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = SD_MODULE_MAGIC,
        .abi_major = SD_ABI_MAJOR - 1,
        .abi_minor = 9,
        .desc_size = sizeof(sd_module_desc),
        .setting_size = sizeof(sd_setting),
        .name = "ldr_oldmajor",
    };
    return &d;
}
