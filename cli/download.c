/* Downloading one artifact from its presigned URL into a directory, checked
 * against the manifest before it is kept: the bytes go to a temporary file
 * created inside the directory (O_EXCL, never following a link), are hashed
 * while they arrive, and the file is renamed to its name only when size and
 * SHA-256 match. A name can therefore neither escape the directory nor leave
 * a half-written or unverified file behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "cli.h"
#include "core/ids.h"

struct download {
        int fd;
        EVP_MD_CTX *md;
        long long size;     /* bytes received */
        long long expected; /* manifest size: more is refused at once */
        bool too_large;
        bool write_failed;
        int write_errno;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct download *d = userdata;
        size_t n = size * nmemb;
        if (d->size + (long long)n > d->expected) {
                d->too_large = true;
                return 0;
        }
        for (size_t off = 0; off < n;) {
                ssize_t w = write(d->fd, ptr + off, n - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        d->write_failed = true;
                        d->write_errno = w < 0 ? errno : EIO;
                        return 0;
                }
                off += (size_t)w;
        }
        if (EVP_DigestUpdate(d->md, ptr, n) != 1) {
                d->write_failed = true;
                d->write_errno = ENOMEM;
                return 0;
        }
        d->size += (long long)n;
        return n;
}

bool cli_safe_file_name(const char *name) {
        return name && *name && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && !strchr(name, '/') &&
               strlen(name) <= 255;
}

static void curl_easy_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}

static void evp_md_ctx_freep(EVP_MD_CTX **c) {
        EVP_MD_CTX_free(*c);
}

/* Fetches url into fd, checking it against size and sha256 as it arrives.
 * Returns 0 or a negative errno after printing why, naming the artifact. */
static int fetch_verified(const char *url, int fd, const char *name, long long size, const char *sha256) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = curl_easy_init();
        _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        char errbuf[CURL_ERROR_SIZE] = "";
        struct download d = {.fd = fd, .md = md, .expected = size};

        if (!md || !curl || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                return -ENOMEM;
        curl_easy_setopt(curl, CURLOPT_URL, url);
        /* a presigned URL carries its own authorization: none of ours is sent */
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        /* no overall timeout, so a large artifact on a slow link still
         * arrives; a transfer stalled for a minute is given up */
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "paddock-cli/0.1");
        CURLcode cc = curl_easy_perform(curl);
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (d.too_large) {
                cli_error("artifact %s: the download is larger than the %lld bytes of the manifest; not kept", name,
                          size);
                return -EBADMSG;
        }
        if (d.write_failed) {
                cli_error("artifact %s: could not write the download: %s", name, strerror(d.write_errno));
                return -d.write_errno;
        }
        if (cc != CURLE_OK) {
                cli_error("artifact %s: download failed: %s", name, errbuf[0] ? errbuf : curl_easy_strerror(cc));
                return -ECONNRESET;
        }
        if (status != 200) {
                cli_error("artifact %s: the storage answered HTTP %ld", name, status);
                return -EPROTO;
        }
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
        if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32)
                return -EIO;
        for (unsigned int i = 0; i < dlen; i++)
                snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        if (d.size != size) {
                cli_error("artifact %s: %lld bytes downloaded, the manifest says %lld; not kept", name, d.size, size);
                return -EBADMSG;
        }
        if (strcmp(hex, sha256) != 0) {
                cli_error("artifact %s: SHA-256 mismatch: the manifest says %s, the download is %s; not kept", name,
                          sha256, hex);
                return -EBADMSG;
        }
        return 0;
}

int cli_download_verified(const char *url, int dirfd, const char *name, long long size, const char *sha256) {
        char tmp[64], rnd[UUID_STR_LEN];

        if (!cli_safe_file_name(name)) {
                cli_error("artifact \"%s\": refusing a name that is not one plain file name", name ? name : "");
                return -EINVAL;
        }
        if (!sha256 || strlen(sha256) != 64 || strspn(sha256, "0123456789abcdef") != 64) {
                cli_error("artifact %s: the manifest has no SHA-256 to verify it against", name);
                return -EBADMSG;
        }
        if (size < 0) {
                cli_error("artifact %s: the manifest has no size", name);
                return -EBADMSG;
        }
        if (id_new_uuid(rnd) < 0)
                return -EIO;
        snprintf(tmp, sizeof tmp, ".paddock-download-%s", rnd);
        _cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
                int e = errno;
                cli_error("artifact %s: could not create a file in the download directory: %s", name, strerror(e));
                return -e;
        }
        int r = fetch_verified(url, fd, name, size, sha256);
        if (r >= 0 && (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0)) {
                r = -errno;
                cli_error("artifact %s: could not write the download: %s", name, strerror(-r));
        }
        /* rename does not follow a link already at name: it replaces it */
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0) {
                r = -errno;
                cli_error("artifact %s: could not store it: %s", name, strerror(-r));
        }
        if (r < 0)
                (void)unlinkat(dirfd, tmp, 0);
        return r;
}
