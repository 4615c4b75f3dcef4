/*
 * future_stub.c — for the loader test mod_ldr_versioned: a stand-in for a later libstanzad.so.1
 * that exports one function under the version node of the next ABI minor (test/CMakeLists.txt
 * writes its version script from version.h). The test module links against it, so it needs
 * that node; the real library then makes dlopen fail with "version `STANZAD_1.N' not found",
 * which the loader reports as an ABI difference. Never loaded itself.
 */
__attribute__((visibility("default"))) int sd_future_function(void *m);

__attribute__((visibility("default"))) int sd_future_function(void *m)
{
    return m != 0;
}
