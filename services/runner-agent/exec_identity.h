/* Program identity at the exec level (issue 12 §3; docs/CONTRACTS.md "Policy
 * engine"): the name of the image program whose content an executed file has,
 * so a renamed copy of git (`cp $(command -v git) /tmp/g && /tmp/g push`) is
 * still git for a `{"command": "git push*"}` rule. The image's programs are the
 * regular executable files of the standard PATH directories of the sandbox's
 * root (read-only, so their content cannot change under us).
 *
 * Cost (paid only by runs with a command rule that can ask or deny): the first
 * call lists the PATH directories once (lstat of each entry, about 1 ms for a
 * thousand programs); then one openat2 + fstat per exec. An exec of an image
 * program itself is recognised by (dev, ino) without reading it. A file that is
 * not one is hashed (SHA-256) only when an image program has the same size,
 * and so are those candidates, each hash once per run, cached by (dev, ino,
 * size, mtime): a 4 MiB git copy costs one ~10 ms read of both files once.
 *
 * Not thread-safe: one per capture thread. */
#pragma once
#include <stddef.h>

#define EXEC_IDENTITY_NAMES_MAX 8
#define EXEC_IDENTITY_NAME_MAX 255

struct exec_identity;

/* The standard PATH directories searched for image programs. */
extern const char *const exec_identity_path_dirs[];

struct exec_identity *exec_identity_new(void);
struct exec_identity *exec_identity_free(struct exec_identity *ei);

/* The names of the image programs whose content the open file fd has (the
 * executed file, borrowed). root_fd (borrowed) is the sandbox's root, an
 * O_PATH or O_DIRECTORY fd, read on the first call only: the index belongs to
 * one root. Fills names (each NUL-terminated) and returns how many (0: not an
 * image program's content), or a negative errno. */
int exec_identity_names(struct exec_identity *ei, int root_fd, int fd,
                        char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1]);
