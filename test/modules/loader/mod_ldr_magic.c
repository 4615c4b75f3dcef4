/*
 * mod_ldr_magic — loader test: a descriptor whose magic is wrong. The loader must refuse it
 * after reading the magic and nothing else.
 */
#include <stanzad/stanzad.h>

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = 0x12345678U,
        .abi_major = SD_ABI_MAJOR,
        .abi_minor = SD_ABI_MINOR,
        .desc_size = sizeof(sd_module_desc),
        .setting_size = sizeof(sd_setting),
        .name = "ldr_magic",
    };
    return &d;
}
