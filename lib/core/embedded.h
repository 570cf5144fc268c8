/* Files compiled into a binary by cmake/EmbedFiles.cmake (migrations, static assets). */
#pragma once
#include <stddef.h>

struct embedded_file {
        const char *name;   /* base name, e.g. "0001_init.sql"; NULL ends the table */
        const char *data;   /* NUL-terminated contents */
        size_t len;
};
