/*
 * server.c — process-wide facts derived from the configuration.
 */
#include "server.h"

#include <string.h>

#include "config.h"

const struct config *server_config;

bool server_is_local_host(const char *domain)
{
    return config_find_host(server_config, domain) != NULL;
}
