/* Corpus replay (tests/fuzz/README.md): the fuzz targets built with the
 * normal compiler and the project's sanitizers, fed every file of the
 * directories (or the files) named on the command line, in name order. A
 * crash, leak or undefined behaviour aborts under the sanitizers; the exit
 * status is 0 once every file has been fed, 1 if a path cannot be read or
 * holds no input at all (an empty corpus proves nothing). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static int feed_file(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "replay: could not open %s: %s\n", path, strerror(errno));
                return -1;
        }
        size_t cap = 4096, len = 0;
        uint8_t *buf = malloc(cap);
        size_t n;
        while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
                len += n;
                if (len == cap) {
                        uint8_t *p = realloc(buf, cap *= 2);
                        if (!p) {
                                free(buf);
                                buf = NULL;
                                break;
                        }
                        buf = p;
                }
        }
        int bad = ferror(f) || !buf;
        fclose(f);
        if (bad) {
                free(buf);
                fprintf(stderr, "replay: could not read %s\n", path);
                return -1;
        }
        /* an exact-size copy, so that ASan sees a read past the input's end */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                free(buf);
                return -1;
        }
        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
        LLVMFuzzerInitialize(&argc, &argv);
        long fed = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: could not stat %s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (feed_file(argv[i]) < 0)
                                return 1;
                        fed++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, by_name);
                if (n < 0) {
                        fprintf(stderr, "replay: could not list %s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                int failed = 0;
                for (int k = 0; k < n; k++) {
                        char path[4096];
                        if (!failed && names[k]->d_name[0] != '.') {
                                snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
                                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                        if (feed_file(path) < 0)
                                                failed = 1;
                                        else
                                                fed++;
                                }
                        }
                        free(names[k]);
                }
                free(names);
                if (failed)
                        return 1;
        }
        printf("replay: %ld inputs fed, no crash\n", fed);
        return fed > 0 ? 0 : 1;
}
